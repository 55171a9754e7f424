"""Chapter 00 questions: a server that remembers, and what a crash does to that.

Both checks start the learner's app factory on a real socket (``lk.serve``) and
talk to it over HTTP, as a browser would. The names they send are drawn from the
check's seed (``context().rng``), so an answer that only knows the names in the
notebook cannot pass, and a failure can be replayed with ``lk.check(..., seed=N)``.
"""

from __future__ import annotations

from typing import Any, Callable

import requests
from flask import Flask, request

from ..apps.clients import client
from ..checks import CheckFailed, context, probe, question

# Names with a space, an apostrophe, accents and non-Latin letters: a name is any
# string, not only a tidy ASCII word.
_ODD_NAMES = ("Zoë O'Neil", "José María", "Ada Lovelace", "Grace \"Amazing\" Hopper",
              "李小龍", "Ωmega", "d'Artagnan", "Anne-Marie")


_NON_ASCII = ("Zoë O'Neil", "José María", "李小龍", "Ωmega")


def _names(count: int) -> list[str]:
    """``count`` distinct guest names for this run: the first three (in random order)
    hold a plain one, one with letters beyond ASCII, and one with spaces or quotes."""
    rng = context().rng
    odd = [rng.choice(_NON_ASCII),
           rng.choice([n for n in _ODD_NAMES if n not in _NON_ASCII])]
    names = [probe.random_user(rng).capitalize()] + odd
    rng.shuffle(names)
    names += [probe.random_user(rng).capitalize() for _ in range(count - 3)]
    return names[:count]


_LONG_ALPHABET = "abcdefghijklmnopqrstuvwxyz ÄÖÜßéñçøå中文Ω"


def _shaped_names(rng: Any) -> list[str]:
    """Names a tidy-minded answer might change: surrounding spaces, lower case,
    shouting capitals, and one of a few hundred characters (a name is any string)."""
    user = probe.random_user(rng)
    long = "".join(rng.choice(_LONG_ALPHABET) for _ in range(rng.randrange(300, 700)))
    names = [f"  {user.capitalize()} ", f"{user} van der {probe.random_user(rng)}",
             user.upper() + " mcDONALD", long]
    rng.shuffle(names)
    return names


def _guest_name(response: Any, what: str) -> str | None:
    """The name GET /guest reports: None for a 404, the JSON ``name`` for a 200."""
    probe.expect_status(response, (200, 404), what)
    if response.status_code == 404:
        return None
    data = probe.expect_json_object(response, what)
    if "name" not in data:
        raise CheckFailed(f"{what} should answer a JSON object with the key \"name\","
                          f" but your app answered {probe.describe(response)}.")
    return data["name"]


def _post(url: str, body: Any, what: str, *, raw: bytes | None = None) -> Any:
    if raw is not None:
        import requests

        try:
            return requests.post(url, data=raw, timeout=probe.TIMEOUT,
                                 headers={"Content-Type": "text/plain"})
        except requests.RequestException:
            raise CheckFailed(f"{what}: the server did not answer.") from None
    return probe.call("POST", url, json=body, what=what)


@question("00.remember", points=2, hints=[
    "Create the variable that holds the guest inside make_guestbook, before the"
    " view functions: then every app built by the factory has its own memory.",
    "In the POST view read the body with request.get_json(silent=True) or {}; when"
    " it has no 'name', return ({'error': 'name missing'}, 400) and change nothing.",
    "A sketch: `guest = {}`; POST stores `guest['name'] = data['name']` and returns"
    " it; GET returns `({'name': None}, 404)` when 'name' not in guest, else"
    " `{'name': guest['name']}`.",
])
def remember(make_guestbook: Callable[[], Flask]) -> str:
    "Write a Flask app factory whose /guest endpoint remembers a name in memory."
    rng = context().rng
    names = _names(4)
    with probe.serve_factory(make_guestbook, name="check-remember") as server:
        url = server.url + "/guest"
        response = probe.call("GET", url, what="GET /guest")
        if response.status_code != 404:
            raise CheckFailed(
                "GET /guest on a new server, before anyone signed in, should answer 404,"
                f" but your app answered {probe.describe(response)}. (If the guest lives"
                " in a variable outside make_guestbook, every server shares it: create"
                " it inside make_guestbook.)")
        # A bad POST on an empty guestbook must not invent a guest.
        response = _post(url, {"nickname": names[0]}, "POST /guest without a name")
        probe.expect_status(response, 400, "POST /guest with JSON that has no 'name'")
        if probe.call("GET", url, what="GET /guest").status_code != 404:
            raise CheckFailed("After a POST /guest without a name was refused, GET"
                              " /guest should still answer 404: a refused POST stores"
                              " nothing.")
        stored = names[:3] + _shaped_names(rng)
        for index, name in enumerate(stored):
            response = _post(url, {"name": name}, "POST /guest")
            probe.expect_status(response, (200, 201), "POST /guest with a name")
            got = _guest_name(probe.call("GET", url, what="GET /guest"),
                              "GET /guest after a name was stored")
            if got != name:
                which = "the first name" if index == 0 else "a later name"
                shape = ""
                if isinstance(got, str) and got.strip().casefold() == name.strip().casefold():
                    shape = " (it changed the spaces or the case)"
                elif isinstance(got, str) and name.startswith(got):
                    shape = " (it cut the name short)"
                raise CheckFailed(
                    f"After POST /guest stored {which}, GET /guest should answer that"
                    " exact name (the latest one stored), but it answered"
                    f" {'a different one' if got is not None else 'no name'}{shape}:"
                    " remember whatever name the last successful POST sent, character"
                    " for character (spaces, case, accents and length as sent).")
        latest = stored[-1]
        # The guest belongs to the server, not to one client: another client (another
        # address, another browser, no cookies) is told the same name.
        with client(source=f"127.0.{rng.randrange(1, 255)}.{rng.randrange(2, 255)}",
                    user_agent=f"OtherBrowser/{rng.randrange(2, 99)}.0",
                    keep_cookies=False) as other_client:
            try:
                response = other_client.get(url, timeout=probe.TIMEOUT)
            except requests.RequestException:
                raise CheckFailed("GET /guest from another client: the server did not"
                                  " answer.") from None
        if _guest_name(response, "GET /guest from another client") != latest:
            raise CheckFailed(
                "GET /guest from another client (another address and browser) did not"
                " answer the guest stored by the first one. The guestbook remembers one"
                " guest for the whole server: keep it in one variable, not per client.")
        # Refused POSTs, of several shapes, must leave the stored name alone.
        refused = [({}, None), ({"Name": names[3]}, None), ({"guest": names[3]}, None),
                   (None, b"name=" + names[3].encode())]
        rng.shuffle(refused)
        for body, raw in refused:
            what = ("POST /guest with a body that is not JSON" if raw is not None
                    else "POST /guest with JSON that has no 'name' key")
            probe.expect_status(_post(url, body, what, raw=raw), 400, what)
            if _guest_name(probe.call("GET", url, what="GET /guest"), "GET /guest") != latest:
                raise CheckFailed(
                    f"After a refused {what[5:]}, GET /guest no longer answered the"
                    " name stored before it. A refused POST must change nothing.")

        # Several guests sign at the same instant: each POST succeeds and the guest
        # remembered afterwards is one of theirs.
        # Readers at the same moment must always see a guest: the old one or a new one,
        # never "nobody" (a POST that clears the name before it sets it fails this).
        crowd = _names(6)
        readers = 6

        def sign_or_read(i: int) -> Any:
            if i < len(crowd):
                return _post(url, {"name": crowd[i]}, "POST /guest")
            return [_guest_name(probe.call("GET", url, what="GET /guest"),
                                "GET /guest while others sign") for _ in range(4)]

        results = probe.concurrently(sign_or_read, len(crowd) + readers)
        error = probe.first_error(results)
        if error is not None:
            raise CheckFailed("Six simultaneous POST /guest requests, with GET /guest"
                              f" requests at the same time: one failed ({error}).")
        for response in results[:len(crowd)]:
            probe.expect_status(response, (200, 201), "Six simultaneous POST /guest requests")
        seen = {name for reads in results[len(crowd):] for name in reads}
        if not seen <= set(crowd) | {latest}:
            raise CheckFailed(
                "While six guests signed at the same time, a GET /guest answered"
                + (" 404 (no guest), although a guest had been stored long before."
                   if None in seen else " a name none of them sent.")
                + " Replace the stored name in one step: never clear it first.")
        if _guest_name(probe.call("GET", url, what="GET /guest"),
                       "GET /guest after six simultaneous POSTs") not in crowd:
            raise CheckFailed("After six guests signed at the same time, GET /guest"
                              " answered a name none of them sent.")
        remembered = _guest_name(probe.call("GET", url, what="GET /guest"), "GET /guest")

        with probe.serve_factory(make_guestbook, name="check-remember-2") as other:
            response = probe.call("GET", other.url + "/guest", what="GET /guest")
            if response.status_code != 404:
                raise CheckFailed(
                    "A second server built from make_guestbook did not start empty:"
                    f" GET /guest answered {response.status_code}. The servers share one"
                    " variable. Create the guest's storage inside make_guestbook, so"
                    " each app (each server) has its own memory.")
            other_name = _names(2)[0]
            probe.expect_status(_post(other.url + "/guest", {"name": other_name},
                                      "POST /guest"), (200, 201),
                                "POST /guest on a second server")
        if _guest_name(probe.call("GET", url, what="GET /guest"), "GET /guest") != remembered:
            raise CheckFailed(
                "Starting a second server from make_guestbook (and signing a guest"
                " there) changed the first server's guest. Each app needs its own"
                " memory: create a new variable inside make_guestbook, never reset or"
                " share one outside it.")
    return ("Your guestbook answers 404, then the latest name as JSON; refuses posts"
            " without a name and keeps the guest; each server has its own memory.")


def _guestbook_with_outside_store(store: dict, starts: list[int], *,
                                  missing: str) -> Callable[[], Flask]:
    """A guestbook whose guest lives in ``store``, outside the app (like a database).

    Killing the server does not lose the guest, because the guest was never in the
    server's memory. ``starts`` counts how many apps the factory built (a revive
    builds one). ``missing`` is how it answers GET /guest with no guest: a 404 with
    ``"json"`` or with a plain-text ``"text"`` body.
    """

    def make_app() -> Flask:
        starts.append(1)
        app = Flask("guestbook")

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
                if missing == "text":
                    return "Nobody has signed the guestbook yet.", 404, {
                        "Content-Type": "text/plain"}
                if missing.startswith("json-name:"):
                    # A 404 whose JSON still names the guest who left: only the
                    # status says "no guest now".
                    return {"error": "this guest has checked out",
                            "name": missing.split(":", 1)[1]}, 404
                return {"error": "no guest yet"}, 404
            return {"name": store["name"]}

        return app

    return make_app


def _same(answer: Any, expected: Any) -> bool:
    """``answer == expected`` for a value of the expected type only: an object whose
    ``__eq__`` says yes to everything is not the name the server reports."""
    return type(answer) is type(expected) and answer == expected


def _run_restart(name_after_restart: Callable[[Any], Any], server: Any,
                 starts: list[int] | None = None, *, story: str = "") -> Any:
    before = len(starts) if starts is not None else None
    try:
        answer = name_after_restart(server)
    except NotImplementedError:
        raise
    except Exception as exc:
        raise CheckFailed(
            f"Your function raised {type(exc).__name__}: {exc} {story}. After the"
            " restart, check the status code first: a 404 means None, whatever its"
            " body says; read the JSON name only from a 200.") from exc
    if not server.alive:
        raise CheckFailed(
            "When name_after_restart returned, the server was still down. After"
            " server.kill(), call server.revive() before asking it anything.")
    if starts is not None and len(starts) == before:
        raise CheckFailed(
            "name_after_restart returned without restarting the server (no new app was"
            " started). Call server.kill(), then server.revive(), then ask it.")
    return answer


def _describe_answer(answer: Any) -> str:
    if answer is None:
        return "None"
    if isinstance(answer, str):
        return "a name"
    return f"a value of type {type(answer).__name__} (not a name or None)"


@question("00.after_revive", points=2, hints=[
    "Inside the function: server.kill(), then server.revive(), then ask the server"
    " with requests.get(server.url + '/guest').",
    "A 404 means the server knows no guest, so return None (whatever its body says);"
    " for a 200 return response.json()['name'].",
    "Do not hard-code the answer: the check also runs your function on servers"
    " whose guests live outside their memory, where the name does survive.",
])
def after_revive(make_guestbook: Callable[[], Flask],
                 name_after_restart: Callable[[Any], Any]) -> str:
    "Crash and restart a server, then report which guest it still knows."
    rng = context().rng
    guest, kept, changed = _names(3)
    scenarios = ["memory", "outside", "outside-changed", "outside-empty", "outside-gone"]
    rng.shuffle(scenarios)
    for scenario in scenarios:
        if scenario == "memory":
            with probe.serve_factory(make_guestbook, name="guestbook") as server:
                response = probe.call("POST", server.url + "/guest", json={"name": guest},
                                      what="POST /guest")
                probe.expect_status(response, (200, 201),
                                    "POST /guest (make 00.remember pass first)")
                answer = _run_restart(name_after_restart, server,
                                      story="on a server built from your make_guestbook")
                response = probe.call("GET", server.url + "/guest", what="GET /guest")
                actual = _guest_name(response, "GET /guest after the restart")
                if actual == guest:
                    raise CheckFailed(
                        "After your function returned, your guestbook still knew its"
                        " guest: it was not restarted. Call server.kill() and then"
                        " server.revive().")
                if not _same(answer, actual):
                    raise CheckFailed(
                        f"On a server built from your make_guestbook, your function"
                        f" returned {_describe_answer(answer)}, but after the restart"
                        f" GET /guest answers {response.status_code}. A revived server"
                        " runs a fresh app with empty memory: report what the server"
                        " says after the restart (None for a 404).")
            continue
        store: dict = {}
        starts: list[int] = []
        # A guestbook that knows no guest answers a plain-text 404: only the status
        # code says "no guest", so an answer must not read a name from that body.
        missing = ("text" if scenario == "outside-empty" else
                   f"json-name:{kept}" if scenario == "outside-gone" else "json")
        factory = _guestbook_with_outside_store(store, starts, missing=missing)
        with probe.serve_factory(factory, name="guestbook") as server:
            if scenario not in ("outside-empty", "outside-gone"):
                probe.call("POST", server.url + "/guest", json={"name": kept},
                           what="POST /guest")
            if scenario == "outside-changed":
                # Someone else updates the database while the server is down: only
                # asking the server after the restart gives the right name.
                original_kill = server.kill

                def kill_and_update() -> None:
                    original_kill()
                    store["name"] = changed

                server.kill = kill_and_update
            try:
                answer = _run_restart(
                    name_after_restart, server, starts,
                    story="on a server whose guest lives outside its memory"
                    + (" and which knows no guest" if scenario in ("outside-empty",
                                                                   "outside-gone") else ""))
            finally:
                server.__dict__.pop("kill", None)
        expected = {"outside": kept, "outside-changed": changed,
                    "outside-empty": None, "outside-gone": None}[scenario]
        if _same(answer, expected):
            continue
        returned = _describe_answer(answer)
        if isinstance(answer, str):
            returned = "a different name"
        if scenario == "outside":
            raise CheckFailed(
                "On a server whose guest lives outside its memory (like a database),"
                " the name survives the restart and GET /guest answers it, but your"
                f" function returned {returned}. Ask the server after reviving it"
                " instead of assuming the answer.")
        if scenario == "outside-changed":
            raise CheckFailed(
                "On a server whose guest lives outside its memory, in a database that"
                " was updated while the server was down, GET /guest after the restart"
                f" answers the new name, but your function returned {returned}. Ask the"
                " server after reviving it, not before the crash.")
        raise CheckFailed(
            "On a server whose guest lives outside its memory and that knows no guest,"
            f" GET /guest after the restart answers 404"
            f"{' with a plain-text body' if missing == 'text' else ''}"
            f"{' whose JSON still has a name key (a guest who left)' if missing != 'text' else ''}"
            ", so your function"
            f" should return None (a 404 means None, whatever its body says), but it"
            f" returned {returned}. Check the status code"
            " before reading the body.")
    return ("Right: your function restarts the server and reports what it says: a"
            " restart wipes what a server held in memory, but not what lives outside"
            " it.")
