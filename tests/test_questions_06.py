"""The chapter 06 checks: the reference passes, the released stub and wrong answers fail."""

from __future__ import annotations

import math
import pathlib

import pytest

from labkit.checks import get_question
from labkit.checks.run import STUB_MESSAGE, run_question
from labkit.balancing.policies import LeastConnections

SOLUTION = (pathlib.Path(__file__).resolve().parent.parent / "solutions"
            / "06_scaling_out_exercises.ipynb")
STUB = NotImplementedError("Replace this line with your solution.")


def _run(qid, *answers):
    return run_question(get_question(qid), answers)


# ------------------------------------------------------------------ servers needed
def capacity(*, servers, workers, service_time):
    return servers * workers / service_time


def servers_needed(*, target, workers, service_time):
    return max(1, math.ceil(target / capacity(servers=1, workers=workers,
                                              service_time=service_time)))


def rounds_down(*, target, workers, service_time):
    return max(1, int(target * service_time / workers))


def forgets_workers(*, servers, workers, service_time):
    return servers / service_time


def as_float(*, target, workers, service_time):
    return target * service_time / workers


def test_servers_needed_reference_passes():
    result = _run("06.servers_needed", capacity, servers_needed)
    assert result.passed, result.message


@pytest.mark.parametrize("answers, words", [
    ((capacity, rounds_down), "should be 4"),
    ((forgets_workers, servers_needed), "should be 600 requests/s"),
    ((capacity, as_float), "whole number of servers"),
])
def test_servers_needed_wrong_answers_fail_with_a_reason(answers, words):
    result = _run("06.servers_needed", *answers)
    assert not result.passed and words in result.message, result.message


# ------------------------------------------------------------------ least loaded
class ReferenceLeastLoaded:
    def choose(self, request, servers):
        live = [server for server in servers if server.alive]
        return min(live, key=lambda server: (server.active, server.served))


class FirstLive:
    def choose(self, request, servers):
        return next(s for s in servers if s.alive)


class FewestServed:
    """Balances the totals, not what is in flight now."""

    def choose(self, request, servers):
        return min((s for s in servers if s.alive), key=lambda s: (s.served, s.active))


class FirstTwoLive(ReferenceLeastLoaded):
    """An off-by-one slice: only ever compares the first two live servers."""

    def choose(self, request, servers):
        return super().choose(request, [s for s in servers if s.alive][:2])


def test_least_loaded_reference_passes():
    result = _run("06.least_loaded", ReferenceLeastLoaded)
    assert result.passed, result.message


@pytest.mark.parametrize("wrong, words", [
    (FirstLive, "should return s2"),
    (FewestServed, "should return s2"),
    (LeastConnections, "never send work to a dead server"),
    (FirstTwoLive, "was not the least loaded"),
])
def test_least_loaded_wrong_answers_fail_with_a_reason(wrong, words):
    result = _run("06.least_loaded", wrong)
    assert not result.passed and words in result.message, result.message


# ------------------------------------------------------------------ lost by period
def lost_by_period(report):
    lost = {}
    for server, down_from, down_until in report.fault_periods():
        ended = [s.start + s.latency for s in report.samples if not s.ok]
        lost[server] = lost.get(server, 0) + sum(
            1 for end in ended if down_from - 0.1 <= end < down_until)
    return lost


def by_start_time(report):
    return {server: sum(1 for s in report.samples if not s.ok and a <= s.start < b)
            for server, a, b in report.fault_periods()}


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


def test_lost_by_period_reference_passes():
    result = _run("06.lost_by_period", lost_by_period)
    assert result.passed, result.message


@pytest.mark.parametrize("wrong, words", [
    (by_start_time, "in flight when it died"),
    (next_period, "in no fault period"),
    (only_periods_with_losses, "gets a key"),
])
def test_lost_by_period_wrong_answers_fail_with_a_reason(wrong, words):
    result = _run("06.lost_by_period", wrong)
    assert not result.passed and words in result.message, result.message


# ------------------------------------------------------------------ retry rule
def may_retry(method):
    return method.upper() in {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}


def safe_only(method):
    return method.upper() in {"GET", "HEAD", "OPTIONS", "TRACE"}


def everything(method):
    return True


def case_sensitive(method):
    return method in {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}


def test_retry_rule_reference_passes():
    result = _run("06.retry_rule", may_retry)
    assert result.passed, result.message


@pytest.mark.parametrize("wrong, words", [
    (safe_only, "may retry a PUT"),
    (everything, "must not retry a POST"),
    (case_sensitive, "lower case"),
])
def test_retry_rule_wrong_answers_fail_with_a_reason(wrong, words):
    result = _run("06.retry_rule", wrong)
    assert not result.passed and words in result.message, result.message


# ------------------------------------------------------------------ released stubs
def released_stubs() -> dict:
    """The learner's starting point: the solution notebook after `labkit release`.

    A cell that tries the learner's code by hand stops at the stub, as it would for
    the learner; the definitions still exist.
    """
    from labkit.instructor.release import exercise_notebook

    namespace: dict = {}
    for cell in exercise_notebook(SOLUTION).cells:
        if cell.cell_type == "code" and not cell.source.startswith("lk.check"):
            try:
                exec(compile(cell.source, "exercise", "exec"), namespace)
            except NotImplementedError:
                pass
    return namespace


def check_calls() -> list[tuple[str, list[str]]]:
    """(question id, answer names) of every lk.check cell of the solutions."""
    import nbformat

    calls = []
    for cell in nbformat.read(SOLUTION, as_version=4).cells:
        if cell.cell_type == "code" and cell.source.startswith("lk.check("):
            qid, *names = cell.source.strip()[len("lk.check("):-1].split(", ")
            calls.append((qid.strip('"'), names))
    return calls


def test_every_question_is_checked_in_the_solutions():
    assert sorted(qid for qid, _ in check_calls()) == [
        "06.least_loaded", "06.lost_by_period", "06.retry_rule", "06.servers_needed"]


def test_released_stubs_fail_with_the_stub_message():
    stubs = released_stubs()
    for qid, names in check_calls():
        result = _run(qid, *(stubs[name] for name in names))
        assert not result.passed and result.message == STUB_MESSAGE, qid
