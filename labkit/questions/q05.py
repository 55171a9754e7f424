"""Chapter 05 questions: stateless HTTP.

* ``05.token_verifier``: a JWT verifier, run against a battery of real tokens made with
  PyJWT (and a few forged by hand), each with one defect;
* ``05.content_negotiation``: one URL answering JSON, HTML or text by ``Accept``;
* ``05.idempotent_post``: a ``POST`` that honours ``Idempotency-Key``, retried over
  live HTTP on a two-server cluster;
* ``05.deny_list``: a deny-list of revoked tokens, plugged into the social app in
  token mode.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any, Callable

import jwt
import requests

from ..checks import CheckFailed, probe, question
from ..state.sessions import ManualClock

AUDIENCE = "labkit-social-api"
ISSUER = "labkit-social"
LEEWAY = 30
ALICE = {"username": "alice", "password": "wonderland"}


def _call(method: str, url: str, *, what: str, headers: dict | None = None,
          json: Any = None) -> requests.Response:
    """``probe.call`` with extra request headers (a header set to None is not sent)."""
    with requests.Session() as session:
        session.headers.update(headers or {})
        return probe.call(method, url, what=what, json=json, session=session)


# ------------------------------------------------------------------ token verifier
def _battery(key: bytes) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """(good tokens, bad tokens): each entry names its one defect."""
    from ..state.tokens import forge

    now = int(time.time())
    good = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 600,
            "jti": secrets.token_urlsafe(16)}
    sign = lambda claims, k=key, alg="HS256": jwt.encode(claims, k, algorithm=alg)  # noqa: E731
    without = lambda name: {k: v for k, v in good.items() if k != name}  # noqa: E731
    token = sign(good)
    head, payload, signature = token.split(".")
    changed = forge({}, {**good, "sub": "ex"}).split(".")[1]
    accept = [
        ("a good token", token),
        (f"a token that expired 10 s ago (within the {LEEWAY} s leeway)",
         sign({**good, "iat": now - 610, "exp": now - 10})),
    ]
    reject = [
        ("a token whose payload was changed (sub 'ex')", f"{head}.{changed}.{signature}",
         "Verify the signature: never decode with verify_signature off."),
        ("a token with its signature removed", f"{head}.{payload}.", ""),
        ("a token signed with another key", sign(good, secrets.token_bytes(64)), ""),
        ("an 'alg: none' token (no signature)", jwt.encode(good, None, algorithm="none"),
         "Pass algorithms=['HS256']: the server chooses the algorithm, never the token."),
        ("an 'alg: None' token", forge({"alg": "None", "typ": "JWT"}, good), ""),
        ("an 'alg: NONE' token", forge({"alg": "NONE", "typ": "JWT"}, good), ""),
        ("a token signed HS384 with the right key (only HS256 is allowed)",
         sign(good, alg="HS384"),
         "Pass algorithms=['HS256'], not the alg read from the token's header."),
        ("a token that expired 120 s ago", sign({**good, "iat": now - 720, "exp": now - 120}),
         f"Check exp, with leeway={LEEWAY} and no more."),
        ("a token for another audience ('payments-api')", sign({**good, "aud": "payments-api"}),
         f"Pass audience={AUDIENCE!r}."),
        ("a token from another issuer", sign({**good, "iss": "evil.example"}),
         f"Pass issuer={ISSUER!r}."),
        ("a token without exp (it would never expire)", sign(without("exp")),
         "PyJWT checks exp only when it is there: options={'require': ['exp', 'sub']}."),
        ("a token without sub (it names nobody)", sign(without("sub")),
         "Require sub too: options={'require': ['exp', 'sub']}."),
        ("a token whose exp is not a number", sign({**good, "exp": "tomorrow"}), ""),
        ("the string 'hello'", "hello", ""),
        ("the string 'a.b.c'", "a.b.c", ""),
    ]
    return accept, reject


@question("05.token_verifier", points=3, hints=[
    "PyJWT does the work: jwt.decode(token, key, ...) checks the signature, and raises"
    " a subclass of jwt.InvalidTokenError for anything wrong.",
    "Decide the algorithm on the server: algorithms=['HS256']. Name who the token must"
    " be for and from: audience=AUDIENCE, issuer=ISSUER; and leeway=30.",
    "PyJWT checks exp only if the token has one: add options={'require': ['exp', 'sub']}.",
])
def token_verifier(verify_token: Callable[[str, bytes], Any]) -> str:
    "Write a JWT verifier that rejects tampering, expiry, alg none and the wrong audience."
    key = secrets.token_bytes(64)
    accept, reject = _battery(key)
    for story, token in accept:
        try:
            claims = verify_token(token, key)
        except jwt.InvalidTokenError as exc:
            extra = {jwt.ExpiredSignatureError: f" Allow leeway={LEEWAY} for clock skew.",
                     jwt.InvalidAudienceError: f" Pass audience={AUDIENCE!r}.",
                     jwt.InvalidIssuerError: f" Pass issuer={ISSUER!r}."}.get(type(exc), "")
            raise CheckFailed(f"{story.capitalize()} should be accepted, but your function"
                              f" raised {type(exc).__name__}: {exc}.{extra}") from None
        if not isinstance(claims, dict) or claims.get("sub") != "alice":
            raise CheckFailed(f"For {story}, return the claims dict (with sub 'alice'), not"
                              f" {claims!r}.")
    for story, token, hint in reject:
        try:
            claims = verify_token(token, key)
        except jwt.InvalidTokenError:
            continue
        except Exception as exc:
            raise CheckFailed(
                f"For {story}, your function raised {type(exc).__name__}, not"
                " jwt.InvalidTokenError: a server that catches InvalidTokenError to answer"
                f" 401 would crash into a 500 here. {hint}".rstrip()) from None
        if claims is None or claims is False:
            raise CheckFailed(f"For {story}, your function returned {claims!r}. Raise"
                              " jwt.InvalidTokenError instead: a value can be mistaken for"
                              " a good token's claims, an exception cannot.")
        raise CheckFailed(f"Your function accepted {story}; it must raise"
                          f" jwt.InvalidTokenError. {hint}".rstrip())
    return (f"{len(accept)} good tokens accepted, {len(reject)} bad ones refused with"
            " InvalidTokenError.")


# ------------------------------------------------------------------ content negotiation
def _ask(url: str, accept: str | None) -> requests.Response:
    what = f"GET /posts/1 with Accept: {accept}" if accept else "GET /posts/1 with no Accept"
    return _call("GET", url, what=what, headers={"Accept": accept})


def _kind(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip()


@question("05.content_negotiation", points=2, hints=[
    "request.accept_mimetypes.best_match(OFFERED) picks the best of your formats for"
    " this client (it reads the q= values); it returns None when nothing fits.",
    "No Accept header at all means 'anything': request.accept_mimetypes is then empty"
    " (falsy), and you should answer JSON.",
    "Build the response, then response.vary.add('Accept') before returning it, on every"
    " path (406 included). Escape the text for HTML with html.escape.",
])
def content_negotiation(make_card_app: Callable[[], Any]) -> str:
    "Answer one URL as JSON, HTML or plain text, as the client's Accept header asks."
    expected = {"id": 1, "author": "ex", "text": "Fish & chips <3"}
    cases = [(None, "application/json"), ("*/*", "application/json"),
             ("application/json", "application/json"), ("text/html", "text/html"),
             ("text/plain", "text/plain"),
             ("text/html;q=0.4, text/plain;q=0.8", "text/plain"),
             ("text/plain;q=0.2, text/html", "text/html"),
             ("application/json;q=0, text/plain", "text/plain")]
    with probe.serve_factory(make_card_app, name="check-05-negotiation") as server:
        url = server.url + "/posts/1"
        for accept, kind in cases:
            r = _ask(url, accept)
            said = f"With Accept: {accept}" if accept else "With no Accept header"
            probe.expect_status(r, 200, f"GET /posts/1 {said.lower()}")
            if _kind(r) != kind:
                raise CheckFailed(f"{said}, the answer should be {kind}, but its Content-Type"
                                  f" was {r.headers.get('Content-Type')!r}.")
            if "accept" not in r.headers.get("Vary", "").lower():
                raise CheckFailed(f"{said}, the answer has no 'Vary: Accept' header: a cache"
                                  " could hand this format to a client that asked for another.")
            if kind == "application/json" and r.json() != expected:
                raise CheckFailed(f"{said}, the JSON should be {expected}, got {r.json()}.")
            if kind == "text/plain" and "ex: Fish & chips <3" not in r.text:
                raise CheckFailed("The text/plain answer should contain 'ex: Fish & chips <3',"
                                  f" got {r.text[:80]!r}.")
            if kind == "text/html" and ("Fish &amp; chips &lt;3" not in r.text or "<3" in r.text):
                raise CheckFailed("The HTML answer should contain the text escaped, 'Fish &amp;"
                                  f" chips &lt;3' (html.escape), got {r.text[:80]!r}.")
        refused = _ask(url, "image/png")
        probe.expect_status(refused, 406, "GET /posts/1 with Accept: image/png")
        body = probe.body(refused)
        if not (isinstance(body, dict) and body.get("error") == "not_acceptable"
                and set(body.get("available") or ()) >= {"application/json", "text/html",
                                                         "text/plain"}):
            raise CheckFailed("The 406 should say what is on offer, as JSON {'error':"
                              " 'not_acceptable', 'available': [the three types]}, not"
                              f" {probe.describe(refused)}.")
        if "accept" not in refused.headers.get("Vary", "").lower():
            raise CheckFailed("The 406 answer needs 'Vary: Accept' too.")
        missing = probe.call("GET", server.url + "/posts/2", what="GET /posts/2")
        probe.expect_status(missing, 404, "GET /posts/2 (there is no post 2)")
    return "One URL, three formats, 406 with a list, and Vary: Accept on every answer."


# ------------------------------------------------------------------ idempotent POST
class _Orders:
    """The side effect the learner's view must not repeat: numbered orders."""

    def __init__(self) -> None:
        self.placed: list[str] = []
        self.slow = 0.0
        self._lock = threading.Lock()

    def __call__(self, item: str) -> int:
        time.sleep(self.slow)
        with self._lock:
            self.placed.append(item)
            return 1000 + len(self.placed)


def _order(url: str, item: str, key: str | None) -> requests.Response:
    headers = {"Idempotency-Key": key} if key else {}
    what = f"POST /orders {{'item': {item!r}}}" + (f" with key {key!r}" if key else "")
    return _call("POST", url + "/orders", json={"item": item}, what=what, headers=headers)


def _at_once(send: Callable[[], requests.Response], *, copies: int) -> list[requests.Response]:
    """Run ``send`` in ``copies`` threads at once; re-raise the first failure here."""
    results: list[Any] = [None] * copies

    def run(i: int) -> None:
        try:
            results[i] = send()
        except BaseException as exc:  # reported by the caller, not lost in a thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(copies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


@question("05.idempotent_post", points=3, hints=[
    "keys is a dict that every server of the cluster shares. Keep each key's request"
    " and answer there; the app itself keeps nothing.",
    "A new key: call place_order(item), store {'request': body, 'answer': answer} under"
    " the key, answer 201. A known key with the same body: return the stored answer with"
    " the same status, without calling place_order. A different body: 422.",
    "Two copies may arrive at the same time. keys.setdefault(key, claim) is atomic: the"
    " request that gets its own claim back does the work; another copy sees the claim"
    " (answer still None) and answers 409.",
])
def idempotent_post(make_shop: Callable[[Callable[[str], int], dict], Any]) -> str:
    "Write a POST that honours an Idempotency-Key header, so that a retry is safe."
    from ..balancing.cluster import Cluster

    orders, keys = _Orders(), {}
    probe.serve_factory(lambda: make_shop(orders, keys), name="check-05-shop-dry").close()
    with Cluster(lambda: make_shop(orders, keys), size=2, balancer="round_robin",
                 name="check-05-shop") as shop:
        r = _order(shop.url, "tea", None)
        if r.status_code != 400 or orders.placed:
            raise CheckFailed("A POST without an Idempotency-Key should be refused with 400"
                              " (and place no order), so that no client can send a POST"
                              f" it cannot safely retry. Your app answered {probe.describe(r)}"
                              f" and placed {len(orders.placed)} order(s).")
        first = _order(shop.url, "tea", "key-1")
        probe.expect_status(first, 201, "The first POST /orders with a new key")
        answer = probe.expect_json(first, "POST /orders")
        if answer != {"order": 1001, "item": "tea"}:
            raise CheckFailed(f"The first order should answer {{'order': 1001, 'item': 'tea'}}"
                              f" (the number place_order returned), not {answer}.")
        for attempt in range(1, 4):
            retry = _order(shop.url, "tea", "key-1")
            if len(orders.placed) > 1:
                where = (f" The retry reached {retry.headers.get('X-Served-By')}, the first"
                         f" POST {first.headers.get('X-Served-By')}: keep the answers in"
                         " `keys`, which every server shares, not in one app's memory."
                         if retry.headers.get("X-Served-By") != first.headers.get("X-Served-By")
                         else "")
                raise CheckFailed(f"Retry {attempt} with the same key placed a second order."
                                  + where)
            if (retry.status_code, probe.body(retry)) != (201, answer):
                raise CheckFailed(f"Retry {attempt} should get the first answer again (201 with"
                                  f" {answer}), but got {probe.describe(retry)}.")
        second = _order(shop.url, "tea", "key-2")
        probe.expect_status(second, 201, "A POST with a new key (a second, intended order)")
        if len(orders.placed) != 2 or probe.body(second).get("order") != 1002:
            raise CheckFailed("A new key is a new order: place_order should run again.")
        reused = _order(shop.url, "cake", "key-1")
        if reused.status_code != 422 or len(orders.placed) != 2:
            raise CheckFailed("A known key sent with a different body is a client bug, not a"
                              " retry: answer 422 and place nothing. Your app answered"
                              f" {probe.describe(reused)}.")
        orders.slow = 0.5  # two copies of one POST, in flight at the same time
        both = _at_once(lambda: _order(shop.url, "jam", "key-3"), copies=2)
        if orders.placed.count("jam") != 1:
            raise CheckFailed("Two copies of one POST arrived at the same time and both placed"
                              " an order. Claim the key before doing the work:"
                              " keys.setdefault(key, claim) lets only one copy win.")
        if sorted(r.status_code for r in both)[0] != 201 or any(
                r.status_code not in (201, 409) for r in both):
            raise CheckFailed("Of two simultaneous copies, one should get 201 and the other"
                              " 201 (the stored answer) or 409 (still in progress), not"
                              f" {[r.status_code for r in both]}.")
    return "Retries replayed, on either server; one order per key, even for simultaneous copies."


# ------------------------------------------------------------------ deny-list
@question("05.deny_list", points=2, hints=[
    "Keep a dict {jti: exp}. revoke adds to it; is_revoked looks the jti up.",
    "An expired token is refused anyway, so its entry is useless: in is_revoked(jti,"
    " now), first delete every entry whose exp <= now. Iterate over a copy"
    " (list(self.revoked.items())): server threads call you concurrently.",
])
def deny_list(DenyList: Callable[[], Any]) -> str:
    "Write a deny-list that revokes tokens by jti and forgets them when they expire."
    from ..apps import social
    from ..serving.server import serve
    from ..state.tokens import TokenAuth, new_key

    deny = DenyList()
    deny.revoke("token-a", 100)
    deny.revoke("token-b", 200)
    if not (deny.is_revoked("token-a", 50) and deny.is_revoked("token-b", 50)):
        raise CheckFailed("After revoke('token-a', 100), is_revoked('token-a', 50) should be"
                          " True.")
    if deny.is_revoked("token-c", 50):
        raise CheckFailed("is_revoked should be False for a jti that was never revoked.")
    if len(deny) != 2:
        raise CheckFailed(f"Two tokens revoked, neither expired: len() should be 2, not"
                          f" {len(deny)}.")
    deny.is_revoked("token-b", 150)
    if len(deny) != 1:
        raise CheckFailed("At now=150, token-a (exp 100) has expired, so its entry is no"
                          f" longer needed: len() should be 1, not {len(deny)}. Drop expired"
                          " entries in is_revoked, or the list grows forever.")
    if not deny.is_revoked("token-b", 199):
        raise CheckFailed("token-b (exp 200) is still alive at now=199: it must stay revoked.")
    deny.is_revoked("anything", 250)
    if len(deny) != 0:
        raise CheckFailed(f"At now=250 every revoked token has expired: len() should be 0,"
                          f" not {len(deny)}.")

    clock, key, deny = ManualClock(time.time()), new_key(), DenyList()
    auth = lambda: TokenAuth(key, ttl=600, clock=clock, deny=deny)  # noqa: E731
    with serve(lambda: social.create_app(mode=auth(), kdf_iterations=1_000),
               name="check-05-deny") as server:
        def login() -> dict:
            r = _call("POST", server.url + "/login", json=ALICE, what="POST /login")
            probe.expect_status(r, 200, "POST /login")
            return {"Authorization": "Bearer " + r.json()["token"]}

        def me(headers: dict) -> requests.Response:
            return _call("GET", server.url + "/me", headers=headers, what="GET /me")

        phone, laptop = login(), login()
        probe.expect_status(_call("POST", server.url + "/logout", headers=phone,
                                  what="POST /logout"), 200, "POST /logout")
        r = me(phone)
        if r.status_code != 401 or probe.body(r).get("error") != "token_revoked":
            raise CheckFailed("After logout, the phone's token should be refused (401"
                              f" token_revoked), but GET /me answered {probe.describe(r)}.")
        probe.expect_status(me(laptop), 200, "The laptop's token (not logged out) on GET /me")
        if len(deny) != 1:
            raise CheckFailed(f"One token revoked: len(deny) should be 1, not {len(deny)}.")
        clock.advance(601)  # both tokens have now expired
        probe.expect_status(me(login()), 200, "A fresh login's token on GET /me")
        if len(deny) != 0:
            raise CheckFailed("Once the revoked token expired, the deny-list should forget it,"
                              f" but len(deny) is still {len(deny)}.")
    return "Logout really ends a token now; the list holds only live revocations."
