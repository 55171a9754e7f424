"""The check machinery: registry, results, messages, hints (no servers needed)."""

from __future__ import annotations

import json
import re

import pytest

import labkit as lk
from labkit.checks import MIME_TYPE, CheckFailed, CheckResult, get_question, question
from labkit.checks import registry
from labkit.checks.run import STUB_MESSAGE, _HINTS_SHOWN, run_question
from labkit.errors import CheckError


@pytest.fixture
def scratch_questions():
    """Register throw-away questions under chapter 99; remove them afterwards."""
    before = dict(registry._REGISTRY)
    yield
    registry._REGISTRY.clear()
    registry._REGISTRY.update(before)
    _HINTS_SHOWN.clear()


def _define(qid, func, **options):
    question(qid, **options)(func)
    return get_question(qid)


def test_result_renders_text_html_and_json_from_the_same_data():
    result = CheckResult("00.demo", False, 0, 2, "Expected 404, got 200 from 127.0.0.1:53121")
    assert repr(result) == "<CheckResult 00.demo failed 0/2>"
    bundle = result.to_bundle()
    assert set(bundle) == {MIME_TYPE, "text/plain", "text/html"}
    assert bundle[MIME_TYPE] == {"id": "00.demo", "passed": False, "points": 0,
                                 "max_points": 2, "message": result.message}
    assert "53121" not in bundle["text/plain"] and "53121" not in bundle["text/html"]
    assert "127.0.0.1:<port>" in result.message
    assert "✘ 00.demo failed (0/2 points)" in bundle["text/plain"]
    assert 'lk.hint("00.demo")' in bundle["text/plain"]
    assert CheckResult.from_json(json.loads(json.dumps(bundle[MIME_TYPE]))) == result
    assert CheckResult.from_json({"id": "x"}) is None
    assert CheckResult.from_json({"id": "x", "passed": "yes", "points": 1,
                                  "max_points": 1, "message": ""}) is None


def test_text_has_no_memory_addresses():
    result = CheckResult("00.demo", False, 0, 1, "got <object at 0x7f3a2b1c9d80>")
    assert "0x7f3a2b1c9d80" not in result.to_text()


def test_check_outside_jupyter_prints_and_returns_the_result(scratch_questions, capsys):
    _define("99.add", lambda fn: None if fn(2, 3) == 5 else (_ for _ in ()).throw(
        CheckFailed("add(2, 3) should be 5")), points=3)
    result = lk.check("99.add", lambda a, b: a + b)
    assert result.passed and result.points == 3 == result.max_points
    assert "✔ 99.add passed (3/3 points)" in capsys.readouterr().out
    result = lk.check("99.add", lambda a, b: a - b)
    assert not result.passed and result.points == 0
    out = capsys.readouterr().out
    assert "✘ 99.add failed (0/3 points)" in out and "add(2, 3) should be 5" in out


def test_a_returned_string_is_the_pass_message(scratch_questions):
    q = _define("99.praise", lambda answer: "Nicely done.")
    assert run_question(q, (1,)).message == "Nicely done."


def test_unknown_id_says_which_ids_exist():
    with pytest.raises(CheckError) as info:
        lk.check("00.no_such_question", None)
    assert "00.remember" in str(info.value) and "00.after_revive" in str(info.value)
    with pytest.raises(CheckError):
        lk.hint("nonsense")


def test_wrong_number_of_answers_is_a_check_error():
    with pytest.raises(CheckError, match=r'lk.check\("00.remember", make_guestbook\)'):
        lk.check("00.remember")


def test_a_stub_is_reported_as_a_stub(scratch_questions):
    def stub():
        raise NotImplementedError("Replace this line with your solution.")

    q = _define("99.stub", lambda fn: fn())
    assert run_question(q, (stub,)).message == STUB_MESSAGE

    def wrapped(fn):  # the kit re-raises a factory's error as its own, `from` it
        try:
            fn()
        except NotImplementedError as exc:
            raise lk.LabkitError("The app factory raised") from exc

    q = _define("99.wrapped", wrapped)
    assert run_question(q, (stub,)).message == STUB_MESSAGE


def test_any_other_exception_fails_with_its_reason(scratch_questions):
    q = _define("99.boom", lambda fn: fn())
    result = run_question(q, (lambda: 1 / 0,))
    assert not result.passed and result.points == 0
    assert result.message.startswith("Your code raised ZeroDivisionError: division by zero")
    assert re.search(r"line \d+", result.message)

    exiting = run_question(q, (lambda: exit(3),))
    assert not exiting.passed


def test_a_bug_in_the_check_is_blamed_on_the_check(scratch_questions):
    q = _define("99.bug", json.loads)  # raises inside the standard library only
    result = run_question(q, ("{",))
    assert not result.passed
    assert result.message.startswith("The check itself raised JSONDecodeError")


def test_ctrl_c_is_not_swallowed(scratch_questions):
    def interrupted(_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_question(_define("99.ctrl_c", interrupted), (None,))


def test_hints_come_in_tiers_then_stop(scratch_questions, capsys):
    _define("99.hinted", lambda x: None, hints=["a nudge", "more", "almost it"])
    shown = []
    for _ in range(4):
        lk.hint("99.hinted")
        shown.append(capsys.readouterr().out.strip())
    assert shown[0] == "Hint 1 of 3 for 99.hinted: a nudge"
    assert shown[2] == "Hint 3 of 3 for 99.hinted: almost it"
    assert shown[3].startswith("No more hints for 99.hinted")
    _define("99.bare", lambda x: None)
    lk.hint("99.bare")
    assert "no hints" in capsys.readouterr().out


def test_question_ids_and_points_are_validated(scratch_questions):
    with pytest.raises(CheckError, match="NN.snake_case_name"):
        question("remember")
    with pytest.raises(CheckError, match="points"):
        question("99.zero", points=0)
    def first(x):
        pass

    def second(x):
        pass

    _define("99.twice", first)
    _define("99.twice", first)  # re-running the same definition is fine
    with pytest.raises(CheckError, match="defined twice"):
        question("99.twice")(second)


def test_every_registered_question_has_a_title_and_hints():
    for q in registry.all_questions():
        assert q.title and q.hints, q.id
