"""A live lab: drive a running cluster with your hands while a load runs.

``cluster.panel()`` (or ``lk.panel(cluster)``) shows an ipywidgets control panel:

* one button per server to kill or revive it (and one for the store, if given),
  coloured by state;
* sliders for a background load (users, requests per second) that runs in threads,
  so the notebook stays free for other cells;
* a live figure, redrawn at most once a second: the topology on the left, and on the
  right latency over the last seconds with failed requests marked ``x`` and the
  periods a server was down shaded;
* counters: requests ok and failed, sessions lost, retries, requests per server.

Everything the buttons do is a method of :class:`Panel`, so a test (or a cell) can
press them too::

    panel = cluster.panel(path="/me", login=social_login)
    panel.start()            # the background load
    panel.kill("s2")         # the same as clicking "kill s2"
    panel.counters()["failed"]
    panel.close()            # stops the load and the redraws

Without a front end (plain Python, ``labkit grade``) the panel is a text summary and
never blocks. Closing the cluster closes its panels.
"""

from __future__ import annotations

import collections
import html
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import requests

from ..errors import LabkitError

WINDOW = 30.0        # seconds of history the chart shows
REDRAW_EVERY = 1.0   # seconds between chart redraws, at most: drawing must not slow the load
TOPOLOGY_EVERY = 5.0  # seconds between topology redraws when no server changed state
DPI = 60             # the live pictures are small PNGs: cheap to draw and to send
MAX_USERS = 32
MAX_RATE = 500.0     # requests per second, all users together


@dataclass(frozen=True)
class Sample:
    """One request of the background load."""

    start: float        # seconds since the panel was made
    latency: float      # seconds
    ok: bool
    server: str | None  # from X-Served-By
    status: int | None  # None: no answer at all


Login = Callable[[int], tuple[str, dict]]


class Panel:
    """The model behind the control panel: the load, the faults and the counters.

    Args:
        cluster: a running :class:`~labkit.balancing.cluster.Cluster`.
        path: what each user asks for, again and again.
        users, rate: the load's starting size (users, requests per second in all).
        login: ``login(user) -> (path, json)``: how user ``user`` logs in, for a
            stateful app. A user that then gets ``401`` has lost its session: it is
            counted, and the user logs in again.
        store: a :class:`~labkit.state.redis.RedisServer` to get a kill/revive button.
        seed: which user sends first; the load is otherwise paced by the clock.
    """

    def __init__(self, cluster: Any, *, path: str = "/", users: int = 4, rate: float = 40.0,
                 login: Login | None = None, store: Any = None, seed: int = 0) -> None:
        self.cluster = cluster
        self.path = path
        self.login = login
        self.store = store
        self._users = _check_users(users)
        self._rate = _check_rate(rate)
        self._random = random.Random(seed)
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._samples: collections.deque[Sample] = collections.deque(maxlen=20_000)
        self._counts = {"ok": 0, "failed": 0, "sessions_lost": 0}
        self._per_server: collections.Counter[str] = collections.Counter()
        self._events: list[tuple[float, str, str]] = []  # (time, "kill"/"revive", name)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._view: Any = None
        self._closed = False
        register = getattr(cluster, "_panels", None)
        if isinstance(register, list):
            register.append(self)

    # -- the buttons ---------------------------------------------------------------

    def kill(self, name: str) -> None:
        """Crash server ``name`` (or ``"store"``) now, while the load runs."""
        self._target(name).kill()
        self._note("kill", name)

    def revive(self, name: str) -> None:
        """Start server ``name`` (or ``"store"``) again."""
        self._target(name).revive()
        self._note("revive", name)

    def toggle(self, name: str) -> None:
        """Kill ``name`` if it is up, revive it if it is down (what a button does)."""
        if self.is_up(name):
            self.kill(name)
        else:
            self.revive(name)

    def is_up(self, name: str) -> bool:
        target = self._target(name)
        return bool(target.alive)

    def _target(self, name: str) -> Any:
        if name == "store":
            if self.store is None:
                raise LabkitError("This panel has no store: pass store=... to panel().")
            return self.store
        return self.cluster.server(name)

    def _note(self, action: str, name: str) -> None:
        with self._lock:
            self._events.append((self._now(), action, name))
        self._refresh()

    # -- the load ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def start(self) -> None:
        """Start the background load (it runs until :meth:`stop` or :meth:`close`)."""
        if self._closed:
            raise LabkitError("This panel is closed; make a new one with cluster.panel().")
        if self.running:
            return
        self._stop.clear()
        self._threads = [threading.Thread(target=self._user, args=(i,), daemon=True,
                                           name=f"labkit-panel-user{i}")
                         for i in range(self._users)]
        self._threads.append(threading.Thread(target=self._redraw_loop, daemon=True,
                                              name="labkit-panel-redraw"))
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop the background load and wait for its threads."""
        self._stop.set()
        for thread in self._threads:
            thread.join(10.0)
        self._threads = []
        self._refresh()

    def set_load(self, *, users: int | None = None, rate: float | None = None) -> None:
        """Change the load; a running load restarts with the new size."""
        was_running = self.running
        if was_running:
            self.stop()
        if users is not None:
            self._users = _check_users(users)
        if rate is not None:
            self._rate = _check_rate(rate)
        if was_running:
            self.start()

    def _user(self, index: int) -> None:
        session = requests.Session()
        session.headers["X-Client-Id"] = f"panel-user{index + 1}"
        interval = self._users / self._rate  # each user's share of the rate
        next_at = time.monotonic() + self._random.random() * interval
        logged_in = False
        try:
            while not self._stop.is_set():
                if self.login is not None and not logged_in:
                    logged_in = self._log_in(session, index)
                if self._stop.wait(max(0.0, next_at - time.monotonic())):
                    break
                next_at = max(next_at + interval, time.monotonic() - interval)
                sample = self._one(session)
                if sample.status == 401 and self.login is not None:
                    with self._lock:
                        self._counts["sessions_lost"] += 1
                    logged_in = False
        finally:
            session.close()

    def _log_in(self, session: requests.Session, index: int) -> bool:
        path, body = self.login(index + 1)
        try:
            return session.post(self.cluster.url + path, json=body, timeout=5).ok
        except requests.RequestException:
            return False

    def _one(self, session: requests.Session) -> Sample:
        started = time.monotonic()
        try:
            answer = session.get(self.cluster.url + self.path, timeout=5)
            status, server = answer.status_code, answer.headers.get("X-Served-By")
        except requests.RequestException:
            status, server = None, None
        sample = Sample(started - self._t0, time.monotonic() - started,
                        status is not None and status < 400, server, status)
        with self._lock:
            self._samples.append(sample)
            self._counts["ok" if sample.ok else "failed"] += 1
            if server:
                self._per_server[server] += 1
        return sample

    # -- what it shows -------------------------------------------------------------

    def counters(self) -> dict:
        """Requests ok and failed, sessions lost, retries, and requests per server."""
        with self._lock:
            counts = dict(self._counts)
            counts["per_server"] = dict(sorted(self._per_server.items()))
        counts["retries"] = getattr(self.cluster.balancer, "retries", None)
        return counts

    def samples(self, window: float = WINDOW) -> list[Sample]:
        """The samples of the last ``window`` seconds."""
        since = self._now() - window
        with self._lock:
            return [s for s in self._samples if s.start >= since]

    def down_periods(self) -> list[tuple[str, float, float | None]]:
        """``(name, from, to)`` for every kill; ``to`` is None while still down."""
        periods: list[tuple[str, float, float | None]] = []
        with self._lock:
            events = list(self._events)
        open_since: dict[str, float] = {}
        for at, action, name in events:
            if action == "kill":
                open_since.setdefault(name, at)
            elif name in open_since:
                periods.append((name, open_since.pop(name), at))
        periods += [(name, since, None) for name, since in open_since.items()]
        return sorted(periods, key=lambda p: p[1])

    def summary(self) -> str:
        """One text block: servers, load and counters (what a terminal shows)."""
        names = [s.name for s in self.cluster.servers] + (["store"] if self.store else [])
        states = ", ".join(f"{n} {'up' if self.is_up(n) else 'down'}" for n in names)
        c = self.counters()
        load = f"{self._users} users, {self._rate:g} req/s, {'running' if self.running else 'stopped'}"
        per_server = ", ".join(f"{k} {v}" for k, v in c["per_server"].items()) or "-"
        retries = "-" if c["retries"] is None else c["retries"]
        return (f"Panel for {self.cluster.name}: {states}\n"
                f"load: {load}\n"
                f"ok {c['ok']}, failed {c['failed']}, sessions lost {c['sessions_lost']},"
                f" retries {retries}\n"
                f"per server: {per_server}")

    def figure(self) -> Any:
        """The topology and the latency of the last seconds, side by side."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(11, 3.6), layout="constrained")
        left, right = fig.subplots(1, 2, width_ratios=[1, 1.3])
        self.cluster.draw(ax=left, store="Redis" if self.store is not None else None)
        self.chart(ax=right)
        return fig

    def chart(self, ax: Any = None) -> Any:
        """Latency of the last seconds: failures marked ``x``, down periods shaded."""
        from matplotlib.figure import Figure

        if ax is None:
            ax = Figure(figsize=(6, 3.2), layout="constrained").add_subplot()
        right = ax
        now = self._now()
        recent = self.samples()
        good = [s for s in recent if s.ok]
        bad = [s for s in recent if not s.ok]
        right.scatter([s.start - now for s in good], [s.latency * 1000 for s in good], s=6,
                      color="tab:blue", label="ok")
        right.scatter([s.start - now for s in bad], [s.latency * 1000 for s in bad], s=18,
                      color="tab:red", marker="x", label="failed")
        for name, since, until in self.down_periods():
            start, end = since - now, (until if until is not None else now) - now
            if end >= -WINDOW:
                right.axvspan(max(start, -WINDOW), end, color="tab:red", alpha=0.12)
                right.text(max(start, -WINDOW), 1.0, f" {name} down", fontsize=8,
                           color="tab:red", va="top", transform=right.get_xaxis_transform())
        right.set_xlim(-WINDOW, 0)
        right.set_xlabel("seconds ago")
        right.set_ylabel("latency (ms)")
        right.legend(fontsize=8, loc="upper left")
        return right.figure

    # -- the widgets ---------------------------------------------------------------

    def show(self) -> Any:
        """Display the widgets (in a notebook) or print the summary (elsewhere)."""
        if _in_kernel() and _have_widgets():
            from IPython.display import display

            display(self.widget())
        else:
            print(self.summary())

    def widget(self) -> Any:
        """The ipywidgets view of this panel (built once)."""
        if self._view is None:
            self._view = _View(self)
        return self._view.box

    def _refresh(self) -> None:
        if self._view is not None:
            self._view.refresh(figure=True)

    def _redraw_loop(self) -> None:
        while not self._stop.wait(REDRAW_EVERY):
            if self._view is not None:
                try:
                    self._view.refresh(figure=True)
                except Exception:  # a front end that went away must not stop the load
                    pass

    def _now(self) -> float:
        return time.monotonic() - self._t0

    def close(self) -> None:
        """Stop the load and the redraws. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        register = getattr(self.cluster, "_panels", None)
        if isinstance(register, list) and self in register:
            register.remove(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        bundle = {"text/plain": self.summary()}
        if _have_widgets():
            bundle.update(self.widget()._repr_mimebundle_(include=include, exclude=exclude)
                          or {})
            bundle["text/plain"] = self.summary()
        return bundle

    def __repr__(self) -> str:
        return f"<Panel {self.cluster.name} {'running' if self.running else 'stopped'}>"


class _View:
    """The ipywidgets of one panel: buttons, sliders, counters and the live figure."""

    def __init__(self, panel: Panel) -> None:
        import ipywidgets as w

        self.panel = panel
        self._drawn_at = 0.0
        names = [s.name for s in panel.cluster.servers] + (["store"] if panel.store else [])
        self.buttons = {}
        for name in names:
            button = w.Button(description=name, layout=w.Layout(width="110px"))
            button.on_click(lambda _b, n=name: self._press(n))
            self.buttons[name] = button
        self.users = w.IntSlider(value=panel._users, min=1, max=MAX_USERS, description="users")
        self.rate = w.FloatSlider(value=panel._rate, min=1, max=MAX_RATE, step=1,
                                  description="req/s")
        self.go = w.ToggleButton(value=False, description="start load", icon="play")
        self.go.observe(self._toggle_load, names="value")
        self.users.observe(lambda ch: panel.set_load(users=ch["new"]), names="value")
        self.rate.observe(lambda ch: panel.set_load(rate=ch["new"]), names="value")
        self.counts = w.HTML()
        self.topology = w.Image(format="png", layout=w.Layout(width="45%"))
        self.latency = w.Image(format="png", layout=w.Layout(width="55%"))
        self._states: tuple = ()
        self._topology_at = 0.0
        self.box = w.VBox([w.HBox(list(self.buttons.values())),
                           w.HBox([self.go, self.users, self.rate]), self.counts,
                           w.HBox([self.topology, self.latency])])
        self.refresh(figure=True)

    def _press(self, name: str) -> None:
        self.panel.toggle(name)

    def _toggle_load(self, change: dict) -> None:
        if change["new"]:
            self.panel.start()
            self.go.description, self.go.icon = "stop load", "stop"
        else:
            self.panel.stop()
            self.go.description, self.go.icon = "start load", "play"

    def refresh(self, *, figure: bool) -> None:
        for name, button in self.buttons.items():
            up = self.panel.is_up(name)
            button.description = f"kill {name}" if up else f"revive {name}"
            button.button_style = "success" if up else "danger"
        c = self.panel.counters()
        per = " · ".join(f"{html.escape(k)}: {v}" for k, v in c["per_server"].items())
        retries = "-" if c["retries"] is None else c["retries"]
        self.counts.value = (f"<b>ok</b> {c['ok']} &nbsp; <b>failed</b> {c['failed']} &nbsp;"
                             f" <b>sessions lost</b> {c['sessions_lost']} &nbsp;"
                             f" <b>retries</b> {retries} &nbsp; | {per}")
        if not figure:
            return
        now = time.monotonic()
        states = tuple(self.panel.is_up(name) for name in self.buttons)
        if states != self._states or now - self._topology_at >= TOPOLOGY_EVERY:
            self._states, self._topology_at = states, now
            store = "Redis" if self.panel.store is not None else None
            self.topology.value = _png(self.panel.cluster.draw(store=store))
        if now - self._drawn_at >= REDRAW_EVERY * 0.9:
            self._drawn_at = now
            self.latency.value = _png(self.panel.chart())


def _png(figure: Any) -> bytes:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def panel(cluster: Any, **options: Any) -> Panel:
    """A live control panel for ``cluster`` (see :class:`Panel` for the options)."""
    return Panel(cluster, **options)


def _check_users(users: Any) -> int:
    if not isinstance(users, int) or isinstance(users, bool) or not 1 <= users <= MAX_USERS:
        raise LabkitError(f"users must be a whole number from 1 to {MAX_USERS}, not {users!r}.")
    return users


def _check_rate(rate: Any) -> float:
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= MAX_RATE:
        raise LabkitError(f"rate must be a number of requests per second, above 0 and at"
                          f" most {MAX_RATE:g}, not {rate!r}.")
    return float(rate)


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def _have_widgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return _in_kernel()
