"""Chapter 00 questions: a server that remembers, and what a crash does to that.

Both checks start the learner's app factory on a real socket (``lk.serve``) and
talk to it over HTTP, as a browser would.
"""

from __future__ import annotations

from typing import Any, Callable

from flask import Flask, request

from ..checks import CheckFailed, probe, question


def _guest_name(response: Any, what: str) -> str | None:
    """The name GET /guest reports: None for a 404, the JSON ``name`` for a 200."""
    probe.expect_status(response, (200, 404), what)
    if response.status_code == 404:
        return None
    data = probe.expect_json(response, what)
    if not isinstance(data, dict) or "name" not in data:
        raise CheckFailed(f"{what} should answer JSON like {{\"name\": \"Ada\"}}, but"
                          f" your app answered {probe.describe(response)}.")
    return data["name"]


@question("00.remember", points=2, hints=[
    "Create the variable that holds the guest inside make_guestbook, before the"
    " view functions: then every app built by the factory has its own memory.",
    "In the POST view read the body with request.get_json(silent=True) or {}; when"
    " it has no 'name', return ({'error': 'name missing'}, 400).",
    "A sketch: `guest = {}`; POST stores `guest['name'] = data['name']` and returns"
    " it; GET returns `({'name': None}, 404)` when 'name' not in guest, else"
    " `{'name': guest['name']}`.",
])
def remember(make_guestbook: Callable[[], Flask]) -> None:
    "Write a Flask app factory whose /guest endpoint remembers a name in memory."
    with probe.serve_factory(make_guestbook, name="check-remember") as server:
        url = server.url + "/guest"
        response = probe.call("GET", url, what="GET /guest")
        if _guest_name(response, "GET /guest") is not None or response.status_code != 404:
            raise CheckFailed(
                "GET /guest before anyone signed in should answer 404, but your app"
                f" answered {probe.describe(response)}.")
        for name in ("Ada", "Grace"):
            response = probe.call("POST", url, json={"name": name},
                                  what=f"POST /guest {{'name': '{name}'}}")
            probe.expect_status(response, (200, 201), f"POST /guest with name {name!r}")
            response = probe.call("GET", url, what="GET /guest")
            got = _guest_name(response, f"GET /guest after POSTing {name!r}")
            if got != name:
                raise CheckFailed(
                    f"After POST /guest {{'name': '{name}'}}, GET /guest should answer"
                    f" 200 with {{\"name\": \"{name}\"}}, but your app answered"
                    f" {probe.describe(response)}.")
        response = probe.call("POST", url, json={}, what="POST /guest with {}")
        probe.expect_status(response, 400, "POST /guest with a body that has no 'name'")

        with probe.serve_factory(make_guestbook, name="check-remember-2") as other:
            response = probe.call("GET", other.url + "/guest", what="GET /guest")
            if _guest_name(response, "GET /guest on a second server") is not None:
                raise CheckFailed(
                    "A second server built from make_guestbook already knew"
                    f" {_guest_name(response, 'GET /guest')!r}: the servers share one"
                    " variable. Create the guest's storage inside make_guestbook, so"
                    " each app (each server) has its own memory.")
        response = probe.call("GET", url, what="GET /guest")
        if _guest_name(response, "GET /guest") != "Grace":
            raise CheckFailed(
                "Starting a second server from make_guestbook wiped the first one's"
                f" guest (GET /guest now answers {probe.describe(response)}). Do not"
                " reset a shared variable in the factory; create a new one inside it.")
    return "Your guestbook remembers its guest, and each server has its own memory."


def _guestbook_with_outside_store(store: dict) -> Callable[[], Flask]:
    """A reference guestbook whose guest lives in ``store``, outside the app.

    It stands for an app backed by a database: killing the server does not lose
    the guest, because the guest was never in the server's memory.
    """

    def make_app() -> Flask:
        app = Flask("guestbook_with_store")

        @app.post("/guest")
        def sign() -> Any:
            data = request.get_json(silent=True) or {}
            if "name" not in data:
                return {"error": "name missing"}, 400
            store["name"] = data["name"]
            return {"name": data["name"]}

        @app.get("/guest")
        def read() -> Any:
            if "name" not in store:
                return {"name": None}, 404
            return {"name": store["name"]}

        return app

    return make_app


def _same(answer: Any, expected: Any) -> bool:
    """``answer == expected`` for a value of the expected type only: an object whose
    ``__eq__`` says yes to everything is not the name the server reports."""
    return type(answer) is type(expected) and answer == expected


def _run_restart(name_after_restart: Callable[[Any], Any], server: Any) -> Any:
    answer = name_after_restart(server)
    if not server.alive:
        raise CheckFailed(
            "When name_after_restart returned, the server was still down. After"
            " server.kill(), call server.revive() before asking it anything.")
    return answer


@question("00.after_revive", points=2, hints=[
    "Inside the function: server.kill(), then server.revive(), then ask the server"
    " with requests.get(server.url + '/guest').",
    "A 404 means the server knows no guest, so return None; for a 200 return"
    " response.json()['name'].",
    "Do not hard-code the answer: the check also runs your function on a server"
    " whose guests live outside its memory, where the name does survive.",
])
def after_revive(make_guestbook: Callable[[], Flask],
                 name_after_restart: Callable[[Any], Any]) -> None:
    "Crash and restart a server, then report which guest it still knows."
    with probe.serve_factory(make_guestbook, name="check-revive") as server:
        response = probe.call("POST", server.url + "/guest", json={"name": "Grace"},
                              what="POST /guest")
        probe.expect_status(response, (200, 201),
                            "POST /guest (make 00.remember pass first)")
        answer = _run_restart(name_after_restart, server)
        response = probe.call("GET", server.url + "/guest", what="GET /guest")
        actual = _guest_name(response, "GET /guest after the restart")
        if actual == "Grace":
            raise CheckFailed(
                "After your function returned, the server still knew 'Grace': it was"
                " not restarted. Call server.kill() and then server.revive().")
        if not _same(answer, actual):
            raise CheckFailed(
                f"Your function returned {answer!r}, but after the restart GET /guest"
                f" answers {probe.describe(response)}. A revived server runs a fresh app"
                " with empty memory: report what the server says after the restart.")

    store: dict = {}
    with probe.serve_factory(_guestbook_with_outside_store(store),
                             name="check-revive-store") as server:
        probe.call("POST", server.url + "/guest", json={"name": "Linus"},
                   what="POST /guest")
        answer = _run_restart(name_after_restart, server)
        if not _same(answer, "Linus"):
            raise CheckFailed(
                "On a server whose guest lives outside its memory (like a database),"
                f" the name survives the restart and GET /guest answers 'Linus', but"
                f" your function returned {answer!r}. Ask the server after reviving it"
                " instead of assuming the answer.")
    return ("Right: a restart wipes what a server held in memory, but not what lives"
            " outside it.")
