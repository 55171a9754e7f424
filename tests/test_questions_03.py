"""The chapter 03 checks: the reference passes, the released stub and wrong answers fail."""

from __future__ import annotations

import pytest

from exercise_kit import STUB_MESSAGE, run
from labkit.balancing.policies import Sticky

STUB = NotImplementedError("Replace this line with your solution.")


# ------------------------------------------------------------------ sticky policy
class ReferenceSticky:
    cookie = "MYPIN"

    def __init__(self):
        self.turn = 0

    def choose(self, request, servers):
        pinned = request.cookies.get(self.cookie)
        for server in servers:
            if server.name == pinned:
                return server
        server = servers[self.turn % len(servers)]
        self.turn += 1
        return server


class StubSticky:
    cookie = "MYPIN"

    def choose(self, request, servers):
        raise STUB


class RoundRobinWithCookie(ReferenceSticky):
    """Sets a pin cookie but never reads it."""

    def choose(self, request, servers):
        server = servers[self.turn % len(servers)]
        self.turn += 1
        return server


class NoCookie(ReferenceSticky):
    cookie = None


class AllOnFirst(ReferenceSticky):
    def choose(self, request, servers):
        pinned = request.cookies.get(self.cookie)
        return next((s for s in servers if s.name == pinned), servers[0])


class CrashesWhenPinDies(ReferenceSticky):
    """Forgets that the pinned server may be dead (not in `servers`)."""

    def choose(self, request, servers):
        pinned = request.cookies.get(self.cookie)
        if pinned:
            return next(s for s in servers if s.name == pinned)
        return super().choose(request, servers)


def test_sticky_policy_reference_and_kit_policy_pass():
    result = run("03.sticky_policy", ReferenceSticky)
    assert result.passed, result.message
    assert run("03.sticky_policy", Sticky).passed


def test_sticky_policy_stub_fails_with_the_stub_message():
    result = run("03.sticky_policy", StubSticky)
    assert not result.passed and result.message == STUB_MESSAGE


@pytest.mark.parametrize("wrong, words", [
    (RoundRobinWithCookie, "does not hold the session"),
    (NoCookie, "no `cookie` attribute"),
    (AllOnFirst, "place new clients in turn"),
    (CrashesWhenPinDies, "could not use your policy"),
])
def test_sticky_policy_wrong_answers_fail_with_a_reason(wrong, words):
    result = run("03.sticky_policy", wrong)
    assert not result.passed and words in result.message, result.message


# ------------------------------------------------------------------ predict logouts
def reference_who_loses(pins, dead):
    return {user for user, server in pins.items() if server in dead}


def stub_who_loses(pins, dead):
    raise STUB


def survivors_instead(pins, dead):
    return {user for user, server in pins.items() if server not in dead}


def as_list(pins, dead):
    return [user for user, server in pins.items() if server in dead]


def test_predict_logouts_reference_passes():
    result = run("03.predict_logouts", reference_who_loses)
    assert result.passed, result.message


def test_predict_logouts_stub_fails_with_the_stub_message():
    result = run("03.predict_logouts", stub_who_loses)
    assert not result.passed and result.message == STUB_MESSAGE


@pytest.mark.parametrize("wrong, words", [
    (survivors_instead, "the users logged out are"),
    (as_list, "Return a set"),
])
def test_predict_logouts_wrong_answers_fail_with_a_reason(wrong, words):
    result = run("03.predict_logouts", wrong)
    assert not result.passed and words in result.message, result.message


# ------------------------------------------------------------------ capacity model
def reference_latency(*, users, servers, workers, service_time):
    return max(service_time, users * service_time / (servers * workers))


def stub_latency(*, users, servers, workers, service_time):
    raise STUB


def forgets_workers(*, users, servers, workers, service_time):
    return users * service_time / servers


def always_queues(*, users, servers, workers, service_time):
    return users * service_time / (servers * workers)


def test_capacity_model_reference_passes():
    result = run("03.capacity_model", reference_latency)
    assert result.passed, result.message


def test_capacity_model_stub_fails_with_the_stub_message():
    result = run("03.capacity_model", stub_latency)
    assert not result.passed and result.message == STUB_MESSAGE


@pytest.mark.parametrize("wrong, words", [
    (forgets_workers, "should be 0.04 s"),
    (always_queues, "nobody waits in a queue"),
])
def test_capacity_model_wrong_answers_fail_with_a_reason(wrong, words):
    result = run("03.capacity_model", wrong)
    assert not result.passed and words in result.message, result.message
