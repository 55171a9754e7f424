"""Chapter 00 checks: the reference passes, the released stub fails, and one answer
table of valid alternatives and wrong answers (each wrong one must fail naming what
broke). The reference and the stub come from the notebooks themselves.
"""

from __future__ import annotations

import http.client
import json
import pathlib
from urllib.parse import urlparse

import requests
from flask import Flask, jsonify, request

from exercise_kit import (assert_case, assert_released_stubs_fail, reference, run, table,
                          valid, wrong)

SOLUTION = pathlib.Path(__file__).resolve().parents[2] / "solutions" / \
    "00_two_ways_to_serve_exercises.ipynb"
REF = reference(SOLUTION)
make_guestbook = REF["make_guestbook"]
name_after_restart = REF["name_after_restart"]


# -- 00.remember: wrong answers ---------------------------------------------------------

_SHARED: dict = {}


def global_memory():
    """One dict outside the factory: every server shares the guest."""
    app = Flask("g")

    @app.post("/guest")
    def sign():
        data = request.get_json(silent=True) or {}
        if "name" not in data:
            return {"error": "no name"}, 400
        _SHARED["name"] = data["name"]
        return {"name": data["name"]}

    @app.get("/guest")
    def read():
        return ({"name": _SHARED["name"]}, 200) if "name" in _SHARED else ({}, 404)

    return app


def _guestbook(*, on_post=None, on_get=None, keep_first=False, bad_post=None):
    """The reference guestbook with one behaviour swapped for a mistake."""

    def make():
        app = Flask("variant")
        guest: dict = {}

        @app.post("/guest")
        def sign():
            if on_post is not None:
                return on_post(guest)
            data = request.get_json(silent=True) or {}
            if "name" not in data:
                if bad_post is not None:
                    return bad_post(guest)
                return {"error": "no name"}, 400
            if keep_first:
                guest.setdefault("name", data["name"])
            else:
                guest["name"] = data["name"]
            return {"name": guest["name"]}

        @app.get("/guest")
        def read():
            if on_get is not None:
                return on_get(guest)
            if "name" not in guest:
                return {"name": None}, 404
            return {"name": guest["name"]}

        return app

    return make


def _store_anything(guest):
    guest["name"] = (request.get_json(silent=True) or {}).get("name")
    return {"name": guest["name"]}


def _strict_json(guest):
    guest["name"] = request.json["name"]  # 415 for a non-JSON body, 500 for no name
    return {"name": guest["name"]}


def _also_capitalised(guest):
    data = request.get_json(silent=True) or {}
    name = data.get("name", data.get("Name"))
    if name is None:
        return {"error": "no name"}, 400
    guest["name"] = name
    return {"name": name}


def _tidy_names_only(guest):
    data = request.get_json(silent=True) or {}
    name = data.get("name")
    if not isinstance(name, str) or not name.replace(" ", "").isascii():
        return {"error": "bad name"}, 400
    guest["name"] = name
    return {"name": name}


def _hard_coded_ada(guest):
    return ({"name": "Ada"}, 200) if "name" in guest else ({"name": None}, 404)


def _json_as_text(guest):
    if "name" not in guest:
        return "no guest", 404
    return json.dumps({"name": guest["name"]})  # a str: Content-Type text/html


def _empty_is_200(guest):
    return {"name": guest.get("name")}


def _wipe_on_bad_post(guest):
    guest.clear()
    return {"error": "no name"}, 400


# -- 00.remember: valid alternatives ---------------------------------------------------

class GuestbookFactory:
    """A callable object as the factory; a list of every name; 201 on POST."""

    def __call__(self):
        app = Flask("guestbook_class")
        names: list[str] = []

        @app.route("/guest", methods=["GET", "POST"])
        def guest():
            if request.method == "POST":
                data = request.get_json(force=True, silent=True)
                if not isinstance(data, dict) or "name" not in data:
                    return jsonify(error="send {\"name\": ...}"), 400
                names.append(data["name"])
                return jsonify(name=data["name"], count=len(names)), 201
            if not names:
                return "nobody yet", 404
            return jsonify(name=names[-1], signed=len(names))

        return app


def config_guestbook():
    """The guest lives in app.config (still per app), 204 on POST."""
    app = Flask("guestbook_config")
    app.config["GUEST"] = None

    @app.post("/guest")
    def sign():
        data = request.get_json(silent=True)
        if not isinstance(data, dict) or "name" not in data:
            return {"error": "name missing"}, 400
        app.config["GUEST"] = {"name": data["name"]}
        return "", 200

    @app.get("/guest")
    def read():
        if app.config["GUEST"] is None:
            return jsonify(error="empty"), 404
        return jsonify(app.config["GUEST"])

    return app


# -- 00.after_revive: answers ----------------------------------------------------------

def assumes_memory_gone(server):
    server.kill()
    server.revive()
    return None


def reads_before_the_crash(server):
    before = requests.get(server.url + "/guest", timeout=5)
    server.kill()
    server.revive()
    return before.json()["name"] if before.status_code == 200 else None


def no_revive(server):
    server.kill()


def no_restart(server):
    r = requests.get(server.url + "/guest", timeout=5)
    return r.json()["name"] if r.status_code == 200 else None


def returns_status(server):
    server.kill()
    server.revive()
    return requests.get(server.url + "/guest", timeout=5).status_code


def returns_body(server):
    server.kill()
    server.revive()
    r = requests.get(server.url + "/guest", timeout=5)
    return r.json() if r.status_code == 200 else None


def ignores_status(server):
    server.kill()
    server.revive()
    return requests.get(server.url + "/guest", timeout=5).json()["name"]


def branches_on_name(server):
    server.kill()
    server.revive()
    if "store" in server.name:
        return requests.get(server.url + "/guest", timeout=5).json()["name"]
    return None


def none_as_text(server):
    server.kill()
    server.revive()
    r = requests.get(server.url + "/guest", timeout=5)
    return r.json()["name"] if r.status_code == 200 else "None"


def with_http_client(server):
    """Another client library, and any non-200 answer counts as 'no guest'."""
    server.kill()
    server.revive()
    url = urlparse(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=5)
    try:
        conn.request("GET", "/guest")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return json.loads(body)["name"] if response.status == 200 else None


class Restarter:
    """A callable object, with a session that is closed after use."""

    def __call__(self, server):
        server.kill()
        assert not server.alive
        server.revive()
        with requests.Session() as s:
            r = s.get(f"{server.url}/guest", timeout=5)
        return None if r.status_code == 404 else r.json().get("name")


R, A = "00.remember", "00.after_revive"
CASES = [
    valid(R, "reference", make_guestbook),
    valid(R, "callable-object-list-201", GuestbookFactory()),
    valid(R, "app-config-empty-post-body", config_guestbook),
    wrong(R, "global-memory", global_memory, says="inside make_guestbook", kind="logic"),
    wrong(R, "hard-coded-ada", _guestbook(on_get=_hard_coded_ada),
          says="latest one stored", kind="visible-only"),
    wrong(R, "keeps-first-name", _guestbook(keep_first=True), says="latest one stored",
          kind="logic"),
    wrong(R, "no-name-check", _guestbook(on_post=_store_anything), says="should answer 400",
          kind="hostile-input"),
    wrong(R, "strict-json-415", _guestbook(on_post=_strict_json), says="should answer 400",
          kind="hostile-input"),
    wrong(R, "accepts-Name", _guestbook(on_post=_also_capitalised),
          says="should answer 400", kind="hostile-input"),
    wrong(R, "ascii-names-only", _guestbook(on_post=_tidy_names_only),
          says="should answer 200 or 201", kind="hostile-input"),
    wrong(R, "bad-post-wipes", _guestbook(bad_post=_wipe_on_bad_post),
          says="must change nothing", kind="hostile-input"),
    wrong(R, "json-as-text", _guestbook(on_get=_json_as_text), says="Content-Type",
          kind="substance"),
    wrong(R, "200-when-empty", _guestbook(on_get=_empty_is_200), says="should answer 404",
          kind="logic"),
    valid(A, "reference", make_guestbook, name_after_restart),
    valid(A, "http-client", make_guestbook, with_http_client),
    valid(A, "callable-object", GuestbookFactory(), Restarter()),
    wrong(A, "assumes-memory-gone", make_guestbook, assumes_memory_gone,
          says="outside its memory", kind="visible-only"),
    wrong(A, "branches-on-server-name", make_guestbook, branches_on_name,
          says="outside its memory", kind="visible-only"),
    wrong(A, "reads-before-crash", make_guestbook, reads_before_the_crash,
          says="after the restart", kind="logic"),
    wrong(A, "no-revive", make_guestbook, no_revive, says="still down", kind="logic"),
    wrong(A, "no-restart", make_guestbook, no_restart, says="restart", kind="logic"),
    wrong(A, "returns-status", make_guestbook, returns_status, says="type int",
          kind="substance"),
    wrong(A, "returns-body", make_guestbook, returns_body, says="type dict",
          kind="substance"),
    wrong(A, "ignores-404", make_guestbook, ignores_status, says="404 means None",
          kind="hostile-input"),
    wrong(A, "none-as-text", make_guestbook, none_as_text, says="after the restart",
          kind="hostile-input"),
]


def reads_name_from_any_body(server):
    """Reads the name from the body whatever the status."""
    server.kill()
    server.revive()
    return requests.get(server.url + "/guest", timeout=5).json().get("name")


def lower_cased(guest):
    data = request.get_json(silent=True) or {}
    if "name" not in data:
        return {"error": "no name"}, 400
    guest["name"] = str(data["name"]).strip().lower()
    return {"name": guest["name"]}


def wrong_key(guest):
    if "name" not in guest:
        return {}, 404
    return {"guest": guest["name"]}


CASES += [
    wrong(A, "reads-name-from-any-body", make_guestbook, reads_name_from_any_body,
          says="404 means None", kind="hostile-input"),
    wrong(R, "lower-cases-names", _guestbook(on_post=lower_cased), says="exact name",
          kind="hostile-input"),
    wrong(R, "wrong-key", _guestbook(on_get=wrong_key), says='key "name"', kind="substance"),
]


@table(CASES)
def test_answer_table(case):
    assert_case(case)


def test_a_factory_that_returns_no_app_or_an_app_instead_of_a_factory_fails():
    returns_none = run(R, lambda: None)
    assert not returns_none.passed and "NoneType, not a Flask app" in returns_none.message
    an_app = run(R, make_guestbook())
    assert not an_app.passed and "factory function itself" in an_app.message


def test_released_stubs_fail_with_the_stub_message():
    assert_released_stubs_fail(SOLUTION, at_least=2)
