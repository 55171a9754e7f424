"""Draw a cluster: clients, the balancer, servers (and a shared store), as a graph.

The graph is built with networkx and drawn with matplotlib at fixed positions, so
the same cluster always gives the same picture. Dead servers are red and crossed
out; each client's last server (its pin, under a sticky policy) is a coloured edge;
the balancer-to-server edges carry request counts.
"""

from __future__ import annotations

from typing import Any

PALETTE = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown",
           "tab:pink", "tab:olive", "tab:cyan"]
DEAD = "tab:red"


def build_graph(cluster: Any, *, max_clients: int = 12, store: str | None = None) -> Any:
    """The topology as a ``networkx.DiGraph`` with ``kind``, ``pos`` and labels."""
    import networkx as nx

    stats = cluster.stats()
    pins = cluster.pins
    clients = sorted(pins, key=_natural)
    shown, hidden = clients[:max_clients], clients[max_clients:]
    graph = nx.DiGraph()
    n_servers = len(cluster.servers)

    graph.add_node("balancer", kind="balancer", label="balancer", pos=(1.0, 0.0))
    for i, server in enumerate(cluster.servers):
        row = stats[server.name]
        y = _spread(i, n_servers)
        sessions = "" if row["sessions"] is None else f"\n{row['sessions']} sessions"
        graph.add_node(server.name, kind="server", alive=row["alive"],
                       color=PALETTE[i % len(PALETTE)] if row["alive"] else DEAD,
                       label=f"{server.name}{'' if row['alive'] else ' (down)'}{sessions}",
                       pos=(2.2, y))
        graph.add_edge("balancer", server.name, kind="route",
                       label=f"{row['requests']} req")
    for i, client in enumerate(shown):
        graph.add_node(client, kind="client", label=client,
                       pos=(-0.3, _spread(i, len(shown) + bool(hidden))))
        graph.add_edge(client, "balancer", kind="request")
        graph.add_edge(client, pins[client], kind="pin")
    if hidden:
        graph.add_node("more", kind="client", label=f"+{len(hidden)} more",
                       pos=(-0.3, _spread(len(shown), len(shown) + 1)))
        graph.add_edge("more", "balancer", kind="request")
    if store:
        graph.add_node("store", kind="store", label=store, pos=(3.3, 0.0))
        for server in cluster.servers:
            graph.add_edge(server.name, "store", kind="store")
    return graph


def draw(cluster: Any, ax: Any = None, *, max_clients: int = 12,
         store: str | None = None, title: str | None = None) -> Any:
    """Draw ``cluster`` and return the matplotlib Figure (shown inline in Jupyter).

    Args:
        ax: a matplotlib Axes to draw into; a new figure when ``None``.
        max_clients: clients drawn one by one; the rest are summed up in one node.
        store: a label for a shared store drawn behind the servers (e.g. "Redis").
    """
    import networkx as nx
    from matplotlib.figure import Figure

    _enable_inline_figures()

    graph = build_graph(cluster, max_clients=max_clients, store=store)
    if ax is None:
        fig = Figure(figsize=(7.5, 4.2), layout="constrained")
        ax = fig.add_subplot()
    pos = {node: data["pos"] for node, data in graph.nodes(data=True)}
    kind = nx.get_node_attributes(graph, "kind")
    servers = [n for n in graph if kind[n] == "server"]
    colors = {n: graph.nodes[n]["color"] for n in servers}

    def nodes_of(k: str) -> list[str]:
        return [n for n in graph if kind[n] == k]

    def edges_of(k: str) -> list[tuple[str, str]]:
        return [(u, v) for u, v, d in graph.edges(data=True) if d["kind"] == k]

    nx.draw_networkx_edges(graph, pos, edgelist=edges_of("request"), ax=ax,
                           edge_color="lightgray", arrows=False)
    routes = edges_of("route")
    nx.draw_networkx_edges(graph, pos, edgelist=routes, ax=ax, width=2,
                           edge_color=[colors[v] for _, v in routes], arrows=True)
    nx.draw_networkx_edge_labels(graph, pos, ax=ax, font_size=7, label_pos=0.55,
                                 edge_labels={e: graph.edges[e]["label"] for e in routes})
    pins = edges_of("pin")
    nx.draw_networkx_edges(graph, pos, edgelist=pins, ax=ax, arrows=True, arrowstyle="-", alpha=0.6,
                           style=[("dashed" if not graph.nodes[v]["alive"] else "solid")
                                  for _, v in pins],
                           edge_color=[colors[v] for _, v in pins],
                           connectionstyle="arc3,rad=0.25")
    nx.draw_networkx_edges(graph, pos, edgelist=edges_of("store"), ax=ax,
                           edge_color="gray", style="dotted", arrows=False)

    nx.draw_networkx_nodes(graph, pos, nodelist=nodes_of("client"), ax=ax,
                           node_color="white", edgecolors="gray", node_size=300)
    nx.draw_networkx_nodes(graph, pos, nodelist=nodes_of("balancer"), ax=ax,
                           node_shape="D", node_color="black", node_size=500)
    nx.draw_networkx_nodes(graph, pos, nodelist=servers, ax=ax, node_shape="s",
                           node_color=[colors[n] for n in servers], node_size=900)
    dead = [n for n in servers if not graph.nodes[n]["alive"]]
    nx.draw_networkx_nodes(graph, pos, nodelist=dead, ax=ax, node_shape="X",
                           node_color="white", node_size=350)
    nx.draw_networkx_nodes(graph, pos, nodelist=nodes_of("store"), ax=ax,
                           node_shape="o", node_color="tab:red", node_size=900)

    for node, data in graph.nodes(data=True):
        x, y = data["pos"]
        offset = {"client": (-0.12, 0, "right"), "balancer": (0, -0.16, "center"),
                  "server": (0.16, 0, "left"), "store": (0, -0.2, "center")}[data["kind"]]
        ax.text(x + offset[0], y + offset[1], data["label"], fontsize=8,
                ha=offset[2], va="center")
    ax.set_title(title or repr(cluster).strip("<>"), fontsize=9)
    ax.set_xlim(-1.0, 3.8 if store else 3.0)
    ax.set_axis_off()
    return ax.figure


def _spread(i: int, n: int) -> float:
    """The i-th of n evenly spaced heights, centred on zero."""
    return 0.0 if n <= 1 else 1.0 - 2.0 * i / (n - 1)


def _natural(name: str) -> tuple:
    """Sort user-2 before user-10."""
    head = name.rstrip("0123456789")
    tail = name[len(head):]
    return (head, int(tail) if tail else -1, name)


def _enable_inline_figures() -> None:
    """Let a returned Figure show itself as a picture in Jupyter.

    The kit builds figures with ``matplotlib.figure.Figure`` rather than pyplot, so
    that a figure is shown once, as the cell's result, and never a second time by
    pyplot. IPython renders such a figure as PNG only once a PNG formatter is
    registered for it, which pyplot would do lazily; the kit does it here.
    """
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    from matplotlib.figure import Figure

    if Figure not in shell.display_formatter.formatters["image/png"].type_printers:
        select_figure_formats(shell, {"png"})
