"""Chapter 06 questions: scaling out.

* ``06.servers_needed``: the capacity of a cluster from its parameters, and how many
  servers a target load needs; the prediction is then run on a live cluster;
* ``06.least_loaded``: a balancing policy that sends each request to the live server
  with the fewest requests in flight, plugged into the kit's balancer while servers
  crash and come back;
* ``06.lost_by_period``: read a load report and say which fault period lost requests;
* ``06.retry_rule``: which requests a balancer may safely send again.

Every check draws what the learner cannot see (cluster sizes, targets, lists of
servers, fault schedules, made-up reports, the casing of methods) from the run's seed:
see :mod:`labkit.checks.context`.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Callable

from ..checks import CheckFailed, context, question

WORKERS, SERVICE_TIME = 2, 0.02


def _tiny_app() -> Any:
    """A stateless app: every answer depends on the request alone."""
    from flask import Flask

    app = Flask("stateless")

    @app.route("/", methods=["GET", "POST"])
    def index():
        return {"ok": True}

    return app


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ------------------------------------------------------------------ servers needed
DECIMAL_TIMES = (0.005, 0.01, 0.02, 0.025, 0.04, 0.05, 0.1, 0.2, 0.25, 0.5)
BINARY_TIMES = (0.5, 0.25, 0.125, 0.0625, 0.03125)  # exact in floating point
TRAP_TIMES = (0.3, 0.03, 0.07, 0.15, 0.6)  # not exact: divisions land off whole numbers


def _needed_cases(rng: Any, capacity: Callable[..., float]
                  ) -> list[tuple[float, int, float, int, str]]:
    """(target, workers, service_time, servers needed, what kind of case).

    Boundary targets are what the learner's own ``capacity`` returns for k servers (it
    was checked first), so "k servers reach it" holds in their arithmetic; they are
    picked where floating-point division lands a hair above a whole number, the case a
    plain ``ceil(target / per_server)`` gets wrong.
    """
    cases = []
    # Where each usual one-line formula lands a hair above k: one trap of each kind.
    formulas = (lambda v, w, t: v * t / w, lambda v, w, t: v / (w / t),
                lambda v, w, t: Fraction(str(v)) * Fraction(str(t)) / w)
    traps: list[list[tuple[int, int, float]]] = [[] for _ in formulas]
    for workers in range(1, 17):
        for time_ in DECIMAL_TIMES + TRAP_TIMES:
            for k in range(1, 12):
                value = k * workers / time_
                for found, formula in zip(traps, formulas):
                    if math.ceil(formula(value, workers, time_)) != k:
                        found.append((k, workers, time_))
    for k, workers, time_ in (rng.choice(found) for found in traps):
        target = capacity(servers=k, workers=workers, service_time=time_)
        cases.append((target, workers, time_, k,
                      "a target exactly equal to what your capacity() returns for a whole"
                      " number of servers (floating-point division lands a hair above it)"))
    for _ in range(2):   # exactly on a boundary, in exact binary arithmetic
        workers, time_ = rng.randrange(1, 17), rng.choice(BINARY_TIMES)
        k = rng.randrange(2, 12)
        cases.append((k * workers / time_, workers, time_, k,
                      "a target that a whole number of servers reaches exactly"))
    for _ in range(2):   # a hair above a boundary: a real excess, however small
        workers, time_ = rng.randrange(1, 17), rng.choice(DECIMAL_TIMES)
        k = rng.randrange(1, 12)
        exact = Fraction(k * workers) / Fraction(str(time_))
        target = float(exact * (1 + Fraction(rng.randrange(2, 9), 10 ** 8)))
        cases.append((target, workers, time_, k + 1,
                      "a target a tiny bit (far more than rounding) above what a whole"
                      " number of servers reaches"))
    for i in range(4):   # between two boundaries, by at least half a request per second
        workers, time_ = rng.randrange(1, 17), rng.choice(DECIMAL_TIMES)
        per = Fraction(workers) / Fraction(str(time_))
        k = rng.randrange(1, 15)
        share = rng.randrange(5, 45) if i < 2 else rng.randrange(55, 95)  # both halves
        target = float(per * (k - 1) + per * Fraction(share, 100))
        target = round(target, 1)
        needed = max(1, math.ceil(Fraction(str(target)) / per))
        cases.append((target, workers, time_, needed, "a target between two cluster sizes"))
    workers, time_ = rng.randrange(1, 9), rng.choice(DECIMAL_TIMES)
    cases.append((round(rng.uniform(0.1, 0.9) * workers / time_, 1), workers, time_, 1,
                  "a target below what one server handles"))
    cases.append((0, rng.randrange(1, 9), rng.choice(DECIMAL_TIMES), 1,
                  "a target of 0 (a cluster still has one server)"))
    rng.shuffle(cases)
    return cases


@question("06.servers_needed", points=2, hints=[
    "One server finishes at most `workers` requests every `service_time` seconds.",
    "capacity = servers * workers / service_time. The number of servers for a target"
    " is the smallest whole number whose capacity reaches the target.",
    "n = max(1, math.ceil(target / capacity(servers=1, ...))); then, because float"
    " division can land a hair above a whole number, step down while"
    " capacity(servers=n - 1, ...) >= target (or search n upwards with capacity()).",
])
def servers_needed(capacity: Callable[..., float], needed: Callable[..., int]) -> str:
    "Compute a cluster's capacity and the number of servers a target load needs."
    import labkit as lk

    rng = context().rng
    for _ in range(5):
        servers, workers = rng.randrange(1, 21), rng.randrange(1, 17)
        service_time = rng.choice(DECIMAL_TIMES + BINARY_TIMES)
        expected = float(Fraction(servers * workers) / Fraction(str(service_time)))
        got = capacity(servers=servers, workers=workers, service_time=service_time)
        if not _is_number(got) or abs(got - expected) > 1e-9 * expected:
            off = ("" if not _is_number(got) else " (too high)" if got > expected
                   else " (too low)")
            raise CheckFailed(
                f"capacity(servers={servers}, workers={workers}, service_time="
                f"{service_time}) returned {got!r}{off}: each server finishes `workers`"
                " requests every `service_time` seconds, and the servers work side by side.")
    for target, workers, service_time, expected, story in _needed_cases(rng, capacity):
        got = needed(target=target, workers=workers, service_time=service_time)
        if not isinstance(got, int) or isinstance(got, bool):
            raise CheckFailed(f"servers_needed(...) must return a whole number of servers"
                              f" (an int), not {type(got).__name__}.")
        if got != expected:
            call = "servers_needed(...)"
            if got < expected:
                why = ("too low: that many servers do not reach the target (round up, and"
                       " never return less than 1)")
            else:
                why = "too high: one server fewer already reaches the target"
            raise CheckFailed(f"{call} returned {got}, which is {why}. This was {story}.")

    # The live part: run the prediction for a target of 2 or 3 servers' worth.
    target = rng.randrange(110, 290)
    count = needed(target=target, workers=WORKERS, service_time=SERVICE_TIME)
    predicted = capacity(servers=count, workers=WORKERS, service_time=SERVICE_TIME)
    with lk.Cluster(_tiny_app, size=count, isolation="process", workers=WORKERS,
                    service_time=SERVICE_TIME, name="check-06-needed") as cluster:
        report = lk.load_test(cluster, users=6 * count, requests=100 * count,
                              progress=False, seed=context().seed)
    # Only what a busy machine cannot fake is judged: every request served, and never
    # faster than the predicted capacity (load only slows a cluster down, so a measured
    # throughput well above the prediction means the capacity formula is too low).
    ratio = report.throughput / predicted
    if report.failed or ratio > 1.15:
        raise CheckFailed(
            f"A live cluster of the size you chose did not behave as your capacity predicts"
            f" ({report.failed} failed requests; it ran"
            f" {'faster' if ratio > 1.15 else 'no faster'} than your capacity allows).")
    return ("Capacity and cluster sizes right on random cases (float boundaries and tiny"
            " excesses included); a live cluster of the size you chose served every request"
            " and never ran faster than your capacity predicts.")


# ------------------------------------------------------------------ least loaded
class _Watch:
    """Wraps the learner's policy inside the balancer and notes every choice."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.choices = 0
        self.not_least: list[tuple[str, int, int]] = []

    def choose(self, request: Any, servers: Any) -> Any:
        chosen = self.policy.choose(request, servers)
        fewest = min(s.active for s in servers)
        self.choices += 1
        if any(chosen is s for s in servers) and chosen.active > fewest:
            self.not_least.append((chosen.name, chosen.active, fewest))
        return chosen


def _random_servers(rng: Any) -> list:
    from ..balancing.policies import Backend

    n = rng.randrange(1, 7)
    names = [f"s{i}" for i in range(1, n + 1)]
    rng.shuffle(names)   # the list is not always in name order
    return [Backend(name, active=rng.randrange(0, 6), served=rng.randrange(0, 60))
            for name in names]


@question("06.least_loaded", points=3, hints=[
    "Each server the policy is given has `.active` (requests in flight now) and"
    " `.served` (requests so far). The balancer gives you only the live ones.",
    "Pick the one with the smallest `.active`; return the server object itself.",
    "return min(servers, key=lambda s: s.active)  (ties: any of them; the kit's"
    " LeastConnections breaks them by .served)",
])
def least_loaded(policy_class: Callable[[], Any]) -> str:
    "Write a least-loaded balancing policy."
    import labkit as lk
    from ..balancing.policies import RequestInfo

    rng = context().rng
    policy = policy_class()
    from ..balancing.policies import Backend

    alone = [Backend(f"s{rng.randrange(1, 4)}", active=rng.randrange(0, 5))]
    for i in range(80):
        servers = alone if i == 0 else _random_servers(rng)   # one live server left
        request = RequestInfo(rng.choice(["GET", "POST"]), "/", {}, {}, f"client-{i}")
        got = policy.choose(request, servers)
        if not any(got is s for s in servers):
            raise CheckFailed(
                f"choose() should return one of the server objects it was given, not"
                f" {type(got).__name__} {got!r}.")
        fewest = min(s.active for s in servers)
        if got.active != fewest:
            others = ("it had the most requests served so far" if got.served == max(
                s.served for s in servers) else "it came first in the list" if got is
                servers[0] else "it was not the least loaded")
            raise CheckFailed(
                f"Given {len(servers)} live servers, choose() picked {got.name} with"
                f" {got.active} request(s) in flight while another had {fewest}"
                f" ({others}). Compare `.active` (in flight now), not `.served` or the"
                " order of the list.")

    watch = _Watch(policy_class())
    victim, second = rng.sample(["s1", "s2", "s3"], 2)
    first_at = rng.uniform(0.15, 0.3)
    faults = [lk.Fault("kill", victim, at=first_at),
              lk.Fault("revive", victim, at=first_at + rng.uniform(0.15, 0.25)),
              lk.Fault("kill", second, at=rng.uniform(0.6, 0.75))]
    with lk.Cluster(_tiny_app, size=3, balancer=watch, workers=WORKERS,
                    service_time=SERVICE_TIME, name="check-06-least") as cluster:
        report = lk.load_test(cluster, users=9, requests=240, faults=faults,
                              progress=False, seed=context().seed)
        policy_error = cluster.balancer.policy_error
    if report.failed:
        extra = f" The balancer said: {policy_error}" if policy_error else ""
        raise CheckFailed(
            f"{report.failed} of {report.requests} requests failed while servers crashed"
            f" and came back.{extra}")
    if len(watch.not_least) > watch.choices // 20:
        name, active, fewest = watch.not_least[0]
        raise CheckFailed(
            f"{len(watch.not_least)} of {watch.choices} requests went to a server that"
            f" was not the least loaded (for example {name} with {active} in flight"
            f" while another live server had {fewest}). Compare `.active`, not"
            " `.served` or the order of the list.")
    return ("Every choice went to a least-loaded server, on random lists and live through"
            " two crashes, and no request was lost.")


# ------------------------------------------------------------------ lost by period
SLACK = 0.1  # seconds: the fault log notes a kill once it is done, a little late


def _reference_lost(report: Any) -> dict[str, int]:
    lost: dict[str, int] = {}
    for server, down_from, down_until in report.fault_periods():
        lost[server] = lost.get(server, 0) + sum(
            1 for s in report.samples
            if not s.ok and down_from - SLACK <= s.start + s.latency < down_until)
    return lost


def _rule(report: Any, *, by_end: bool, slack: float, add: bool = True) -> dict[str, int]:
    """A reading of the counting rule (right: by_end, slack=SLACK, add), for hints."""
    lost: dict[str, int] = {}
    for server, a, b in report.fault_periods():
        n = sum(1 for s in report.samples
                if not s.ok and a - slack <= s.start + (s.latency if by_end else 0) < b)
        lost[server] = (lost.get(server, 0) if add else 0) + n
    return lost


def _readings(report: Any, *, by_end: bool, slacks: tuple[float, ...]) -> list[dict]:
    return [_rule(report, by_end=by_end, slack=slack, add=add)
            for slack in slacks for add in (True, False)]


def _sample(start: float, latency: float, status: int, server: str | None) -> Any:
    from ..observe.load import Sample

    return Sample(user=0, start=round(start, 4), latency=round(latency, 4), status=status,
                  server=server)


def _made_up_report(rng: Any, *, never_revived: bool = False) -> Any:
    """A report with 2-4 outages (a server may fail twice, the last may never end)."""
    from ..observe.load import LoadReport

    duration = 20.0
    log, samples, t = [], [], 0.5
    periods = []
    a, b, c = rng.sample(["s1", "s2", "s3"], 3)
    order = [a, b, a, c] if never_revived else [a, b, a, rng.choice([a, b, c])][
        :rng.randrange(3, 5)]                   # a goes down twice; c never comes back
    for i, server in enumerate(order):
        start = round(t + rng.uniform(0.6, 1.5), 2)
        end = round(start + rng.uniform(0.8, 2.0), 2)
        forever = i == len(order) - 1 and never_revived or end > duration - 1
        log.append((start, "kill", server))
        if not forever:
            log.append((end, "revive", server))
        periods.append((server, start, duration if forever else end))
        t = end
        if forever:
            break
    ok = lambda at: _sample(at, rng.uniform(0.01, 0.05), 200, "s1")  # noqa: E731
    spared = 1   # b's only period loses nothing; a's two periods both lose some
    for index, (server, a, b) in enumerate(periods):
        kinds = ["inside"] * rng.randrange(1, 4) + ["in_flight"] * rng.randrange(1, 3) + [
            "too_early"] * rng.randrange(0, 2) + ["ok_inside"] * rng.randrange(1, 3) + [
            "after"] * rng.randrange(0, 2)
        if index == spared:
            kinds = [k for k in kinds if k not in ("inside", "in_flight")]
        for kind in kinds:
            latency = rng.uniform(0.02, 0.3)
            if kind == "inside":
                end = rng.uniform(a + 0.01, b - 0.01)
            elif kind == "in_flight":
                end = rng.uniform(a - SLACK + 0.01, a - 0.01)
            elif kind == "too_early":
                end = rng.uniform(a - SLACK - 0.4, a - SLACK - 0.02)
            elif kind == "after":
                end = rng.uniform(b + 0.02, b + 0.3)
                if end >= duration:
                    continue
            else:
                samples.append(ok(rng.uniform(a, b - 0.06)))
                continue
            status = rng.choice([0, 0, 502, 503])
            samples.append(_sample(end - latency, latency, status, None))
    samples.append(ok(0.1))
    samples.sort(key=lambda s: s.start)
    return LoadReport(users=3, duration=duration, samples=samples, fault_log=log)


def _overlap_report(rng: Any) -> Any:
    """Two servers down at once, with failures in the overlap (counted for both).

    Times are multiples of 1/8 s, exact in binary, and no failure ends within 0.1 s of
    a period's edge, so every reading of "inside" gives the same counts.
    """
    from ..observe.load import LoadReport

    x, y = rng.sample(["s1", "s2", "s3"], 2)
    eighth = lambda n: n / 8  # noqa: E731
    a1 = rng.randrange(8, 16)
    b1 = a1 + rng.randrange(12, 20)
    a2 = rng.randrange(a1 + 4, b1 - 4)
    b2 = b1 + rng.randrange(4, 12)
    log = [(eighth(a1), "kill", x), (eighth(a2), "kill", y), (eighth(b1), "revive", x),
           (eighth(b2), "revive", y)]
    samples = []
    for _ in range(rng.randrange(1, 4)):          # inside both periods at once
        end = eighth(rng.randrange(a2 + 1, b1))
        samples.append(_sample(end - 0.125, 0.125, rng.choice([0, 502]), None))
    for _ in range(rng.randrange(1, 3)):          # after x came back, while y was down
        end = eighth(rng.randrange(b1 + 2, b2 - 1))
        samples.append(_sample(end - 0.25, 0.25, 0, None))
    samples.append(_sample(eighth(a1) + 0.125, 0.125, 503, None))   # only x was down
    samples.append(_sample(0.125, 0.125, 200, "s1"))
    samples.sort(key=lambda s: s.start)
    return LoadReport(users=3, duration=eighth(b2 + 8), samples=samples, fault_log=log)


def _compare(got: Any, expected: dict[str, int], report: Any, what: str) -> None:
    if not isinstance(got, dict):
        raise CheckFailed(f"Return a dict {{server: failed requests}}, not"
                          f" {type(got).__name__}.")
    if got == expected:
        return
    missing = sorted(set(expected) - set(got))
    if missing:
        raise CheckFailed(f"For {what}, the server(s) {', '.join(missing)} went down but have"
                          " no key in your answer: every fault period gets a key, even with"
                          " 0.")
    extra = sorted(set(got) - set(expected))
    if extra:
        raise CheckFailed(f"For {what}, your answer has key(s) {', '.join(map(str, extra))}"
                          " for servers that never went down.")
    server = next(s for s in sorted(expected) if got[s] != expected[s])
    diff = got[server] - expected[server]
    hint = " Count a failure only when it ended inside a period (or just before it began)."
    if got in _readings(report, by_end=False, slacks=(SLACK, 0.0)):
        hint = (" A request that failed because a server died was sent before the crash:"
                " place each failure by the time it ended, start + latency.")
    elif got in _readings(report, by_end=True, slacks=(0.0,)):
        hint = (" A request in flight when the server died ends a little before down_from"
                " (the kill is logged once it is done): allow 0.1 s before down_from.")
    elif diff > 0:
        hint = (" A failure that ended outside every period (or a request that did not"
                " fail) was counted.")
    raise CheckFailed(
        f"For {what}, your count for {server} was {abs(diff)} too"
        f" {'high' if diff > 0 else 'low'}.{hint} If a server went down twice, add up both"
        " periods.")


@question("06.lost_by_period", points=2, hints=[
    "report.fault_periods() lists (server, down_from, down_until); report.samples lists"
    " every request with .start, .latency and .ok.",
    "A request that failed because a server died was sent *before* the crash: it was in"
    " flight. Place each failed request by the time it ended, start + latency, and"
    " allow it to end up to 0.1 s before down_from.",
    "For each period: sum(1 for s in report.samples if not s.ok and"
    " down_from - 0.1 <= s.start + s.latency < down_until). Give every period a key.",
])
def lost_by_period(lost: Callable[[Any], dict]) -> str:
    "From a load report, count the failed requests of each fault period."
    import labkit as lk
    from ..observe.load import LoadReport

    rng = context().rng
    quiet = LoadReport(users=1, duration=5.0, samples=[_sample(1.0, 0.1, 0, None)])
    _compare(lost(quiet), {}, quiet, "a report with no fault at all")
    for i in range(4 if context().hidden else 3):
        report = _made_up_report(rng, never_revived=i == 0)  # the first: one never ends
        _compare(lost(report), _reference_lost(report), report,
                 "a made-up report (outages and requests picked at random)")
    overlap = _overlap_report(rng)
    _compare(lost(overlap), _reference_lost(overlap), overlap,
             "a made-up report where two servers were down at the same time (a failure"
             " inside both periods counts for each: the report does not say which server"
             " it was sent to)")

    # The live part: POSTs are not retried, so a crash under load loses a few.
    first, second = rng.sample(["s1", "s2", "s3"], 2)
    at = rng.uniform(0.15, 0.3)
    faults = [lk.Fault("kill", first, at=at), lk.Fault("revive", first, at=at + 0.2),
              lk.Fault("kill", second, at=at + 0.35), lk.Fault("revive", second, at=at + 0.5)]
    with lk.Cluster(_tiny_app, size=3, isolation="process", workers=WORKERS,
                    service_time=SERVICE_TIME, name="check-06-lost") as cluster:
        report = lk.load_test(cluster, users=9, requests=240, method="POST",
                              faults=faults, progress=False, seed=context().seed)
    _compare(lost(report), _reference_lost(report), report,
             "a live report (POSTs while two servers crashed)")
    return "Right on made-up reports and on a live one."


# ------------------------------------------------------------------ retry rule
@question("06.retry_rule", points=1, hints=[
    "A retry is safe when doing the request twice leaves the server as doing it once.",
    "HTTP calls such methods idempotent (RFC 9110, section 9.2.2): the safe methods"
    " (GET, HEAD, OPTIONS, TRACE) plus PUT and DELETE. Nothing else: not a method you do"
    " not know.",
    "return method.upper() in {'GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'}",
])
def retry_rule(may_retry: Callable[[str], bool]) -> str:
    "Decide which methods a balancer may send again after a server died."
    from ..balancing.balancer import IDEMPOTENT

    rng = context().rng
    why = {"POST": "a POST may have created something already (a second order, a second"
                   " payment)",
           "PATCH": "a PATCH may be relative (\"add 1\"), so twice is not once",
           "CONNECT": "CONNECT opens a tunnel: twice is two tunnels",
           "GET": "a GET changes nothing on the server", "HEAD": "a HEAD is a GET"
           " without the body", "PUT": "a PUT sets the whole resource: twice is the"
           " same as once", "DELETE": "deleting twice leaves it deleted",
           "OPTIONS": "OPTIONS only asks what is allowed",
           "TRACE": "TRACE only echoes the request"}
    unknown = rng.choice(["PURGE", "LINK", "REPORT", "FROB", "LOCK"])
    methods = list(why) + [unknown]
    methods += [m.lower() for m in methods] + [
        "".join(c.lower() if rng.random() < 0.5 else c for c in m) for m in methods]
    # Near misses: a substring, a prefix, padding, a longer or empty name. A method
    # token is matched whole (RFC 9110 section 9.1): none of these is GET or PUT.
    base = rng.choice(sorted(IDEMPOTENT))
    near = ["", " ", base[1:], base[:-1], base + rng.choice("XS1"), f" {base} ",
            f"{base}\n", base[0] + " " + base[1:], "T H", "ET", "GET HEAD",
            f"{base},{rng.choice(sorted(IDEMPOTENT))}", base + "\x00"]
    methods += [m if rng.random() < 0.5 else m.lower() for m in near]
    rng.shuffle(methods)
    for method in methods:
        expected = method.upper() in IDEMPOTENT
        got = may_retry(method)
        if not isinstance(got, bool):
            raise CheckFailed(f"may_retry({method!r}) must return True or False, not"
                              f" {type(got).__name__}.")
        if got != expected:
            verdict = "may" if expected else "must not"
            reason = why.get(method.upper(), "a method the balancer does not know may do"
                             " anything; only the idempotent ones are safe, matched as a"
                             " whole name (not a substring, prefix or padded name)")
            raise CheckFailed(f"A balancer {verdict} retry a {method.upper()!r}: {reason}."
                              f" Your may_retry({method!r}) returned {got}."
                              + (" (Methods may come in any case.)"
                                 if method != method.upper() else ""))
    return ("Exactly the idempotent methods, in any case: the rule of the kit's balancer, and"
            " nginx's default (proxy_next_upstream without non_idempotent).")
