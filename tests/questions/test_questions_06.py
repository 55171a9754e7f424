"""The chapter 06 checks: the reference passes, the released stubs fail, and every row of
the answer table (valid alternatives, wrong answers by class) gets the right verdict."""

from __future__ import annotations

import bisect
import math
import random
import types
from fractions import Fraction

from exercise_kit import (SOLUTIONS, assert_case, assert_released_stubs_fail, check_calls,
                          reference, run, table, valid, wrong)
from labkit.balancing.policies import LeastConnections, RoundRobin

SOLUTION = SOLUTIONS / "06_scaling_out_exercises.ipynb"


def _reference() -> dict:
    """The solution's names (a cell that tries an answer by hand may not stop us)."""
    return reference(SOLUTION)


REF = _reference()


def test_every_question_is_checked_in_the_solutions():
    assert sorted(qid for qid, _ in check_calls(SOLUTION)) == [
        "06.least_loaded", "06.lost_by_period", "06.retry_rule", "06.servers_needed"]


def test_reference_answers_pass():
    for qid, names in check_calls(SOLUTION):
        result = run(qid, *(REF[n] for n in names))
        assert result.passed, (qid, result.message)


def test_released_stubs_fail_with_the_stub_message():
    assert_released_stubs_fail(SOLUTION, at_least=4)


# ------------------------------------------------------------------ servers needed
capacity, servers_needed = REF["capacity"], REF["servers_needed"]


def exact_capacity(*, servers, workers, service_time):
    """Valid: exact arithmetic with fractions (returns a float at the end)."""
    return float(Fraction(servers * workers) / Fraction(str(service_time)))


def exact_needed(*, target, workers, service_time):
    per = Fraction(workers) / Fraction(str(service_time))
    return max(1, math.ceil(Fraction(str(target)) / per))


def loop_needed(*, target, workers, service_time):
    """Valid: add servers until the capacity reaches the target."""
    n = 1
    while capacity(servers=n, workers=workers, service_time=service_time) < target:
        n += 1
    return n


def exact_then_checked(*, target, workers, service_time):
    """Valid: exact fractions, then one server fewer if capacity() already reaches it."""
    n = exact_needed(target=target, workers=workers, service_time=service_time)
    while n > 1 and capacity(servers=n - 1, workers=workers, service_time=service_time) >= target:
        n -= 1
    return n


def bisect_needed(*, target, workers, service_time):
    """Valid: gallop, then bisect on capacity()."""
    high = 1
    while capacity(servers=high, workers=workers, service_time=service_time) < target:
        high *= 2
    low = 1
    while low < high:
        mid = (low + high) // 2
        if capacity(servers=mid, workers=workers, service_time=service_time) >= target:
            high = mid
        else:
            low = mid + 1
    return low


def naive_ceil(*, target, workers, service_time):
    """The obvious formula: a float division lands a hair above a whole number."""
    return max(1, math.ceil(target * service_time / workers))


def epsilon_ceil(*, target, workers, service_time):
    """An epsilon hides float noise, and also a real (small) excess."""
    return max(1, math.ceil(target * service_time / workers - 1e-6))


def rounds(*, target, workers, service_time):
    return max(1, round(target * service_time / workers))


def rounds_down(*, target, workers, service_time):
    return max(1, int(target * service_time / workers))


def no_minimum(*, target, workers, service_time):
    return math.ceil(target * service_time / workers)


def strictly_above(*, target, workers, service_time):
    """One server too many on a boundary: wants capacity strictly above the target."""
    n = 1
    while capacity(servers=n, workers=workers, service_time=service_time) <= target:
        n += 1
    return n


def forgets_workers(*, servers, workers, service_time):
    return servers / service_time


def in_milliseconds(*, servers, workers, service_time):
    return servers * workers / (service_time * 1000)


def as_float(*, target, workers, service_time):
    return target * service_time / workers


VISIBLE = {(600, 4, 0.02): 3, (601, 4, 0.02): 4, (250, 2, 0.02): 3, (10, 4, 0.02): 1,
           (300, 3, 0.01): 1, (900, 3, 0.01): 3, (180, 2, 0.02): 2}


def fraction_of_float(*, target, workers, service_time):
    """Exact arithmetic on the float inputs: off on a target equal to a capacity()."""
    return max(1, math.ceil(Fraction(target) * Fraction(service_time) / Fraction(workers)))


def lookup_needed(*, target, workers, service_time):
    """Right on the cases an old check used to print, a guess elsewhere."""
    return VISIBLE.get((target, workers, service_time), 2)


# ------------------------------------------------------------------ least loaded
class FirstLive:
    def choose(self, request, servers):
        return next(s for s in servers if s.alive)


class FewestServed:
    """Balances the totals, not what is in flight now."""

    def choose(self, request, servers):
        return min(servers, key=lambda s: (s.served, s.active))


class FirstTwo:
    """An off-by-one slice: only ever compares the first two servers."""

    def choose(self, request, servers):
        return min(servers[:2], key=lambda s: s.active)


class MostLoaded:
    def choose(self, request, servers):
        return max(servers, key=lambda s: s.active)


class ReturnsTheName:
    def choose(self, request, servers):
        return min(servers, key=lambda s: s.active).name


class SecondInList:
    """Right for the old example only (s2 was second there)."""

    def choose(self, request, servers):
        return servers[1] if len(servers) > 1 else servers[0]


class RandomPick:
    def __init__(self):
        self.rng = random.Random(7)

    def choose(self, request, servers):
        return self.rng.choice(servers)


class KeepsASpare:
    """Never uses the last server, 'in case': fails with one server."""

    def choose(self, request, servers):
        return min(servers[:-1], key=lambda s: s.active)


class SortedFirst:
    """Valid: sort by load, take the first."""

    def choose(self, request, servers):
        return sorted(servers, key=lambda s: s.active)[0]


def closure_policy():
    """Valid: no class at all, an object made by a closure."""
    def choose(request, servers):
        fewest = min(s.active for s in servers)
        return [s for s in servers if s.active == fewest][-1]   # ties: the last one
    return types.SimpleNamespace(choose=choose)


# ------------------------------------------------------------------ lost by period
lost_by_period = REF["lost_by_period"]


def first_period_only(report):
    """Counts a failure only for the first period it falls in (overlaps lose it)."""
    periods = report.fault_periods()
    out = {server: 0 for server, _, _ in periods}
    for sample in report.samples:
        if sample.ok:
            continue
        end = sample.start + sample.latency
        for server, down_from, down_until in periods:
            if down_from - 0.1 <= end < down_until:
                out[server] += 1
                break
    return out


def inclusive_end(report):
    """Valid: a failure that ends exactly at down_until counted as inside."""
    out = {}
    ends = [s.start + s.latency for s in report.samples if not s.ok]
    for server, down_from, down_until in report.fault_periods():
        out[server] = out.get(server, 0) + sum(
            1 for e in ends if down_from - 0.1 <= e <= down_until)
    return out


def single_pass(report):
    """Valid: sort the periods once, place each failure with bisect."""
    periods = report.fault_periods()
    lost = {server: 0 for server, _, _ in periods}
    starts = [a - 0.1 for _, a, _ in periods]
    for s in report.samples:
        if s.ok:
            continue
        end = s.start + s.latency
        i = bisect.bisect_right(starts, end) - 1
        while i >= 0:
            server, a, b = periods[i]
            if a - 0.1 <= end < b:
                lost[server] += 1
            i -= 1
    return lost


def from_the_log(report):
    """Valid: rebuilds the periods from fault_log (down until the end if never revived)."""
    down, periods = {}, []
    for when, action, server in report.fault_log:
        if action == "kill":
            down.setdefault(server, when)
        elif server in down:
            periods.append((server, down.pop(server), when))
    periods += [(server, since, report.duration) for server, since in down.items()]
    lost = {}
    for server, a, b in periods:
        lost[server] = lost.get(server, 0) + len(
            [s for s in report.samples if not s.ok and a - 0.1 <= s.start + s.latency < b])
    return lost


def by_start_time(report):
    return {server: sum(1 for s in report.samples if not s.ok and a <= s.start < b)
            for server, a, b in report.fault_periods()}


def no_slack(report):
    lost = {}
    for server, a, b in report.fault_periods():
        lost[server] = lost.get(server, 0) + sum(
            1 for s in report.samples if not s.ok and a <= s.start + s.latency < b)
    return lost


def next_period(report):
    """Every failure goes to the next period that has not ended: overcounts."""
    lost = {server: 0 for server, _, _ in report.fault_periods()}
    for s in report.samples:
        if not s.ok:
            for server, _, b in report.fault_periods():
                if s.start + s.latency < b:
                    lost[server] += 1
                    break
    return lost


def only_periods_with_losses(report):
    return {k: v for k, v in lost_by_period(report).items() if v}


def last_period_wins(report):
    """A server down twice: the second period overwrites the first."""
    lost = {}
    for server, a, b in report.fault_periods():
        lost[server] = sum(1 for s in report.samples
                           if not s.ok and a - 0.1 <= s.start + s.latency < b)
    return lost


def only_no_answer(report):
    """Counts only requests that got no answer: a 502 or 503 is a failure too."""
    lost = {}
    for server, a, b in report.fault_periods():
        lost[server] = lost.get(server, 0) + sum(
            1 for s in report.samples if s.status == 0 and a - 0.1 <= s.start + s.latency < b)
    return lost


def revived_only(report):
    """Pairs kills with revives by hand and drops a kill that was never undone."""
    lost, log = {}, list(report.fault_log)
    for i, (when, action, server) in enumerate(log):
        if action != "kill":
            continue
        end = next((w for w, a, s in log[i + 1:] if a == "revive" and s == server), None)
        if end is not None:
            lost[server] = lost.get(server, 0) + sum(
                1 for s in report.samples if not s.ok and when - 0.1 <= s.start + s.latency < end)
    return lost


def hard_coded(report):
    """The answer the old made-up report had, whatever the report."""
    return {"s2": 3, "s3": 1, "s1": 0} if report.fault_log else {}


# ------------------------------------------------------------------ retry rule
may_retry = REF["may_retry"]


def substring_test(method):
    return method.upper() in "GET HEAD OPTIONS TRACE PUT DELETE"


def prefix_test(method):
    return method.upper().startswith(("GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"))


def stripped(method):
    return method.strip().upper() in {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}


def frozenset_rule(method):
    """Valid: a frozenset and casefold."""
    return method.casefold() in frozenset({"get", "head", "options", "trace", "put", "delete"})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


def casefolded(method):
    return method.casefold() in {m.casefold() for m in IDEMPOTENT}


def matched(method):
    """Valid: a match statement."""
    match method.upper():
        case "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE":
            return True
        case _:
            return False


def safe_only(method):
    return method.upper() in {"GET", "HEAD", "OPTIONS", "TRACE"}


def everything(method):
    return True


def case_sensitive(method):
    return method in IDEMPOTENT


def blacklist(method):
    return method.upper() not in {"POST", "PATCH"}


def lowercase_set(method):
    return method.lower() in IDEMPOTENT


OLD_TABLE = {"GET": True, "HEAD": True, "OPTIONS": True, "TRACE": True, "PUT": True,
             "DELETE": True, "POST": False, "PATCH": False, "get": True, "post": False}


def old_table(method):
    return OLD_TABLE.get(method, False)


def yes_no(method):
    return "yes" if method.upper() in IDEMPOTENT else "no"


Q1, Q2, Q3, Q4 = "06.servers_needed", "06.least_loaded", "06.lost_by_period", "06.retry_rule"
CASES = [
    valid(Q1, "reference", capacity, servers_needed),
    valid(Q1, "fractions, checked against capacity()", exact_capacity, exact_then_checked),
    valid(Q1, "bisection on capacity()", capacity, bisect_needed),
    wrong(Q1, "fractions only (float boundary)", exact_capacity, exact_needed,
          says="floating-point", kind="logic"),
    wrong(Q1, "exact fractions of the floats", capacity, fraction_of_float,
          says="floating-point", kind="logic"),
    wrong(Q1, "the obvious ceil", capacity, naive_ceil, says="floating-point", kind="logic"),
    wrong(Q1, "ceil with an epsilon", capacity, epsilon_ceil, says="a tiny bit",
          kind="hostile-input"),
    wrong(Q1, "round instead of ceil", capacity, rounds, says="too low", kind="logic"),
    valid(Q1, "a loop", capacity, loop_needed),
    wrong(Q1, "rounds down", capacity, rounds_down, says="too low", kind="logic"),
    wrong(Q1, "no minimum of one", capacity, no_minimum, says="too low",
          kind="hostile-input"),
    wrong(Q1, "strictly above the target", capacity, strictly_above, says="too high",
          kind="logic"),
    wrong(Q1, "capacity without workers", forgets_workers, servers_needed,
          says="side by side", kind="substance"),
    wrong(Q1, "capacity in milliseconds", in_milliseconds, servers_needed,
          says="too low", kind="substance"),
    wrong(Q1, "a float number of servers", capacity, as_float, says="whole number",
          kind="substance"),
    wrong(Q1, "a table of the visible cases", capacity, lookup_needed, says="servers_needed(",
          kind="visible-only"),

    valid(Q2, "reference (filters alive too)", REF["LeastLoaded"]),
    valid(Q2, "the kit's LeastConnections", LeastConnections),
    valid(Q2, "sorted by load", SortedFirst),
    valid(Q2, "a closure, ties to the last", closure_policy),
    wrong(Q2, "first live server", FirstLive, says=".active", kind="logic"),
    wrong(Q2, "fewest served", FewestServed, says=".active", kind="substance"),
    wrong(Q2, "only the first two", FirstTwo, says=".active", kind="logic"),
    wrong(Q2, "most loaded", MostLoaded, says=".active", kind="logic"),
    wrong(Q2, "round robin", RoundRobin, says=".active", kind="logic"),
    wrong(Q2, "random", RandomPick, says=".active", kind="logic"),
    wrong(Q2, "returns the name", ReturnsTheName, says="server objects", kind="substance"),
    wrong(Q2, "the second in the list", SecondInList, says=".active", kind="visible-only"),
    wrong(Q2, "keeps a spare", KeepsASpare, says="raised", kind="hostile-input"),

    valid(Q3, "reference", lost_by_period),
    valid(Q3, "one pass with bisect", single_pass),
    valid(Q3, "down_until included", inclusive_end),
    wrong(Q3, "a failure for the first period only", first_period_only,
          says="down at the same time", kind="logic"),
    valid(Q3, "periods rebuilt from the log", from_the_log),
    wrong(Q3, "by start time", by_start_time, says="start + latency", kind="logic"),
    wrong(Q3, "no slack before the kill", no_slack, says="0.1 s", kind="logic"),
    wrong(Q3, "the next period takes it", next_period, says="too high", kind="logic"),
    wrong(Q3, "only periods with losses", only_periods_with_losses, says="gets a key",
          kind="hostile-input"),
    wrong(Q3, "the last period overwrites", last_period_wins, says="add up both",
          kind="logic"),
    wrong(Q3, "5xx answers not counted", only_no_answer, says="too low", kind="substance"),
    wrong(Q3, "a kill never revived dropped", revived_only, says="no key",
          kind="hostile-input"),
    wrong(Q3, "the old made-up answer", hard_coded, says="for a made-up report",
          kind="visible-only"),

    valid(Q4, "reference", may_retry),
    valid(Q4, "casefold", casefolded),
    valid(Q4, "match statement", matched),
    valid(Q4, "frozenset and casefold", frozenset_rule),
    wrong(Q4, "substring of a string of names", substring_test, says="whole name",
          kind="hostile-input"),
    wrong(Q4, "startswith", prefix_test, says="whole name", kind="hostile-input"),
    wrong(Q4, "strips spaces first", stripped, says="whole name", kind="hostile-input"),
    wrong(Q4, "safe methods only", safe_only, says="may retry a", kind="logic"),
    wrong(Q4, "everything", everything, says="must not retry", kind="logic"),
    wrong(Q4, "case-sensitive", case_sensitive, says="any case", kind="hostile-input"),
    wrong(Q4, "a blacklist of POST and PATCH", blacklist, says="must not retry",
          kind="hostile-input"),
    wrong(Q4, "lower() against upper-case names", lowercase_set, says="may retry",
          kind="logic"),
    wrong(Q4, "the old table of visible methods", old_table, says="may retry",
          kind="visible-only"),
    wrong(Q4, "yes or no", yes_no, says="True or False", kind="substance"),
]


@table(CASES)
def test_answer_table(case):
    assert_case(case)
