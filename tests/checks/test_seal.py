"""Sealed check records (labkit.checks.seal), in this process: no kernel needed."""

from __future__ import annotations

import os
import pathlib

import pytest

import labkit as lk
from labkit.checks import registry, seal
from labkit.checks.result import MIME_TYPE
from labkit.instructor.grading import collect_results

from exercise_kit import reference

ROOT = pathlib.Path(__file__).resolve().parents[2]
KEY = bytes(range(32))
RECORD = {"id": "03.sticky_policy", "passed": True, "points": 3, "max_points": 3,
          "message": "Well done."}


@pytest.fixture()
def armed():
    """This process seals like a grading kernel, for one test."""
    seal.arm(KEY, "run-1")
    try:
        yield
    finally:
        seal._SEALED_RUN = None


def test_a_sealed_record_verifies_only_unchanged_with_its_key_and_run():
    sealed = seal.sign(RECORD, key=KEY, run="run-1", seq=1)
    assert seal.verify(sealed, key=KEY, run="run-1")
    assert not seal.verify(sealed, key=os.urandom(32), run="run-1")  # another run's key
    assert not seal.verify(sealed, key=KEY, run="run-2")  # another run id
    for field, value in [("passed", False), ("points", 9), ("id", "03.other"),
                         ("seq", 2), ("message", "Well done!"), ("tag", "0" * 64)]:
        assert not seal.verify({**sealed, field: value}, key=KEY, run="run-1"), field
    unsealed = {k: v for k, v in sealed.items() if k != "tag"}
    assert not seal.verify(unsealed, key=KEY, run="run-1")
    assert not seal.verify("not a record", key=KEY, run="run-1")
    assert not seal.verify({**sealed, "seq": "1"}, key=KEY, run="run-1")


def test_the_key_file_is_read_once_and_deleted(tmp_path, monkeypatch):
    key_file = tmp_path / "key.json"
    key_file.write_text('{"key": "%s", "run": "r"}' % KEY.hex())
    monkeypatch.setenv(seal.KEY_FILE_VARIABLE, str(key_file))
    try:
        assert seal.arm_from_environment()
        assert not key_file.exists() and seal.KEY_FILE_VARIABLE not in os.environ
        assert seal.sealed_runner() is not None
    finally:
        seal._SEALED_RUN = None
    assert not seal.arm_from_environment()  # nothing left to read


def test_check_runs_visible_then_hidden_and_seals_both(armed):
    answers = reference(ROOT / "solutions" / "00_two_ways_to_serve_exercises.ipynb")
    result = lk.check("00.remember", answers["make_guestbook"])
    record = result.to_bundle()[MIME_TYPE]
    assert seal.verify(record, key=KEY, run="run-1")
    assert record["visible"]["passed"] and record["hidden"]["passed"] and result.passed
    assert result.message.startswith("visible: pass, hidden: pass: ")
    wrong = lk.check("00.remember", lambda: None)
    assert wrong.to_bundle()[MIME_TYPE]["hidden"] is None and not wrong.passed
    assert wrong.to_bundle()[MIME_TYPE]["seq"] == record["seq"] + 1


def test_replacing_a_question_after_arming_does_not_change_the_verdict(armed):
    real = registry._REGISTRY["00.remember"]
    fake = registry.Question(real.id, real.points, (), lambda make_guestbook: None)
    registry._REGISTRY["00.remember"] = fake  # a learner's attempt to pass anything
    try:
        result = lk.check("00.remember", lambda: None)
    finally:
        registry._REGISTRY["00.remember"] = real
    assert not result.passed and "visible: fail" in result.message


def test_collect_results_keeps_sealed_records_and_rejects_others(armed):
    good = seal.sign(RECORD, key=KEY, run="run-1", seq=2)
    older = seal.sign({**RECORD, "passed": False}, key=KEY, run="run-1", seq=1)
    outputs = [{"output_type": "display_data", "data": {MIME_TYPE: record}, "metadata": {}}
               for record in (good, older, RECORD,
                              seal.sign(RECORD, key=KEY, run="run-0", seq=5))]
    notebook = lk_notebook(outputs)
    found, rejected = collect_results(notebook, key=KEY, run="run-1")
    assert found["03.sticky_policy"].passed  # seq 2 beats seq 1, whatever the order
    assert rejected == ["03.sticky_policy", "03.sticky_policy"]


def lk_notebook(outputs):
    import nbformat

    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    return nbformat.v4.new_notebook(cells=[cell])
