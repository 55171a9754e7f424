"""Chapter 00 checks: the reference passes, the released stub and wrong answers fail.

The reference and the stub are taken from the notebooks themselves (the function
definitions in solutions/ and exercises/), so these tests follow the single source.
"""

from __future__ import annotations

import pathlib

import nbformat
import pytest
import requests
from flask import Flask, request

from exercise_kit import STUB_MESSAGE, run

ROOT = pathlib.Path(__file__).resolve().parent.parent
NAME = "00_two_ways_to_serve_exercises.ipynb"


def _definitions(path: pathlib.Path) -> dict:
    """Run the import and `def` cells of a notebook; return what they define."""
    namespace: dict = {}
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type == "code" and cell.source.startswith(("import", "from", "def ")):
            exec(compile(cell.source, f"<{path.name} cell {index}>", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def solution():
    return _definitions(ROOT / "solutions" / NAME)


@pytest.fixture(scope="module")
def stub():
    return _definitions(ROOT / "exercises" / NAME)


def _guestbook(*, shared=None, get_empty=(404,), require_name=True):
    """A guestbook factory with configurable mistakes."""

    def make():
        app = Flask("variant")
        guest = shared if shared is not None else {}

        @app.post("/guest")
        def sign():
            data = request.get_json(silent=True) or {}
            if require_name and "name" not in data:
                return {"error": "no name"}, 400
            guest["name"] = data["name"]
            return {"name": guest["name"]}

        @app.get("/guest")
        def read():
            if "name" not in guest:
                return {"name": None}, *get_empty
            return {"name": guest["name"]}

        return app

    return make


# -- 00.remember ------------------------------------------------------------------------

def test_remember_reference_passes(solution):
    result = run("00.remember", solution["make_guestbook"])
    assert result.passed and result.points == result.max_points == 2, result.message


def test_remember_stub_fails_with_replace_the_stub(stub):
    result = run("00.remember", stub["make_guestbook"])
    assert not result.passed and result.message == STUB_MESSAGE


def test_remember_global_memory_fails():
    result = run("00.remember", _guestbook(shared={}))
    assert not result.passed
    assert "second server" in result.message and "inside make_guestbook" in result.message


def test_remember_200_for_an_empty_guestbook_fails():
    result = run("00.remember", _guestbook(get_empty=(200,)))
    assert not result.passed
    assert "before anyone signed in should answer 404" in result.message
    assert "200" in result.message


def test_remember_missing_name_must_be_a_400():
    result = run("00.remember", _guestbook(require_name=False))
    assert not result.passed
    assert "should answer 400" in result.message and "500" in result.message


def test_remember_wants_a_factory_that_returns_an_app(solution):
    returns_none = run("00.remember", lambda: None)
    assert not returns_none.passed and "NoneType, not a Flask app" in returns_none.message
    an_app = run("00.remember", solution["make_guestbook"]())
    assert not an_app.passed and "factory function itself" in an_app.message


# -- 00.after_revive --------------------------------------------------------------------

def test_after_revive_reference_passes(solution):
    result = run("00.after_revive", solution["make_guestbook"],
                  solution["name_after_restart"])
    assert result.passed and result.points == 2, result.message


def test_after_revive_stub_fails_with_replace_the_stub(solution, stub):
    result = run("00.after_revive", solution["make_guestbook"], stub["name_after_restart"])
    assert not result.passed and result.message == STUB_MESSAGE


def test_after_revive_hard_coded_answer_fails(solution):
    def assumes_the_memory_is_gone(server):
        server.kill()
        server.revive()
        return None

    result = run("00.after_revive", solution["make_guestbook"], assumes_the_memory_is_gone)
    assert not result.passed
    assert "outside its memory" in result.message and "Linus" in result.message


def test_after_revive_without_revive_fails(solution):
    result = run("00.after_revive", solution["make_guestbook"],
                  lambda server: server.kill())
    assert not result.passed and "still down" in result.message


def test_after_revive_without_a_restart_fails(solution):
    result = run("00.after_revive", solution["make_guestbook"], lambda server: "Grace")
    assert not result.passed and "not restarted" in result.message


def test_after_revive_returning_the_status_code_fails(solution):
    def status_instead_of_name(server):
        server.kill()
        server.revive()
        return requests.get(server.url + "/guest", timeout=5).status_code

    result = run("00.after_revive", solution["make_guestbook"], status_instead_of_name)
    assert not result.passed
    assert "returned 404" in result.message and "fresh app" in result.message
