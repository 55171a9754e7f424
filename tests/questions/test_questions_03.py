"""Chapter 03 checks: the reference passes, the released stubs fail, and one answer
table of valid alternatives and wrong answers (each wrong one must fail naming what
broke)."""

from __future__ import annotations

import hashlib
import itertools
import math
import random
from fractions import Fraction
from pathlib import Path

import numpy as np

from exercise_kit import (assert_case, assert_released_stubs_fail, reference, table, valid,
                          wrong)
from labkit.policies import Sticky

SOLUTION = Path(__file__).resolve().parents[2] / "solutions" / "03_stateful_cluster_exercises.ipynb"
REF = reference(SOLUTION)
MySticky = REF["MySticky"]


# -- 03.sticky_policy -------------------------------------------------------------------

class RoundRobinWithCookie(MySticky):
    """Sets a pin cookie but never reads it."""

    def choose(self, request, servers):
        server = servers[self.turn % len(servers)]
        self.turn += 1
        return server


class NoCookie(MySticky):
    cookie = None


class AllOnFirst(MySticky):
    def choose(self, request, servers):
        pinned = request.cookies.get(self.cookie)
        return next((s for s in servers if s.name == pinned), servers[0])


class CrashesWhenPinDies(MySticky):
    def choose(self, request, servers):
        pinned = request.cookies.get(self.cookie)
        if pinned:
            return next(s for s in servers if s.name == pinned)
        return super().choose(request, servers)


class RandomPlacement(MySticky):
    def choose(self, request, servers):
        pinned = request.cookies.get(self.cookie)
        return next((s for s in servers if s.name == pinned), random.choice(servers))


class IndexFromName(MySticky):
    """Right for s1, s2, s3 in order (the example): the pin's digit is an index."""

    def choose(self, request, servers):
        pinned = request.cookies.get(self.cookie) or ""
        digits = "".join(ch for ch in pinned if ch.isdigit())
        if digits and int(digits[-1]) - 1 < len(servers):
            return servers[int(digits[-1]) - 1]
        return super().choose(request, servers)


class PrefixMatch(MySticky):
    def choose(self, request, servers):
        pinned = request.cookies.get(self.cookie)
        if pinned:
            for server in servers:
                if server.name.startswith(pinned) or pinned.startswith(server.name):
                    return server
        return super().choose(request, servers)


class HashByClient(MySticky):
    """Sticky by hashing the client id, ignoring the cookie."""

    def choose(self, request, servers):
        digest = hashlib.md5(request.client_id.encode()).digest()
        return servers[digest[0] % len(servers)]


class MemoryPins(MySticky):
    """Remembers clients by id in a dict instead of reading the cookie."""

    def __init__(self):
        super().__init__()
        self.pins = {}

    def choose(self, request, servers):
        name = self.pins.get(request.client_id)
        for server in servers:
            if server.name == name:
                return server
        server = servers[self.turn % len(servers)]
        self.turn += 1
        self.pins[request.client_id] = server.name
        return server


class ReturnsName(MySticky):
    def choose(self, request, servers):
        return super().choose(request, servers).name


class CountsEveryRequest(MySticky):
    """Valid: the turn advances on every request, pinned or not."""

    def choose(self, request, servers):
        self.turn += 1
        by_name = {s.name: s for s in servers}
        pinned = by_name.get(request.cookies.get(self.cookie))
        return pinned if pinned is not None else servers[self.turn % len(servers)]


class CyclePolicy:
    """Valid: itertools.count for the turn, a different cookie name, no base class."""

    cookie = "route"

    def __init__(self):
        self._turns = itertools.count()

    def choose(self, request, servers):
        wanted = request.cookies.get(self.cookie)
        match = [s for s in servers if s.name == wanted]
        if match:
            return match[0]
        return servers[next(self._turns) % len(servers)]


# -- 03.predict_logouts -------------------------------------------------------------------

def survivors_instead(pins, dead):
    return {user for user, server in pins.items() if server not in dead}


def as_list(pins, dead):
    return [user for user, server in pins.items() if server in dead]


def only_s2(pins, dead):
    return {user for user, server in pins.items() if server == "s2"}


def pops_the_dead(pins, dead):
    lost = {user for user, server in pins.items() if server in dead}
    for user in lost:
        del pins[user]
    return lost


def substring_of_dead(pins, dead):
    text = ",".join(sorted(dead))
    return {user for user, server in pins.items() if server in text}


def the_dead_servers(pins, dead):
    return set(dead) & set(pins.values())


def none_when_nobody(pins, dead):
    lost = {user for user, server in pins.items() if server in dead}
    return lost or None


def first_dead_only(pins, dead):
    one = min(dead) if dead else None
    return {user for user, server in pins.items() if server == one}


def frozen_filter(pins, dead):
    return frozenset(filter(lambda user: pins[user] in dead, pins))


def loop_version(pins, dead):
    dead = set(dead)
    lost = set()
    for user in pins:
        if pins[user] in dead:
            lost.add(user)
    return lost


# -- 03.capacity_model ---------------------------------------------------------------------

def forgets_workers(*, users, servers, workers, service_time):
    return max(service_time, users * service_time / servers)


def always_queues(*, users, servers, workers, service_time):
    return users * service_time / (servers * workers)


def in_rounds(*, users, servers, workers, service_time):
    return math.ceil(users / (servers * workers)) * service_time


def lookup_table(*, users, servers, workers, service_time):
    known = {(12, 3, 2, 0.02): 0.04, (12, 2, 2, 0.02): 0.06}
    return known.get((users, servers, workers, service_time), service_time * 2)


def in_milliseconds(*, users, servers, workers, service_time):
    return 1000 * max(service_time, users * service_time / (servers * workers))


def min_instead(*, users, servers, workers, service_time):
    return min(service_time, users * service_time / (servers * workers))


def as_text(*, users, servers, workers, service_time):
    return f"{max(service_time, users * service_time / (servers * workers)):.3f}"


def ignores_servers(*, users, servers, workers, service_time):
    return max(service_time, users * service_time / workers)


def plus_one_service(*, users, servers, workers, service_time):
    """Adds a service time on top of the queue wait."""
    return service_time + users * service_time / (servers * workers)


def with_fraction(*, users, servers, workers, service_time):
    slots = servers * workers
    if users <= slots:
        return service_time
    return float(Fraction(users, slots) * Fraction(str(service_time)))


class Model:
    def __call__(self, *, users, servers, workers, service_time):
        throughput = np.float64(servers * workers) / service_time
        return np.maximum(service_time, users / throughput)


def wait_plus_service(*, users, servers, workers, service_time):
    """Valid: queueing wait plus one service time (the same formula, rearranged)."""
    slots = servers * workers
    wait = max(0, users - slots) * service_time / slots
    return wait + service_time


SP, PL, CM = "03.sticky_policy", "03.predict_logouts", "03.capacity_model"
CASES = [
    valid(SP, "reference", MySticky),
    valid(SP, "kit-sticky", Sticky),
    valid(SP, "turn-on-every-request", CountsEveryRequest),
    valid(SP, "itertools-count-route-cookie", CyclePolicy),
    wrong(SP, "round-robin-ignores-cookie", RoundRobinWithCookie, says="another server",
          kind="logic"),
    wrong(SP, "no-cookie-attribute", NoCookie, says="no `cookie` attribute", kind="substance"),
    wrong(SP, "all-on-first", AllOnFirst, says="placed in turn", kind="logic"),
    wrong(SP, "crashes-when-pin-dies", CrashesWhenPinDies, says="raised", kind="hostile-input"),
    wrong(SP, "random-placement", RandomPlacement, says="placed in turn", kind="logic"),
    wrong(SP, "index-from-name", IndexFromName, says="another server", kind="visible-only"),
    wrong(SP, "prefix-match", PrefixMatch, says="another server", kind="hostile-input"),
    wrong(SP, "hash-by-client", HashByClient, says="placed in turn", kind="logic"),
    wrong(SP, "pins-in-memory", MemoryPins, says="another server", kind="logic"),
    wrong(SP, "returns-name", ReturnsName, says="not its name", kind="substance"),
    valid(PL, "reference", REF["who_loses"]),
    valid(PL, "frozenset-filter", frozen_filter),
    valid(PL, "loop", loop_version),
    wrong(PL, "survivors", survivors_instead, says="exactly when the server", kind="logic"),
    wrong(PL, "list", as_list, says="Return a set", kind="substance"),
    wrong(PL, "only-s2", only_s2, says="exactly when the server", kind="visible-only"),
    wrong(PL, "first-dead-only", first_dead_only, says="exactly when the server", kind="visible-only"),
    wrong(PL, "mutates-pins", pops_the_dead, says="changed", kind="hostile-input"),
    wrong(PL, "substring-match", substring_of_dead, says="whose server is alive",
          kind="hostile-input"),
    wrong(PL, "dead-servers", the_dead_servers, says="not users", kind="substance"),
    wrong(PL, "none-when-nobody", none_when_nobody, says="Return a set", kind="hostile-input"),
    valid(CM, "reference", REF["latency"]),
    valid(CM, "fractions", with_fraction),
    valid(CM, "numpy-callable", Model()),
    wrong(CM, "forgets-workers", forgets_workers, says="too high", kind="logic"),
    wrong(CM, "always-queues", always_queues, says="too low", kind="logic"),
    wrong(CM, "whole-rounds", in_rounds, says="too high", kind="logic"),
    wrong(CM, "lookup-table", lookup_table, says="too", kind="visible-only"),
    wrong(CM, "milliseconds", in_milliseconds, says="too high", kind="substance"),
    wrong(CM, "min-instead-of-max", min_instead, says="too low", kind="logic"),
    wrong(CM, "text", as_text, says="number of seconds", kind="substance"),
    wrong(CM, "ignores-servers", ignores_servers, says="too high", kind="logic"),
    wrong(CM, "service-plus-wait", plus_one_service, says="too high", kind="logic"),
    valid(CM, "wait-plus-service", wait_plus_service),
]


@table(CASES)
def test_answer_table(case):
    assert_case(case)


def test_released_stubs_fail_with_the_stub_message():
    assert_released_stubs_fail(SOLUTION)
