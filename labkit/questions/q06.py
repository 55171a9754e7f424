"""Chapter 06 questions: scaling out.

* ``06.servers_needed``: the capacity of a cluster from its parameters, and how many
  servers a target load needs; the prediction is then run on a live cluster;
* ``06.least_loaded``: a balancing policy that sends each request to the server with
  the fewest requests in flight and never to a dead one, plugged into the kit's
  balancer while servers crash and come back;
* ``06.lost_by_period``: read a load report and say which fault period lost requests;
* ``06.retry_rule``: which requests a balancer may safely send again.
"""

from __future__ import annotations

from typing import Any, Callable

from ..checks import CheckFailed, question

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
@question("06.servers_needed", points=2, hints=[
    "One server finishes at most `workers` requests every `service_time` seconds.",
    "capacity = servers * workers / service_time. The number of servers for a target"
    " is the smallest whole number whose capacity reaches the target.",
    "servers_needed = math.ceil(target / capacity(servers=1, workers=workers,"
    " service_time=service_time)), and never less than 1.",
])
def servers_needed(capacity: Callable[..., float], needed: Callable[..., int]) -> str:
    "Compute a cluster's capacity and the number of servers a target load needs."
    import labkit as lk

    for (servers, workers, service_time), expected in [((3, 4, 0.02), 600), ((1, 2, 0.05), 40),
                                                        ((5, 8, 0.1), 400)]:
        got = capacity(servers=servers, workers=workers, service_time=service_time)
        if not _is_number(got) or abs(got - expected) > 1e-6 * expected:
            raise CheckFailed(
                f"capacity(servers={servers}, workers={workers}, service_time="
                f"{service_time}) should be {expected:g} requests/s, not {got!r}.")
    cases = [((600, 4, 0.02), 3), ((601, 4, 0.02), 4), ((250, 2, 0.02), 3),
             ((10, 4, 0.02), 1), ((300, 3, 0.01), 1), ((900, 3, 0.01), 3)]
    for (target, workers, service_time), expected in cases:
        got = needed(target=target, workers=workers, service_time=service_time)
        if not isinstance(got, int) or isinstance(got, bool):
            raise CheckFailed(f"servers_needed(...) must return a whole number of servers"
                              f" (an int), not {got!r}.")
        if got != expected:
            per_server = workers / service_time
            raise CheckFailed(
                f"servers_needed(target={target}, workers={workers}, service_time="
                f"{service_time}) should be {expected}: one server handles"
                f" {per_server:g} requests/s, so {expected} server(s) reach the target"
                f" and {expected - 1} would not. Your function returned {got}.")

    # The live part: run the prediction for 180 requests/s.
    count = needed(target=180, workers=WORKERS, service_time=SERVICE_TIME)
    predicted = capacity(servers=count, workers=WORKERS, service_time=SERVICE_TIME)
    with lk.Cluster(_tiny_app, size=count, isolation="process", workers=WORKERS,
                    service_time=SERVICE_TIME, name="check-06-needed") as cluster:
        report = lk.load_test(cluster, users=6 * count, requests=120 * count,
                              progress=False)
    ratio = report.throughput / predicted
    if report.failed or not 0.5 <= ratio <= 1.15:
        raise CheckFailed(
            f"A live cluster of {count} servers did not behave as your capacity predicts"
            f" ({report.failed} failed requests, measured/predicted throughput"
            f" {ratio:.2f}). If this machine is very busy, run the check again.")
    return (f"{count} servers, {predicted:g} requests/s in theory; the live cluster"
            " reached it within the tolerance.")


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
        if chosen in servers and chosen.active > fewest:
            self.not_least.append((chosen.name, chosen.active, fewest))
        return chosen


@question("06.least_loaded", points=3, hints=[
    "Each server the policy is given has `.active` (requests in flight now) and"
    " `.alive`. Pick among the live ones the one with the smallest `.active`.",
    "live = [s for s in servers if s.alive]; then return min(live, key=...).",
    "return min((s for s in servers if s.alive), key=lambda s: (s.active, s.served))",
])
def least_loaded(policy_class: Callable[[], Any]) -> str:
    "Write a least-loaded balancing policy that never picks a dead server."
    import labkit as lk
    from ..balancing.policies import Backend, RequestInfo

    request = RequestInfo("GET", "/", {}, {}, "probe")
    busy = [Backend("s1", active=3, served=9), Backend("s2", active=1, served=9),
            Backend("s3", active=2, served=1)]
    got = policy_class().choose(request, busy)
    if got is not busy[1]:
        raise CheckFailed(
            "With s1, s2, s3 having 3, 1 and 2 requests in flight (`.active`), choose()"
            f" should return s2 (the fewest in flight), not {got!r}.")
    dead = [Backend("s1", alive=False, active=0), Backend("s2", active=2),
            Backend("s3", active=1)]
    got = policy_class().choose(request, dead)
    if got is not dead[2]:
        raise CheckFailed(
            "s1 is dead (`alive` is False) with nothing in flight; s2 has 2 requests"
            f" in flight and s3 has 1. choose() should return s3, not {got!r}: never"
            " send work to a dead server, however idle it looks.")

    watch = _Watch(policy_class())
    faults = [lk.Fault("kill", "s2", at=0.25), lk.Fault("revive", "s2", at=0.5),
              lk.Fault("kill", "s3", at=0.6)]
    with lk.Cluster(_tiny_app, size=3, balancer=watch, workers=WORKERS,
                    service_time=SERVICE_TIME, name="check-06-least") as cluster:
        report = lk.load_test(cluster, users=9, requests=270, faults=faults,
                              progress=False)
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
    return ("Every request went to the least-loaded live server, through two crashes,"
            " and none was lost.")


# ------------------------------------------------------------------ lost by period
SLACK = 0.1  # seconds: the fault log notes a kill once it is done, a little late


def _reference_lost(report: Any) -> dict[str, int]:
    lost: dict[str, int] = {}
    for server, down_from, down_until in report.fault_periods():
        lost[server] = lost.get(server, 0) + sum(
            1 for s in report.samples
            if not s.ok and down_from - SLACK <= s.start + s.latency < down_until)
    return lost


def _sample(start: float, latency: float, status: int, server: str | None) -> Any:
    from ..observe.load import Sample

    return Sample(user=0, start=start, latency=latency, status=status, server=server)


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

    made_up = LoadReport(users=1, duration=10.0, samples=[
        _sample(0.5, 0.1, 200, "s1"),
        _sample(1.90, 0.08, 0, None),    # cut by s2's crash, logged at 2.0 once done
        _sample(1.95, 0.15, 0, None),    # in flight when s2 died
        _sample(2.5, 0.1, 502, None),
        _sample(4.0, 0.1, 0, None),      # a failure of its own, in no fault period
        _sample(6.5, 0.1, 0, None),      # s3's period
        _sample(8.9, 0.05, 200, "s1"),
    ], fault_log=[(2.0, "kill", "s2"), (3.0, "revive", "s2"), (6.0, "kill", "s3"),
                  (7.0, "revive", "s3"), (8.0, "kill", "s1"), (9.0, "revive", "s1")])
    expected = {"s2": 3, "s3": 1, "s1": 0}
    got = lost(made_up)
    if not isinstance(got, dict):
        raise CheckFailed(f"Return a dict {{server: failed requests}}, not"
                          f" {type(got).__name__}.")
    if got != expected:
        detail = ""
        if isinstance(got.get("s2"), int) and got["s2"] < 3:
            detail = (" s2 was down from 2.0 s to 3.0 s: the requests sent at 1.90 s and"
                      " 1.95 s were in flight when it died and failed at 1.98 s and 2.10 s."
                      " Use the time a request ended (start + latency), and allow 0.1 s"
                      " before down_from.")
        elif isinstance(got.get("s3"), int) and got["s3"] > 1:
            detail = (" The failure at 4.0 s is in no fault period: count a failure only"
                      " when it ended inside a period (or just before it began).")
        raise CheckFailed(f"For the made-up report the answer is {expected}, not {got}."
                          f"{detail} Every fault period gets a key, even with 0.")

    # The live part: POSTs are not retried, so a crash under load loses a few.
    faults = [lk.Fault("kill", "s1", at=0.2), lk.Fault("revive", "s1", at=0.4),
              lk.Fault("kill", "s2", at=0.6), lk.Fault("revive", "s2", at=0.8)]
    with lk.Cluster(_tiny_app, size=3, isolation="process", workers=WORKERS,
                    service_time=SERVICE_TIME, name="check-06-lost") as cluster:
        report = lk.load_test(cluster, users=9, requests=270, method="POST",
                              faults=faults, progress=False)
    expected, got = _reference_lost(report), lost(report)
    if got != expected:
        raise CheckFailed(f"On a live report (POSTs while s1 and s2 crashed) the failed"
                          f" requests per period were {expected}, but you said {got}.")
    return "Right on the made-up report and on a live one."


# ------------------------------------------------------------------ retry rule
@question("06.retry_rule", points=1, hints=[
    "A retry is safe when doing the request twice leaves the server as doing it once.",
    "HTTP calls such methods idempotent (RFC 9110, section 9.2.2): the safe methods"
    " (GET, HEAD, OPTIONS, TRACE) plus PUT and DELETE.",
    "return method.upper() in {'GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE'}",
])
def retry_rule(may_retry: Callable[[str], bool]) -> str:
    "Decide which methods a balancer may send again after a server died."
    from ..balancing.balancer import IDEMPOTENT

    why = {"POST": "a POST may have created something already (a second order, a second"
                   " payment)",
           "PATCH": "a PATCH may be relative (\"add 1\"), so twice is not once",
           "GET": "a GET changes nothing on the server", "HEAD": "a HEAD is a GET"
           " without the body", "PUT": "a PUT sets the whole resource: twice is the"
           " same as once", "DELETE": "deleting twice leaves it deleted",
           "OPTIONS": "OPTIONS only asks what is allowed",
           "TRACE": "TRACE only echoes the request"}
    for method in ("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", "POST", "PATCH",
                   "get", "post"):
        expected = method.upper() in IDEMPOTENT
        got = may_retry(method)
        if not isinstance(got, bool):
            raise CheckFailed(f"may_retry({method!r}) must return True or False, not"
                              f" {got!r}.")
        if got != expected:
            verdict = "may" if expected else "must not"
            raise CheckFailed(f"A balancer {verdict} retry a {method}: "
                              f"{why[method.upper()]}. Your may_retry({method!r})"
                              f" returned {got}."
                              + (" (Methods may come in lower case.)"
                                 if method.islower() else ""))
    return ("Exactly the idempotent methods: the rule of the kit's balancer, and nginx's"
            " default (proxy_next_upstream without non_idempotent).")
