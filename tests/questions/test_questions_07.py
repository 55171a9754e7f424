"""The chapter 07 checks: the reference passes, the released stubs fail, and every row of
the answer table (valid alternatives, wrong answers by class) gets the right verdict."""

from __future__ import annotations

import json
import threading

import requests
from flask import Flask, Response, request

from exercise_kit import (SOLUTIONS, assert_case, assert_released_stubs_fail, check_calls,
                          reference, run, table, valid, wrong)
from labkit.apps.uploads import create_size_gateway
from labkit.state.serverless import FunctionRuntime
from labkit.state.sessions import ManualClock

SOLUTION = SOLUTIONS / "07_serverless_exercises.ipynb"
REF = reference(SOLUTION)


def test_every_question_is_checked_in_the_notebook():
    assert [qid for qid, _ in check_calls(SOLUTION)] == [
        "07.size_gateway", "07.stateless_handler", "07.predict_cold_starts"]


def test_reference_answers_pass():
    for qid, names in check_calls(SOLUTION):
        result = run(qid, *[REF[name] for name in names])
        assert result.passed, (qid, result.message)


def test_released_stubs_fail_with_the_stub_message():
    assert_released_stubs_fail(SOLUTION, at_least=3)


def test_size_gateway_given_an_app_instead_of_a_factory():
    result = run("07.size_gateway", Flask("x"))
    assert not result.passed and "factory function itself" in result.message


# ------------------------------------------------------------------ size gateway
def _forward(upstream, body):
    answer = requests.post(upstream + "/upload", data=body, timeout=10)
    return Response(answer.content, status=answer.status_code,
                    content_type=answer.headers.get("Content-Type"))


def gateway(check):
    """A gateway whose view is ``check(body_or_None, limit)`` around a forward."""

    def make_gateway(upstream, *, limit):
        app = Flask("variant")

        @app.post("/upload")
        def upload():
            return check(upstream, limit)

        return app

    return make_gateway


def reads_everything(upstream, limit):
    """Valid: reads the whole body, then decides (simple; memory is not the question)."""
    body = request.get_data()
    if len(body) > limit:
        return {"error": "too_large", "size": len(body)}, 413
    return _forward(upstream, body)


def header_only(upstream, limit):
    """Trusts Content-Length; a chunked upload has none, so it sails through."""
    if (request.content_length or 0) > limit:
        request.get_data()
        return {"error": "too_large"}, 413
    return _forward(upstream, request.get_data())


def forwards_first(upstream, limit):
    body = request.get_data()
    answer = _forward(upstream, body)
    if len(body) > limit:
        return {"error": "too_large"}, 413
    return answer


def off_by_one(upstream, limit):
    body = request.get_data()
    if len(body) >= limit:
        return {"error": "too_large"}, 413
    return _forward(upstream, body)


def plain_text_413(upstream, limit):
    body = request.get_data()
    if len(body) > limit:
        return "too big", 413
    return _forward(upstream, body)


def json_text_413(upstream, limit):
    body = request.get_data()
    if len(body) > limit:
        return json.dumps({"error": "too_large"}), 413
    return _forward(upstream, body)


def hard_coded_limit(upstream, limit):
    body = request.get_data()
    if len(body) > 4096:
        return {"error": "too_large"}, 413
    return _forward(upstream, body)


def own_answer(upstream, limit):
    """Forwards, then answers with what it thinks the main server said."""
    body = request.get_data()
    if len(body) > limit:
        return {"error": "too_large"}, 413
    requests.post(upstream + "/upload", data=body, timeout=10)
    return {"received": len(body)}


def always_200(upstream, limit):
    body = request.get_data()
    if len(body) > limit:
        return {"error": "too_large"}, 413
    answer = requests.post(upstream + "/upload", data=body, timeout=10)
    return answer.json(), 200


def as_text(upstream, limit):
    """Decodes the upload as text and sends that: other bytes reach the main server."""
    body = request.get_data(as_text=True)
    if len(body) > limit:
        return {"error": "too_large"}, 413
    return _forward(upstream, body.encode())


def refuses_empty(upstream, limit):
    body = request.get_data()
    if not body:
        return {"error": "empty"}, 400
    if len(body) > limit:
        return {"error": "too_large"}, 413
    return _forward(upstream, body)


TOTAL = {"bytes": 0}
TOTAL_LOCK = threading.Lock()


def running_total(upstream, limit):
    """Counts bytes across uploads, not per upload."""
    body = request.get_data()
    with TOTAL_LOCK:
        TOTAL["bytes"] += len(body)
        over = TOTAL["bytes"] > limit * 4
    if len(body) > limit or over:
        return {"error": "too_large"}, 413
    return _forward(upstream, body)


def no_drain(upstream, limit):
    """Refuses on the declared size without reading the rest: the client may get a reset."""
    if request.content_length is not None and request.content_length > limit:
        return {"error": "too_large"}, 413
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        return {"error": "too_large"}, 413
    return _forward(upstream, body)


def capped_then_drained(upstream, limit):
    """Valid: read at most limit + 1 bytes, then drain whatever is left before refusing."""
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        while request.stream.read(65536):
            pass
        return {"error": "too_large", "limit": limit}, 413
    return _forward(upstream, body)


# ------------------------------------------------------------------ stateless handler
def prefix_key_visits(length):
    def module():
        def handler(event, context):
            user = event["user"]
            return {"user": user, "visits": context.store.incr("v:" + user[:length])}
        return handler
    return module


def incr_then_get_visits():
    """Counts atomically, then reads the count back: by then another visit may be in it."""
    def handler(event, context):
        key = "visits:" + event["user"]
        context.store.incr(key)
        return {"user": event["user"], "visits": context.store.get(key)}
    return handler


def json_key_visits():
    """Valid: the key is the user as JSON (no separator can collide)."""
    import json

    def handler(event, context):
        n = context.store.incr(json.dumps(["visits", event["user"]]))
        return {"user": event["user"], "visits": n}
    return handler


def other_key_visits():
    """Valid: another key scheme, and the user as given."""
    def handler(event, context):
        n = context.store.incr(f"{event['user']}/visits")
        return {"visits": n, "user": event["user"]}
    return handler


class Counter:
    """Valid: a callable object as the handler; the count still lives in the store."""

    prefix = "count:"

    def __call__(self, event, context):
        user = event["user"]
        return {"user": user, "visits": context.store.incr(self.prefix + user)}


def class_visits():
    return Counter()


def module_global_visits():
    counts = {}

    def handler(event, context):
        counts[event["user"]] = counts.get(event["user"], 0) + 1
        return {"user": event["user"], "visits": counts[event["user"]]}
    return handler


NOTEBOOK_COUNTS: dict = {}


def notebook_global_visits():
    def handler(event, context):
        NOTEBOOK_COUNTS[event["user"]] = NOTEBOOK_COUNTS.get(event["user"], 0) + 1
        return {"user": event["user"], "visits": NOTEBOOK_COUNTS[event["user"]]}
    return handler


def get_then_set_visits():
    def handler(event, context):
        n = context.store.get("visits:" + event["user"], 0) + 1
        context.store.set("visits:" + event["user"], n)
        return {"user": event["user"], "visits": n}
    return handler


def case_folded_visits():
    def handler(event, context):
        user = event["user"]
        return {"user": user, "visits": context.store.incr("visits:" + user.lower())}
    return handler


def one_counter_visits():
    def handler(event, context):
        return {"user": event["user"], "visits": context.store.incr("visits")}
    return handler


def cached_visits():
    """Reads the store once per container, then counts in a variable, writing through."""
    cache = {}

    def handler(event, context):
        user = event["user"]
        if user not in cache:
            cache[user] = context.store.get("visits:" + user, 0)
        cache[user] += 1
        context.store.set("visits:" + user, cache[user])
        return {"user": user, "visits": cache[user]}
    return handler


def per_container_visits():
    def handler(event, context):
        user = event["user"]
        return {"user": user, "visits": context.store.incr(f"{context.container}:{user}")}
    return handler


def count_only_visits():
    def handler(event, context):
        return {"visits": context.store.incr("visits:" + event["user"])}
    return handler


# ------------------------------------------------------------------ predict cold starts
def by_simulation(bursts, keep_warm):
    """Valid: let the kit's own runtime play the timeline (no threads: one at a time
    would not do, so each burst's events are opened together by hand)."""
    clock = ManualClock()
    runtime = FunctionRuntime(keep_warm=keep_warm, clock=clock)
    gates = {}

    def module():
        def handler(event, context):
            gates[event["i"]].wait(timeout=5)
            return None
        return handler

    runtime.register("f", module)
    for i, (at, n) in enumerate(bursts):
        clock.advance(at - clock())
        gates[i] = threading.Barrier(n)
        threads = [threading.Thread(target=runtime.invoke, args=("f", {"i": i}))
                   for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    return runtime.stats("f")["cold_starts"]


class Container:
    def __init__(self, used):
        self.used = used


def with_objects(bursts, keep_warm):
    """Valid: container objects, most recently used first."""
    pool, cold = [], 0
    for at, n in bursts:
        pool = [c for c in pool if at - c.used <= keep_warm]
        pool.sort(key=lambda c: c.used, reverse=True)
        reused = pool[:n]
        new = [Container(at) for _ in range(max(0, n - len(pool)))]
        cold += len(new)
        for c in reused:
            c.used = at
        pool += new
    return cold


def ignores_concurrency(bursts, keep_warm):
    cold, last = 0, None
    for at, _ in bursts:
        if last is None or at - last > keep_warm:
            cold += 1
        last = at
    return cold


def reaps_at_exactly_keep_warm(bursts, keep_warm):
    warm, cold = [], 0
    for at, n in bursts:
        warm = sorted((t for t in warm if at - t < keep_warm), reverse=True)
        cold += max(0, n - len(warm))
        warm = [at] * n + warm[n:]
    return cold


def never_reaps(bursts, keep_warm):
    return max((n for _, n in bursts), default=0)


def one_per_burst(bursts, keep_warm):
    warm, cold = [], 0
    for at, n in bursts:
        warm = sorted((t for t in warm if at - t <= keep_warm), reverse=True)
        if n > len(warm):
            cold += 1
        warm = [at] * max(n, len(warm))
    return cold


def least_recent_first(bursts, keep_warm):
    """Reuses the containers idle the longest first (the runtime does the opposite)."""
    warm, cold = [], 0
    for at, n in bursts:
        warm = sorted(t for t in warm if at - t <= keep_warm)
        cold += max(0, n - len(warm))
        warm = warm[n:] + [at] * n
    return cold


OLD_CASES = {((0, 1), (10, 1), (30, 1), (100, 1)): 2, ((0, 1), (61, 1), (121, 1), (122, 1)): 3,
             ((0, 3), (5, 1), (20, 2), (200, 2)): 5, ((0, 2), (50, 1), (100, 2), (130, 3)): 3}


def old_answers(bursts, keep_warm):
    return OLD_CASES.get(tuple(tuple(b) for b in bursts), 0)


def as_float(bursts, keep_warm):
    return float(REF["cold_starts"](bursts, keep_warm))


def first_burst_first(bursts, keep_warm):
    first_at, first_n = bursts[0]
    return first_n + REF["cold_starts"](bursts[1:], keep_warm) * 0 + sum(
        1 for (a, _), (b, _) in zip(bursts, bursts[1:]) if b - a > keep_warm)


Q1, Q2, Q3 = "07.size_gateway", "07.stateless_handler", "07.predict_cold_starts"
CASES = [
    valid(Q1, "reference", REF["make_gateway"]),
    valid(Q1, "the kit's gateway", create_size_gateway),
    valid(Q1, "reads everything, then decides", gateway(reads_everything)),
    valid(Q1, "capped read, then drained", gateway(capped_then_drained)),
    wrong(Q1, "refuses without draining", gateway(no_drain), says="without reading the rest",
          kind="hostile-input"),
    wrong(Q1, "trusts Content-Length", gateway(header_only), says="count the bytes",
          kind="hostile-input"),
    wrong(Q1, "forwards first", gateway(forwards_first), says="still sent the upload",
          kind="logic"),
    wrong(Q1, "off by one", gateway(off_by_one), says="within the limit", kind="logic"),
    wrong(Q1, "plain-text 413", gateway(plain_text_413), says="JSON reason",
          kind="substance"),
    wrong(Q1, "JSON text served as HTML", gateway(json_text_413), says="should be JSON",
          kind="substance"),
    wrong(Q1, "the limit of the old check", gateway(hard_coded_limit), says="limit",
          kind="visible-only"),
    wrong(Q1, "makes up its own answer", gateway(own_answer), says="unchanged",
          kind="substance"),
    wrong(Q1, "always 200", gateway(always_200), says="unchanged", kind="hostile-input"),
    wrong(Q1, "decodes the bytes as text", gateway(as_text), says="bytes",
          kind="substance"),
    wrong(Q1, "refuses an empty upload", gateway(refuses_empty), says="empty upload",
          kind="hostile-input"),
    wrong(Q1, "a running total", gateway(running_total), says="within the limit",
          kind="logic"),

    valid(Q2, "reference", REF["visits_module"]),
    valid(Q2, "another key scheme", other_key_visits),
    valid(Q2, "a callable object", class_visits),
    valid(Q2, "a JSON key", json_key_visits),
    wrong(Q2, "key from the first 3 characters", prefix_key_visits(3), says="starts like",
          kind="visible-only"),
    wrong(Q2, "key from the first 4 characters", prefix_key_visits(4), says="starts like",
          kind="visible-only"),
    wrong(Q2, "incr, then get", incr_then_get_visits, says="simultaneous", kind="concurrency"),
    wrong(Q2, "module variables", module_global_visits, says="count", kind="logic"),
    wrong(Q2, "notebook variables", notebook_global_visits, says="second deployment",
          kind="visible-only"),
    wrong(Q2, "get then set", get_then_set_visits, says="simultaneous", kind="concurrency"),
    wrong(Q2, "cached per container", cached_visits, says="simultaneous",
          kind="concurrency"),
    wrong(Q2, "case folded", case_folded_visits, says="differs only in case",
          kind="hostile-input"),
    wrong(Q2, "one counter for everyone", one_counter_visits, says="too high",
          kind="logic"),
    wrong(Q2, "per container", per_container_visits, says="count", kind="logic"),
    wrong(Q2, "no user in the answer", count_only_visits, says="your handler returned",
          kind="substance"),

    valid(Q3, "reference", REF["cold_starts"]),
    valid(Q3, "played on the kit's runtime", by_simulation),
    valid(Q3, "container objects", with_objects),
    wrong(Q3, "ignores concurrency", ignores_concurrency, says="too low", kind="logic"),
    wrong(Q3, "reaps at exactly keep_warm", reaps_at_exactly_keep_warm, says="too high",
          kind="logic"),
    wrong(Q3, "never reaps", never_reaps, says="too low", kind="logic"),
    wrong(Q3, "one cold start per burst", one_per_burst, says="too low", kind="logic"),
    wrong(Q3, "least recently used first", least_recent_first, says="too",
          kind="substance"),
    wrong(Q3, "the old timelines' answers", old_answers, says="too",
          kind="visible-only"),
    wrong(Q3, "a float", as_float, says="an int", kind="substance"),
    wrong(Q3, "crashes on no bursts", first_burst_first, says="raised", kind="hostile-input"),
]


@table(CASES)
def test_answer_table(case):
    NOTEBOOK_COUNTS.clear()
    TOTAL["bytes"] = 0
    assert_case(case)
