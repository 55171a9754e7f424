"""The chapter 07 checks: the reference passes, the released stub and wrong answers fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from flask import Flask, Response, request

from exercise_kit import STUB_MESSAGE, check_calls, reference, released_stubs, run

SOLUTION = Path(__file__).parent.parent / "solutions" / "07_serverless_exercises.ipynb"


@pytest.fixture(scope="module")
def ref() -> dict:
    return reference(SOLUTION)


def test_every_question_is_checked_in_the_notebook():
    assert [qid for qid, _ in check_calls(SOLUTION)] == [
        "07.size_gateway", "07.stateless_handler", "07.predict_cold_starts"]


def test_reference_answers_pass(ref):
    for qid, names in check_calls(SOLUTION):
        result = run(qid, *[ref[name] for name in names])
        assert result.passed, (qid, result.message)


def test_the_kits_own_gateway_passes():
    from labkit.apps.uploads import create_size_gateway

    assert run("07.size_gateway", create_size_gateway).passed


def test_released_stubs_fail_with_the_stub_message():
    stubs = released_stubs(SOLUTION)
    for qid, names in check_calls(SOLUTION):
        result = run(qid, *[stubs[name] for name in names])
        assert not result.passed and result.message == STUB_MESSAGE, (qid, result.message)


# ------------------------------------------------------------------ size gateway
def _forward(upstream, body):
    answer = requests.post(upstream + "/upload", data=body, timeout=10)
    return Response(answer.content, status=answer.status_code,
                    content_type=answer.headers.get("Content-Type"))


def header_only_gateway(upstream, *, limit):
    """Trusts Content-Length; a chunked upload has none, so it sails through."""
    app = Flask("header_only")

    @app.post("/upload")
    def upload():
        if (request.content_length or 0) > limit:
            request.get_data()
            return {"error": "too_large"}, 413
        return _forward(upstream, request.get_data())

    return app


def forwards_first_gateway(upstream, *, limit):
    """Asks the main server first, then refuses: the main server still did the work."""
    app = Flask("forwards_first")

    @app.post("/upload")
    def upload():
        body = request.get_data()
        answer = _forward(upstream, body)
        if len(body) > limit:
            return {"error": "too_large"}, 413
        return answer

    return app


def off_by_one_gateway(upstream, *, limit):
    app = Flask("off_by_one")

    @app.post("/upload")
    def upload():
        body = request.get_data()
        if len(body) >= limit:
            return {"error": "too_large"}, 413
        return _forward(upstream, body)

    return app


def plain_text_413_gateway(upstream, *, limit):
    app = Flask("plain_413")

    @app.post("/upload")
    def upload():
        body = request.get_data()
        if len(body) > limit:
            return "too big", 413
        return _forward(upstream, body)

    return app


@pytest.mark.parametrize("wrong, words", [
    (header_only_gateway, "count the bytes as you read them"),
    (forwards_first_gateway, "still sent the upload to the main server"),
    (off_by_one_gateway, "exactly the limit"),
    (plain_text_413_gateway, "JSON reason"),
])
def test_size_gateway_wrong_answers_fail_with_a_reason(wrong, words):
    result = run("07.size_gateway", wrong)
    assert not result.passed and words in result.message, result.message


def test_size_gateway_given_an_app_instead_of_a_factory():
    result = run("07.size_gateway", Flask("x"))
    assert not result.passed


# ------------------------------------------------------------------ stateless handler
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
        n = context.store.get(event["user"], 0) + 1
        context.store.set(event["user"], n)
        return {"user": event["user"], "visits": n}
    return handler


@pytest.mark.parametrize("wrong, words", [
    (module_global_visits, "after a cold start"),
    (notebook_global_visits, "second deployment"),
])
def test_stateless_handler_wrong_answers_fail_with_a_reason(wrong, words):
    NOTEBOOK_COUNTS.clear()
    result = run("07.stateless_handler", wrong)
    assert not result.passed and words in result.message, result.message


def test_stateless_handler_get_then_set_passes_when_events_do_not_race():
    # Not atomic, but the check's concurrent pair may or may not interleave: it must
    # never crash the check, and a pass or a clear failure are both fine.
    result = run("07.stateless_handler", get_then_set_visits)
    assert result.passed or "at the same time" in result.message, result.message


# ------------------------------------------------------------------ predict cold starts
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


@pytest.mark.parametrize("wrong", [ignores_concurrency, reaps_at_exactly_keep_warm])
def test_predict_cold_starts_wrong_answers_fail_with_the_timeline(wrong):
    result = run("07.predict_cold_starts", wrong)
    assert not result.passed and "the runtime made" in result.message, result.message
