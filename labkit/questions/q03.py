"""Chapter 03 questions: a stateful cluster.

* ``03.sticky_policy``: a sticky balancing policy of your own, tried on made-up
  requests, then plugged into the kit's balancer in front of three stateful servers,
  then a crash and a restart;
* ``03.predict_logouts``: from the pins, name the users a crash will log out;
* ``03.capacity_model``: predict latency from workers, service time and servers, then
  compare with a live measurement.

Server names, cookies, users, which server dies and the capacity inputs come from
the check's seed (``context().rng``): a failure can be replayed with
``lk.check(..., seed=N)``, and a table of the notebook's examples is useless.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any, Callable

import requests

from ..checks import CheckFailed, context, probe, question


def _stateful_app() -> Any:
    from ..apps import social

    return social.create_app(mode="session", extra_users=12, kdf_iterations=1_000)


def _log_in(cluster: Any, name: str) -> requests.Session:
    client = requests.Session()
    client.headers["X-Client-Id"] = name
    response = probe.call("POST", cluster.url + "/login", session=client,
                          json={"username": name, "password": f"pw-{name}"},
                          what=f"POST /login as {name}")
    _expect(response, 200, "A login through the balancer")
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


def _users(rng: Any, count: int) -> list[str]:
    """``count`` of the social app's extra users (user1 ... user12), in random order."""
    return rng.sample([f"user{i}" for i in range(1, 13)], count)


# ------------------------------------------------------------------ sticky policy
def _servers(rng: Any, count: int) -> list[Any]:
    """Backends with random names, some the prefix of another ("app-3", "app-31")."""
    from ..balancing.policies import Backend

    stem = rng.choice(("s", "app-", "node", "web-"))
    numbers_ = rng.sample(range(1, 10), count - 1)
    names = [f"{stem}{n}" for n in numbers_]
    names.append(names[0] + str(rng.randrange(10)))  # a name another one is a prefix of
    names.append(names[1].upper())  # "node3" and "NODE3": names differ only in case
    rng.shuffle(names)
    return [Backend(name) for name in names]


def _request(rng: Any, cookies: dict[str, str]) -> Any:
    from ..balancing.policies import RequestInfo

    client_id = f"{probe.random_user(rng)}-{rng.randrange(10 ** 9)}"  # never repeats
    return RequestInfo(rng.choice(("GET", "POST")), rng.choice(("/", "/me", "/feed")),
                       {"X-Client-Id": client_id}, dict(cookies), client_id)


def _choose(policy: Any, request: Any, servers: list[Any], what: str) -> Any:
    try:
        chosen = policy.choose(request, list(servers))
    except NotImplementedError:
        raise
    except Exception as exc:
        raise CheckFailed(f"choose() raised {type(exc).__name__} for {what}. It must"
                          " always return one of the live servers it is given.") from exc
    if not any(chosen is s for s in servers):
        raise CheckFailed(f"choose(request, servers) must return one of `servers` (a"
                          f" server object, not its name), but for {what} it returned"
                          f" {type(chosen).__name__} {chosen!r:.40}.")
    return chosen


def _check_policy_offline(policy_class: Callable[[], Any], rng: Any) -> None:
    from ..balancing.policies import Backend

    policy = policy_class()
    cookie = getattr(policy, "cookie", None)
    if not isinstance(cookie, str) or not cookie:
        raise CheckFailed("Your policy has no `cookie` attribute, so the balancer cannot"
                          " pin clients. Add e.g. `cookie = 'MYPIN'` to the class.")
    # New clients, in turn: over k rounds each server gets exactly k of them.
    for _round in range(2):
        policy = policy_class()
        servers = _servers(rng, rng.randrange(3, 6))
        rounds = 4
        counts = {s.name: 0 for s in servers}
        for _ in range(rounds * len(servers)):
            counts[_choose(policy, _request(rng, {}), servers,
                           "a new client (no cookie)").name] += 1
        if set(counts.values()) != {rounds}:
            raise CheckFailed(
                f"{rounds * len(servers)} new clients (no cookie) in a row, over"
                f" {len(servers)} servers, were not placed in turn: some servers got more"
                " than others. Place new clients round robin (keep a turn counter).")
    # Pinned clients go home, whatever the order of the list and whatever else the
    # request says; a pin naming a server that is not live is re-placed.
    policy = policy_class()
    plain = [Backend(f"s{i}") for i in range(1, rng.randrange(3, 6) + 1)]
    servers = _servers(rng, rng.randrange(3, 6))
    short = next(a for a in servers if any(
        b is not a and b.name.startswith(a.name) for b in servers))
    long_ = next(b for b in servers if b is not short and b.name.startswith(short.name))
    # Both members of a pair like "s3"/"s31", each with the other first in the list.
    upper = next(a for a in servers if a.name != a.name.lower())
    lower = next(b for b in servers if b.name == upper.name.lower())
    trials = [(short, [long_, short]), (long_, [short, long_]),
              (upper, [lower, upper]), (lower, [upper, lower])]
    for group in (plain, servers):
        for _ in range(8):
            home = rng.choice(group)
            trials.append((home, rng.sample(group, len(group))))
    for home, order in trials:
        if len(order) == 2:
            order = order + [s for s in servers if s not in order]
        chosen = _choose(policy, _request(rng, {cookie: home.name}), order,
                         "a client whose cookie names a live server")
        if chosen is not home:
            raise CheckFailed(
                "A client whose cookie names a live server was sent to another server."
                " Send a pinned client back to the server named in its cookie: the one"
                " whose .name equals the cookie exactly (compare names with ==, not by"
                " position, by prefix or ignoring case).")
    for value, why in (("", "an empty pin cookie"), ("nobody", "a pin naming no server"),
                       (servers[0].name + "x" * 40, "a pin naming no server"),
                       (" ", "a blank pin cookie")):
        _choose(policy, _request(rng, {cookie: value}), servers, why)
    dead = rng.choice(servers)
    live = [s for s in servers if s is not dead]
    for _ in range(4):
        _choose(policy, _request(rng, {cookie: dead.name}), live,
                "a client pinned to a server that died (it is not in `servers`)")
    other = rng.choice([c for c in ("PIN", "SERVERID", "route") if c != cookie])
    _choose(policy, _request(rng, {other: live[0].name}), live, "a client with another"
            " cookie")


@question("03.sticky_policy", points=3, hints=[
    "A client's first request carries no pin: place it in turn (round robin). Set"
    " `cookie = 'MYPIN'` on the class: the balancer then sends that cookie, naming the"
    " server you chose, back to the client.",
    "In choose(), read request.cookies.get(self.cookie). If one of `servers` has"
    " exactly that .name, return it; otherwise fall back to round robin.",
    "`servers` holds only *live* servers: when the pinned one is dead it is simply not in"
    " the list, and your fallback picks a new one (the client is re-pinned).",
])
def sticky_policy(policy_class: Callable[[], Any]) -> str:
    "Write a sticky balancing policy and plug it into the kit's balancer."
    import labkit as lk

    rng = context().rng
    _check_policy_offline(policy_class, rng)

    names = _users(rng, rng.randrange(6, 11))
    with lk.Cluster(_stateful_app, size=3, balancer=policy_class(),
                    name="check-03-sticky") as cluster:
        logins = probe.concurrently(lambda i: _log_in(cluster, names[i]), len(names))
        error = probe.first_error(logins)
        if error is not None:
            for c in logins:
                if isinstance(c, requests.Session):
                    c.close()
            raise error if isinstance(error, CheckFailed) else CheckFailed(
                f"Several users logged in at once through your policy; one failed: {error}")
        clients = dict(zip(names, logins))
        try:
            home = {}
            for name in rng.sample(names, len(names)) * 3:
                me = probe.call("GET", cluster.url + "/me", session=clients[name],
                                what="GET /me")
                if me.status_code == 401:
                    raise CheckFailed(
                        "A user logged in, then GET /me answered 401: the request went to"
                        " a server that does not hold the session. Send a pinned client"
                        " back to the server named in its cookie.")
                _expect(me, 200, "GET /me for a logged-in user")
                home.setdefault(name, me.headers["X-Served-By"])
            if len(set(home.values())) < 2:
                raise CheckFailed("Every user was placed on the same server: place new"
                                  " clients in turn (round robin), so that every server"
                                  " gets some.")

            victim = rng.choice(sorted(set(home.values())))
            cluster.kill(victim)
            for name in rng.sample(names, len(names)):
                me = probe.call("GET", cluster.url + "/me", session=clients[name],
                                what="GET /me")
                if home[name] == victim:
                    _expect(me, 401, "After a server died, GET /me for a user pinned to it")
                    clients[name].close()
                    clients[name] = _log_in(cluster, name)  # re-pinned, new session
                    again = probe.call("GET", cluster.url + "/me", session=clients[name],
                                       what="GET /me")
                    _expect(again, 200, "After a server died, GET /me for a user who logged"
                                        " in again")
                    home[name] = again.headers["X-Served-By"]
                else:
                    _expect(me, 200, "After a server died, GET /me for a user pinned to a"
                                     " server that is still alive")
            # The dead server comes back: nobody is moved (their pins name live servers).
            cluster.revive(victim)
            for name in rng.sample(names, len(names)):
                me = probe.call("GET", cluster.url + "/me", session=clients[name],
                                what="GET /me")
                _expect(me, 200, "After the dead server was restarted, GET /me for a user"
                                 " whose cookie names another, live server")
        finally:
            for c in clients.values():
                c.close()
    return ("New clients placed in turn; pinned clients sent back by their cookie;"
            " clients of a dead server re-pinned and kept there when it comes back.")


# ------------------------------------------------------------------ predict logouts
def _random_pins(rng: Any) -> tuple[dict[str, str], set[str]]:
    servers = [f"s{i}" for i in rng.sample(range(1, 10), rng.randrange(1, 5))]
    servers.append(servers[0] + str(rng.randrange(10)))  # "s3" and "s31": names that
    servers.append(servers[-1].upper())  # contain one another; "S31": only the case differs
    rng.shuffle(servers)
    users = [probe.random_user(rng) for _ in range(rng.randrange(0, 12))]
    pins = {u: rng.choice(servers) for u in users}
    dead = set(rng.sample(servers, rng.randrange(0, len(servers) + 1)))
    if rng.random() < 0.3:
        dead.add(f"s{rng.randrange(20, 99)}")  # a dead server nobody was pinned to
    return pins, dead


def _judge(got: Any, pins: dict, dead: set, where: str) -> None:
    if not isinstance(got, (set, frozenset)):
        raise CheckFailed(f"Return a set of user names, not a {type(got).__name__}.")
    expected = {u for u, s in pins.items() if s in dead}
    missing, extra = expected - got, got - expected
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"left out {len(missing)} user(s) pinned to a dead server")
        if extra & set(pins):
            parts.append(f"included {len(extra & set(pins))} user(s) whose server is"
                         " alive")
        if extra - set(pins):
            parts.append("included values that are not users of `pins`")
        raise CheckFailed(f"{where}, your prediction {' and '.join(parts)}. A user loses"
                          " the session exactly when the server it is pinned to is dead.")


@question("03.predict_logouts", points=2, hints=[
    "A user loses their session exactly when the server holding it dies, and under a"
    " sticky balancer that is the server they are pinned to.",
    "Return the set of users whose pin is one of the dead servers:"
    " {user for user, server in pins.items() if server in dead}.",
])
def predict_logouts(who_loses: Callable[[dict, set], Any]) -> str:
    "From the pins, predict which users a crash logs out."
    import labkit as lk

    rng = context().rng
    for _ in range(30 if context().hidden else 15):
        pins, dead = _random_pins(rng)
        given_pins, given_dead = dict(pins), set(dead)
        got = who_loses(given_pins, given_dead)
        if given_pins != pins or given_dead != dead:
            raise CheckFailed("who_loses changed the `pins` or `dead` it was given. Read"
                              " them; build a new set for the answer.")
        _judge(got, pins, dead, "For a random set of pins and dead servers")
    # Server names that contain one another ("s3", "s31"): only the dead one counts.
    short = f"s{rng.randrange(1, 10)}"
    long_ = short + str(rng.randrange(10))
    users = [probe.random_user(rng) for _ in range(4)]
    pins = {users[0]: short, users[1]: long_, users[2]: short, users[3]: long_}
    for dead in ({long_}, {short}):
        _judge(who_loses(dict(pins), set(dead)), pins, dead,
               "With servers whose names contain one another")
    _judge(who_loses({}, {"s1"}), {}, {"s1"}, "With no users at all")
    _judge(who_loses({"a": "s1", "b": "s2"}, set()), {"a": "s1", "b": "s2"}, set(),
           "With no dead server")

    size = rng.choice((3, 4))
    names = _users(rng, rng.randrange(7, 12))
    with lk.Cluster(_stateful_app, size=size, balancer="sticky",
                    name="check-03-predict") as cluster:
        clients = {}
        try:
            for name in names:
                clients[name] = _log_in(cluster, name)
            pins = {name: cluster.pins[name] for name in clients}
            dead = set(rng.sample([s.name for s in cluster.servers], rng.choice((1, 1, 2))))
            predicted = who_loses(dict(pins), set(dead))
            for name in sorted(dead):
                cluster.kill(name)
            actual = {n for n, c in clients.items()
                      if probe.call("GET", cluster.url + "/me", session=c,
                                    what="GET /me").status_code == 401}
        finally:
            for c in clients.values():
                c.close()
    if not isinstance(predicted, (set, frozenset)) or set(predicted) != actual:
        _judge(predicted, pins, dead, "On a live cluster")
        raise CheckFailed("On a live cluster, your prediction did not match who lost"
                          " their session.")
    return ("Your predictions matched random pin maps and a live cluster's crash: exactly"
            " the users pinned to a dead server.")


# ------------------------------------------------------------------ capacity model
def _capacity_case(rng: Any, kind: str) -> dict:
    servers = rng.randrange(1, 6)
    workers = rng.randrange(1, 9)
    slots = servers * workers
    service_time = rng.choice((0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.25))
    if kind == "idle":
        users = rng.randrange(1, slots + 1)
    elif kind == "busy":
        users = rng.randrange(slots + 1, slots * 6 + 2)
        if users % slots == 0:
            users += 1  # not a multiple: a model in whole "rounds" is wrong here
    else:  # exactly full
        users = slots
    return {"users": users, "servers": servers, "workers": workers,
            "service_time": service_time}


def _describe_case(case: dict, kind: str) -> str:
    where = {"idle": "fewer users than worker slots (nobody waits in a queue)",
             "busy": "more users than worker slots (a queue forms)",
             "full": "exactly as many users as worker slots"}[kind]
    args = ", ".join(f"{k}={v}" for k, v in case.items())
    return f"latency({args}), a case with {where}"


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

    rng = context().rng
    kinds = ["idle", "busy", "full"] * (8 if context().hidden else 4)
    rng.shuffle(kinds)
    for kind in kinds:
        case = _capacity_case(rng, kind)
        got = latency(**case)
        if isinstance(got, bool) or not isinstance(got, numbers.Real) or not math.isfinite(got):
            raise CheckFailed(f"latency(...) should return a number of seconds, not"
                              f" {type(got).__name__} {got!r:.30}.")
        expected = max(case["service_time"],
                       case["users"] * case["service_time"] / (case["servers"] * case["workers"]))
        if abs(got - expected) > 1e-9 + 0.01 * expected:
            raise CheckFailed(
                f"{_describe_case(case, kind)}, returned {float(got):.4g} s, which is too"
                f" {'high' if got > expected else 'low'}. Think about how many requests the"
                " cluster finishes per second, and Little's law.")

    users = rng.choice((6, 8, 10))
    predicted = latency(users=users, servers=2, workers=2, service_time=0.02)
    with lk.Cluster(lambda: _ok_app(), size=2, workers=2, service_time=0.02,
                    name="check-03-capacity") as cluster:
        for _attempt in range(2):  # a busy machine can spoil one measurement
            report = lk.load_test(cluster, users=users, requests=20 * users,
                                  progress=False)
            measured = report.p50 / 1000
            if 0.7 * predicted <= measured <= 2.5 * predicted:
                break
    if not 0.7 * predicted <= measured <= 2.5 * predicted:  # a busy laptop adds overhead
        raise CheckFailed(
            f"Your model's prediction for {users} users on 2 servers x 2 workers x 20 ms"
            " is far from the median the live cluster measured. (If this machine is very"
            " busy, run the check again.)")
    return ("Your model gives the average latency for random clusters, loaded or not,"
            " and matches a live cluster's measurement.")


def _ok_app() -> Any:
    from flask import Flask

    app = Flask("capacity")
    app.get("/")(lambda: "ok")
    return app
