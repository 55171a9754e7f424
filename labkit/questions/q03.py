"""Chapter 03 questions: a stateful cluster.

* ``03.sticky_policy``: a sticky balancing policy of your own, plugged into the kit's
  balancer in front of three stateful servers, then a crash;
* ``03.predict_logouts``: from the pins, name the users a crash will log out;
* ``03.capacity_model``: predict latency from workers, service time and servers, then
  compare with a live measurement.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import requests

from ..checks import CheckFailed, probe, question


def _stateful_app() -> Any:
    from ..apps import social

    return social.create_app(mode="session", extra_users=12, kdf_iterations=1_000)


def _log_in(cluster: Any, name: str) -> requests.Session:
    client = requests.Session()
    client.headers["X-Client-Id"] = name
    response = probe.call("POST", cluster.url + "/login", session=client,
                          json={"username": name, "password": f"pw-{name}"},
                          what=f"POST /login as {name}")
    _expect(response, 200, f"{name}'s login")
    return client


def _expect(response: requests.Response, status: int, what: str) -> None:
    """Like probe.expect_status, but explains the balancer's own refusals."""
    body = probe.body(response)
    if response.status_code == 503 and isinstance(body, dict) and body.get("error") == "policy_error":
        raise CheckFailed(f"{what}: the balancer could not use your policy."
                          f" {body.get('message', '')}")
    probe.expect_status(response, status, what)


def _natural(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


# ------------------------------------------------------------------ sticky policy
@question("03.sticky_policy", points=3, hints=[
    "A client's first request carries no pin: place it in turn (round robin). Set"
    " `cookie = 'MYPIN'` on the class: the balancer then sends that cookie, naming the"
    " server you chose, back to the client.",
    "In choose(), read request.cookies.get(self.cookie). If one of `servers` has that"
    " name, return it; otherwise fall back to round robin.",
    "`servers` holds only *live* servers: when the pinned one is dead it is simply not in"
    " the list, and your fallback picks a new one (the client is re-pinned).",
])
def sticky_policy(policy_class: Callable[[], Any]) -> str:
    "Write a sticky balancing policy and plug it into the kit's balancer."
    import labkit as lk
    from ..balancing.policies import Backend, RequestInfo

    policy = policy_class()
    probe_servers = [Backend("s1"), Backend("s2")]
    chosen = policy.choose(RequestInfo("GET", "/", {}, {}, "probe"), probe_servers)
    if chosen not in probe_servers:
        raise CheckFailed(f"choose(request, servers) must return one of `servers`, but"
                          f" returned {chosen!r}.")
    if not isinstance(getattr(policy, "cookie", None), str) or not policy.cookie:
        raise CheckFailed("Your policy has no `cookie` attribute, so the balancer cannot"
                          " pin clients. Add e.g. `cookie = 'MYPIN'` to the class.")

    with lk.Cluster(_stateful_app, size=3, balancer=policy_class(),
                    name="check-03-sticky") as cluster:
        clients = {f"user{i}": _log_in(cluster, f"user{i}") for i in range(1, 10)}
        home = {}
        for name, client in clients.items():
            for _ in range(4):
                me = probe.call("GET", cluster.url + "/me", session=client, what="GET /me")
                if me.status_code == 401:
                    raise CheckFailed(
                        f"{name} logged in, then GET /me answered 401 from"
                        f" {me.headers.get('X-Served-By')}: the request went to a server"
                        " that does not hold the session. Send a pinned client back to"
                        " the server named in its cookie.")
                _expect(me, 200, f"GET /me for {name}")
                home.setdefault(name, me.headers["X-Served-By"])
        if len(set(home.values())) < 3:
            raise CheckFailed(
                f"All 9 clients were placed on {sorted(set(home.values()))}: place new"
                " clients in turn (round robin), so that every server gets some.")

        victim = max(sorted(set(home.values())), key=list(home.values()).count)
        cluster.kill(victim)
        for name, client in clients.items():
            me = probe.call("GET", cluster.url + "/me", session=client, what="GET /me")
            if home[name] == victim:
                _expect(me, 401, f"After {victim} died, GET /me for {name} (pinned to it)")
                client = clients[name] = _log_in(cluster, name)  # re-pinned, new session
                again = probe.call("GET", cluster.url + "/me", session=client, what="GET /me")
                _expect(again, 200, f"GET /me for {name} after logging in again")
            else:
                _expect(me, 200, f"After {victim} died, GET /me for {name} (on"
                                 f" {home[name]}, still alive)")
    return "Pinned, spread over every server, and re-pinned when a server dies."


# ------------------------------------------------------------------ predict logouts
@question("03.predict_logouts", points=2, hints=[
    "A user loses their session exactly when the server holding it dies, and under a"
    " sticky balancer that is the server they are pinned to.",
    "Return the set of users whose pin is one of the dead servers:"
    " {user for user, server in pins.items() if server in dead}.",
])
def predict_logouts(who_loses: Callable[[dict, set], Any]) -> str:
    "From the pins, predict which users a crash logs out."
    import labkit as lk

    got = who_loses({"a": "s1", "b": "s2", "c": "s3", "d": "s1"}, {"s1", "s3"})
    if not isinstance(got, (set, frozenset)):
        raise CheckFailed(f"Return a set of user names, not {type(got).__name__}.")
    if got != {"a", "c", "d"}:
        raise CheckFailed(
            "With pins {'a': 's1', 'b': 's2', 'c': 's3', 'd': 's1'} and dead servers"
            f" {{'s1', 's3'}}, the users logged out are {{'a', 'c', 'd'}}, not"
            f" {sorted(got)!r}.")
    if who_loses({"a": "s1"}, set()) != set():
        raise CheckFailed("With no dead server nobody is logged out: return set().")

    with lk.Cluster(_stateful_app, size=3, balancer="sticky",
                    name="check-03-predict") as cluster:
        clients = {f"user{i}": _log_in(cluster, f"user{i}") for i in range(1, 11)}
        pins = {name: cluster.pins[name] for name in clients}
        predicted = who_loses(dict(pins), {"s2"})
        cluster.kill("s2")
        actual = {n for n, c in clients.items()
                  if probe.call("GET", cluster.url + "/me", session=c,
                                what="GET /me").status_code == 401}
    if set(predicted) != actual:
        raise CheckFailed(
            f"After s2 died, {sorted(actual, key=_natural)} were logged out, but you"
            f" predicted {sorted(predicted, key=_natural)}.")
    return f"Exactly right: {len(actual)} users, all pinned to s2."


# ------------------------------------------------------------------ capacity model
@question("03.capacity_model", points=2, hints=[
    "A cluster finishes at most servers * workers / service_time requests per second."
    " A closed loop of `users` keeps `users` requests in flight.",
    "Little's law: requests in flight = throughput * latency, so when the servers are"
    " saturated latency = users / (servers * workers / service_time).",
    "When there are fewer users than worker slots nobody queues: a request takes just"
    " service_time. Return max(service_time, users * service_time / (servers * workers)).",
])
def capacity_model(latency: Callable[..., float]) -> str:
    "Predict the latency of a saturated cluster from the capacity model."
    import labkit as lk

    cases = [((12, 3, 2, 0.02), 0.04), ((12, 2, 2, 0.02), 0.06), ((30, 1, 4, 0.05), 0.375),
             ((2, 3, 2, 0.02), 0.02)]
    for (users, servers, workers, service_time), expected in cases:
        got = latency(users=users, servers=servers, workers=workers, service_time=service_time)
        if not isinstance(got, (int, float)) or abs(got - expected) > 1e-6 + 0.01 * expected:
            extra = (" With fewer users than worker slots, nobody waits in a queue."
                     if users < servers * workers else "")
            raise CheckFailed(
                f"latency(users={users}, servers={servers}, workers={workers},"
                f" service_time={service_time}) should be {expected:g} s, not {got!r}.{extra}")

    def ok_app():
        from flask import Flask

        app = Flask("capacity")
        app.get("/")(lambda: "ok")
        return app

    predicted = latency(users=8, servers=2, workers=2, service_time=0.02)
    with lk.Cluster(ok_app, size=2, workers=2, service_time=0.02,
                    name="check-03-capacity") as cluster:
        report = lk.load_test(cluster, users=8, requests=160, progress=False)
    measured = report.p50 / 1000
    if not 0.7 * predicted <= measured <= 2.0 * predicted:  # a busy laptop adds overhead
        raise CheckFailed(
            f"Your model predicts {predicted * 1000:.0f} ms for 8 users on 2 servers x 2"
            " workers x 20 ms, but the live cluster measured a median far from it."
            " (If this machine is very busy, run the check again.)")
    return "Your model matches both the formula and a live cluster."
