"""Chapter 05 questions: stateless HTTP.

* ``05.token_verifier``: a JWT verifier, run against a battery of real tokens made with
  PyJWT (and a few forged by hand), each with one defect;
* ``05.content_negotiation``: one URL answering JSON, HTML or text by ``Accept``;
* ``05.idempotent_post``: a ``POST`` that honours ``Idempotency-Key`` (the IETF
  draft's rules: after authentication, per user, 422 for a reused key, 409 while in
  flight, a failure releases the key), retried over live HTTP on a two-server cluster;
* ``05.deny_list``: a deny-list of revoked tokens, plugged into the social app in
  token mode.

Every check draws what the learner cannot see (subjects, keys, clock offsets, posts,
Accept headers, users, items) from the run's seed: see :mod:`labkit.checks.context`.
"""

from __future__ import annotations

import gc
import html
import json as jsonlib
import secrets
import string
import sys
import threading
import time
from typing import Any, Callable

import jwt
import requests

from ..checks import CheckFailed, context, probe, question
from ..state.sessions import ManualClock

AUDIENCE = "labkit-social-api"
ISSUER = "labkit-social"
LEEWAY = 30
ALICE = {"username": "alice", "password": "wonderland"}


def _word(rng: Any, length: int = 6) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(length))


def _call(method: str, url: str, *, what: str, headers: dict | None = None,
          json: Any = None, data: bytes | None = None) -> requests.Response:
    """``probe.call`` with extra request headers, and optionally a raw body."""
    with requests.Session() as session:
        session.headers.update(headers or {})
        if data is None:
            return probe.call(method, url, what=what, json=json, session=session)
        try:
            return session.request(method, url, data=data, timeout=probe.TIMEOUT)
        except requests.RequestException:
            raise CheckFailed(f"{what}: the server did not answer.") from None


# ------------------------------------------------------------------ token verifier
def _casing(rng: Any, word: str) -> str:
    """``word`` in a random mix of cases, never the all-lower-case original."""
    while True:
        mixed = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in word)
        if mixed != word.lower():
            return mixed


def _battery(key: bytes) -> tuple[list[tuple[str, str, dict]], list[tuple[str, str, str]]]:
    """(good tokens with their claims, bad tokens): each bad one names its one defect."""
    from ..state.tokens import forge

    rng = context().rng
    now = int(time.time())
    good = {"iss": ISSUER, "aud": AUDIENCE, "sub": _word(rng), "iat": now - rng.randrange(60),
            "exp": now + rng.randrange(120, 900), "jti": secrets.token_urlsafe(16)}
    if rng.random() < 0.5:
        good["role"] = rng.choice(["reader", "writer"])   # an extra claim: returned as is
    sign = lambda claims, k=key, alg="HS256": jwt.encode(claims, k, algorithm=alg)  # noqa: E731
    without = lambda name: {k: v for k, v in good.items() if k != name}  # noqa: E731
    token = sign(good)
    head, payload, signature = token.split(".")
    changed = forge({}, {**good, "sub": _word(rng)}).split(".")[1]
    late = rng.randrange(2, LEEWAY - 5)            # expired, but within the leeway
    too_late = rng.randrange(LEEWAY + 8, 4 * LEEWAY)
    skewed = {**good, "iat": now - 900, "exp": now - late}
    # The leeway probed at its edges on every run: a few seconds inside it must pass, a
    # couple beyond it must not (margins allow for the seconds the check itself takes).
    edge_exp = {**good, "iat": now - 900, "exp": now - (LEEWAY - 4)}
    edge_nbf = {**good, "nbf": now + LEEWAY - 4}
    accept = [("a good token", token, good),
              (f"a token that expired a few seconds ago (within the {LEEWAY} s leeway)",
               sign(skewed), skewed),
              (f"a token that expired a little less than {LEEWAY} s ago (within the leeway)",
               sign(edge_exp), edge_exp),
              (f"a token valid from (nbf) a little less than {LEEWAY} s from now (within the"
               " leeway)", sign(edge_nbf), edge_nbf)]
    other_auds = [AUDIENCE + "-admin", "payments-api", AUDIENCE[:-4], AUDIENCE.upper()]
    other_isss = [ISSUER + ".evil", "evil.example", ISSUER[:-2], ISSUER.upper()]
    rng.shuffle(other_auds)
    rng.shuffle(other_isss)
    sig_hint = "Verify the signature: never decode with verify_signature off."
    alg_hint = "Pass algorithms=['HS256']: the server chooses the algorithm, never the token."
    none_alg = _casing(rng, "none")
    reject = [
        ("a token whose payload was changed", f"{head}.{changed}.{signature}", sig_hint),
        ("a token with its signature removed", f"{head}.{payload}.", sig_hint),
        ("a token signed with another key", sign(good, secrets.token_bytes(64)), sig_hint),
        ("an 'alg: none' token (no signature)", jwt.encode(good, None, algorithm="none"),
         alg_hint),
        ("an 'alg: none' token in another casing", forge({"alg": none_alg, "typ": "JWT"}, good),
         alg_hint),
        ("an 'alg: none' token that kept a signature",
         forge({"alg": "none", "typ": "JWT"}, good, key=key), alg_hint),
        *[("a token signed with the right key but another HMAC algorithm",
           sign(good, alg=alg), alg_hint) for alg in ("HS384", "HS512")],
        ("a token whose header claims RS256 but which is signed with the HMAC key",
         forge({"alg": "RS256", "typ": "JWT"}, good, key=key), alg_hint),
        (f"a token that expired well beyond the {LEEWAY} s leeway",
         sign({**good, "iat": now - 900, "exp": now - too_late}),
         f"Check exp, with leeway={LEEWAY} and no more."),
        (f"a token that expired just over {LEEWAY} s ago (beyond the leeway)",
         sign({**good, "iat": now - 900, "exp": now - (LEEWAY + 2)}),
         f"Check exp, with leeway={LEEWAY} exactly: not more."),
        (f"a token valid from (nbf) just over {LEEWAY} s from now (beyond the leeway)",
         sign({**good, "nbf": now + LEEWAY + 4}),
         f"PyJWT checks nbf with the same leeway={LEEWAY}: not more."),
        *[("a token for another audience", sign({**good, "aud": aud}),
           f"Pass audience={AUDIENCE!r}: the audience must match exactly.")
          for aud in other_auds],
        ("a token for a list of other audiences",
         sign({**good, "aud": [other_auds[0], "payments-api"]}), f"Pass audience={AUDIENCE!r}."),
        ("a token without aud", sign(without("aud")),
         f"Pass audience={AUDIENCE!r}: a token that names no audience is for nobody here."),
        *[("a token from another issuer", sign({**good, "iss": iss}),
           f"Pass issuer={ISSUER!r}: the issuer must match exactly.") for iss in other_isss],
        ("a token without iss", sign(without("iss")), f"Pass issuer={ISSUER!r}."),
        ("a token without exp (it would never expire)", sign(without("exp")),
         "PyJWT checks exp only when it is there: options={'require': ['exp', 'sub']}."),
        ("a token without sub (it names nobody)", sign(without("sub")),
         "Require sub too: options={'require': ['exp', 'sub']}."),
        ("a token whose exp is not a number", sign({**good, "exp": "tomorrow"}), ""),
        ("a string that is not a token", rng.choice(["hello", "a.b.c", "..", "a.b",
                                                     "Bearer " + token[:20]]), ""),
        ("an empty string", "", ""),
        ("a token whose parts are not base64", f"{head}.{payload}!!.{signature}", ""),
        ("a token whose payload is a JSON list",
         forge({"alg": "HS256", "typ": "JWT"}, [good], key=key), ""),  # type: ignore[arg-type]
    ]
    if context().hidden:
        reject.append(("a token signed with a key that differs in one byte",
                       sign(good, key[:-1] + bytes([key[-1] ^ 1])), sig_hint))
    rng.shuffle(reject)
    return accept, reject


@question("05.token_verifier", points=3, hints=[
    "PyJWT does the work: jwt.decode(token, key, ...) checks the signature, and raises"
    " a subclass of jwt.InvalidTokenError for anything wrong.",
    "Decide the algorithm on the server: algorithms=['HS256']. Name who the token must"
    " be for and from: audience=AUDIENCE, issuer=ISSUER; and leeway=30.",
    "PyJWT checks exp only if the token has one: add options={'require': ['exp', 'sub']}"
    " (and iss, aud if you like: they are checked because you pass them).",
])
def token_verifier(verify_token: Callable[[str, bytes], Any]) -> str:
    "Write a JWT verifier that rejects tampering, expiry, alg none and the wrong audience."
    key = secrets.token_bytes(64)
    accept, reject = _battery(key)
    for story, token, claims_in in accept:
        try:
            claims = verify_token(token, key)
        except jwt.InvalidTokenError as exc:
            extra = {jwt.ExpiredSignatureError: f" Allow leeway={LEEWAY} for clock skew.",
                     jwt.InvalidAudienceError: f" Pass audience={AUDIENCE!r}.",
                     jwt.InvalidIssuerError: f" Pass issuer={ISSUER!r}."}.get(type(exc), "")
            raise CheckFailed(f"{story.capitalize()} should be accepted, but your function"
                              f" raised {type(exc).__name__}.{extra}") from None
        if claims != claims_in:
            raise CheckFailed(f"For {story}, return the token's claims, all of them, as the"
                              f" dict jwt.decode gives (not {type(claims).__name__}"
                              f"{' with other contents' if isinstance(claims, dict) else ''}).")
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
    return ("Good tokens accepted with their claims; every token with one defect refused"
            " with InvalidTokenError.")


# ------------------------------------------------------------------ content negotiation
OFFERED = ("application/json", "text/html", "text/plain")


def _quality(ranges: list[tuple[str, float]], offered: str) -> float:
    """RFC 9110 12.5.1: the quality of ``offered`` is that of the most specific range."""
    kind, sub = offered.split("/")
    best, q = -1, 0.0
    for media, quality in ranges:
        mk, _, ms = media.lower().partition("/")
        rank = 2 if (mk, ms) == (kind, sub) else 1 if (mk == kind and ms == "*") else (
            0 if (mk, ms) == ("*", "*") else -1)
        if rank > best:
            best, q = rank, quality
    return q if best >= 0 else 0.0


def _random_accept(rng: Any) -> tuple[str, set[str]]:
    """A random Accept header, and the formats a correct server may answer with."""
    while True:
        pool = ["application/json", "text/html", "text/plain", "text/*", "application/*",
                "*/*", "image/png", "application/xml"]
        ranges = []
        for media in rng.sample(pool, rng.randrange(1, 5)):
            q = rng.choice([1.0, 1.0, 0.9, 0.8, 0.5, 0.3, 0.1, 0.0])
            ranges.append((media, q))
        qualities = {kind: _quality(ranges, kind) for kind in OFFERED}
        top = max(qualities.values())
        if top > 0:
            break

    def show(media: str, q: float) -> str:
        media = media.upper() if rng.random() < 0.15 else media
        if q == 1.0 and rng.random() < 0.7:
            return media
        return f"{media}{rng.choice([';', '; '])}q={q:g}" if rng.random() < 0.6 else (
            f"{media};q={q:.2f}")

    header = rng.choice([", ", ","]).join(show(m, q) for m, q in ranges)
    return header, {kind for kind, q in qualities.items() if q == top}


def _kind(response: requests.Response) -> str:
    return response.headers.get("Content-Type", "").split(";")[0].strip().lower()


def _random_posts(rng: Any) -> dict[int, dict]:
    hostile = ["<script>alert(1)</script>", "Fish & chips <3", "a <b>bold</b> claim",
               "\"quoted\" & 'single'", "</article><img src=x onerror=alert(1)>"]
    posts = {}
    for i in range(3):
        post_id = rng.randrange(2, 999)
        author = rng.choice([f"{_word(rng, 3)}<i>", f"{_word(rng)} & co",
                             f"{_word(rng)} \"{_word(rng, 4)}\" {_word(rng)}",
                             f"{_word(rng, 1).upper()}'{_word(rng)}"] + (
            [_word(rng)] if i else []))          # the first author always needs escaping
        if i == 0:   # and has a quote: a value may sit in an attribute (title="...")
            author += rng.choice(['"', "'"]) + _word(rng, 2)
        text = f"{_word(rng)} {rng.choice(hostile)} {_word(rng)}"
        posts[post_id] = {"id": post_id, "author": author, "text": text}
    return posts


def _escaped_forms(text: str) -> set[str]:
    """Safe spellings of ``text`` in HTML: quotes escaped too (it may be an attribute)."""
    forms = {html.escape(text, quote=True)}
    try:
        import markupsafe

        forms.add(str(markupsafe.escape(text)))
    except ImportError:  # pragma: no cover - Flask depends on markupsafe
        pass
    return forms


def _check_card(r: requests.Response, post: dict, kinds: set[str], said: str) -> None:
    probe.expect_status(r, 200, f"GET /posts/{post['id']} {said}")
    kind = _kind(r)
    if kind not in kinds:
        wanted = " or ".join(sorted(kinds))
        raise CheckFailed(f"GET /posts/<id> {said} should be answered as {wanted} (the"
                          " client's most preferred format, by its q values), but its"
                          f" Content-Type was {r.headers.get('Content-Type')!r}.")
    if "accept" not in r.headers.get("Vary", "").lower():
        raise CheckFailed(f"The answer {said} has no 'Vary: Accept' header: a cache could hand"
                          " this format to a client that asked for another.")
    if kind == "application/json":
        if probe.body(r) != post:
            raise CheckFailed(f"The JSON answer {said} should be the post itself, with its"
                              " id, author and text, and nothing changed.")
    elif kind == "text/plain":
        if f"{post['author']}: {post['text']}" not in r.text:
            raise CheckFailed(f"The text/plain answer {said} should contain the line"
                              " 'author: text', unescaped (plain text is not HTML).")
    else:
        for field in ("author", "text"):
            raw = post[field]
            if raw != html.escape(raw, quote=False) and raw in r.text:
                raise CheckFailed(
                    f"The HTML answer {said} contains the post's {field} unescaped: a post"
                    " with '<script>' would run in the reader's browser. Escape every"
                    " value you put in HTML (html.escape).")
            if not any(form in r.text for form in _escaped_forms(raw)):
                if ('"' in raw or "'" in raw) and html.escape(raw, quote=False) in r.text:
                    raise CheckFailed(
                        f"The HTML answer {said} leaves the quotes in the post's {field}"
                        " unescaped: inside an attribute (title=\"...\") a quote ends it"
                        " and the rest runs as markup. Escape quotes too: html.escape(value)"
                        " with its default quote=True.")
                raise CheckFailed(f"The HTML answer {said} should contain the post's {field},"
                                  " escaped (html.escape): it was missing or escaped twice.")


@question("05.content_negotiation", points=2, hints=[
    "request.accept_mimetypes.best_match(OFFERED) picks the best of your formats for"
    " this client (it reads the q= values); it returns None when nothing fits.",
    "No Accept header at all means 'anything': request.accept_mimetypes is then empty"
    " (falsy), and you should answer JSON.",
    "Build the response, then response.vary.add('Accept') before returning it, on every"
    " path (404 and 406 included). Escape every value for HTML with html.escape.",
])
def content_negotiation(make_card_app: Callable[[dict], Any]) -> str:
    "Answer one URL as JSON, HTML or plain text, as the client's Accept header asks."
    probe.expect_factory(make_card_app, example="make_card_app")
    rng = context().rng
    posts = _random_posts(rng)
    ids = sorted(posts)
    fixed = [(None, {"application/json"}, "with no Accept header"),
             ("application/json", {"application/json"}, "with Accept: application/json"),
             ("text/html", {"text/html"}, "with Accept: text/html"),
             ("text/plain", {"text/plain"}, "with Accept: text/plain"),
             ("text/html;q=0.4, text/plain;q=0.8", {"text/plain"},
              "when the client prefers text/plain by its q values"),
             ("application/json;q=0, text/*;q=0.2", {"text/html", "text/plain"},
              "when JSON has q=0 ('not this one')"),
             ("text/*, text/html;q=0", {"text/plain"},
              "when text/* is wanted but text/html has q=0 (the more specific range wins)")]
    # Media types are case-insensitive (RFC 9110 section 8.3.1): odd casings on every run.
    json_t, html_t, text_t = (_casing(rng, t) for t in OFFERED)
    fixed += [(html_t, {"text/html"}, f"with Accept: {html_t} (media types ignore case)"),
              (text_t, {"text/plain"}, f"with Accept: {text_t} (media types ignore case)"),
              (f"text/html;q=0.2, {json_t};q=0.9", {"application/json"},
               f"with Accept: text/html;q=0.2, {json_t};q=0.9 (media types ignore case)")]
    randomised = []
    for _ in range(10 if context().hidden else 6):
        header, kinds = _random_accept(rng)
        randomised.append((header, kinds, f"with Accept: {header}"))
    with probe.serve_factory(lambda: make_card_app(posts), name="check-05-negotiation") as server:
        first = next(iter(posts))                     # its author needs escaping
        for accept, kinds, said in fixed + randomised:
            post = posts[first] if accept and accept.lower() == "text/html" else posts[
                rng.choice(ids)]
            r = _call("GET", f"{server.url}/posts/{post['id']}", headers={"Accept": accept},
                      what=f"GET /posts/{post['id']} {said}")
            _check_card(r, post, kinds, said)
        refused_with = rng.choice(["image/png", "application/xml, image/*",
                                   "text/csv;q=0.9, application/json;q=0"])
        post = posts[rng.choice(ids)]
        refused = _call("GET", f"{server.url}/posts/{post['id']}",
                        headers={"Accept": refused_with},
                        what=f"GET /posts/{post['id']} with Accept: {refused_with}")
        probe.expect_status(refused, 406, f"GET /posts/<id> with Accept: {refused_with}"
                            " (nothing on offer fits)")
        body = probe.body(refused)
        if not (isinstance(body, dict) and body.get("error") == "not_acceptable"
                and isinstance(body.get("available"), list)
                and sorted(body["available"]) == sorted(OFFERED)):
            raise CheckFailed("The 406 should say what is on offer, as JSON {'error':"
                              " 'not_acceptable', 'available': [the three types]}, not"
                              f" {probe.describe(refused)}.")
        if not probe.json_kind(refused):
            raise CheckFailed("The 406 should be JSON (Content-Type: application/json).")
        if "accept" not in refused.headers.get("Vary", "").lower():
            raise CheckFailed("The 406 answer needs 'Vary: Accept' too.")
        unknown = rng.choice([i for i in range(1, 1000) if i not in posts])
        for accept in (None, rng.choice(["text/html", "text/plain"])):
            missing = _call("GET", f"{server.url}/posts/{unknown}", headers={"Accept": accept},
                            what=f"GET /posts/{unknown}")
            probe.expect_status(missing, 404, "GET /posts/<id> of a post that does not exist")
            if "accept" not in missing.headers.get("Vary", "").lower():
                raise CheckFailed("The 404 answer needs 'Vary: Accept' too (every answer of"
                                  " this URL depends on Accept).")
    return ("The preferred format by the q values, escaped HTML, 406 with a list, 404 for a"
            " missing post, and Vary: Accept on every answer.")


# ------------------------------------------------------------------ idempotent POST
class OrderFailed(Exception):
    """What ``place_order`` raises when the warehouse cannot take an order right now."""


class _Orders:
    """The side effect the learner's view must not repeat: numbered orders.

    ``fail[item] = n`` makes the next n orders of ``item`` raise OrderFailed;
    ``hold = item`` makes an order of that item wait for ``release`` (so the check
    knows it is in flight); ``slow`` adds latency to every order.
    """

    def __init__(self, base: int) -> None:
        self.placed: list[tuple[str, str]] = []
        self.base = base
        self.slow = 0.0
        self.fail: dict[str, int] = {}
        self.hold: str | None = None
        self.entered, self.release = threading.Event(), threading.Event()
        self._lock = threading.Lock()

    def __call__(self, user: str, item: str) -> int:
        with self._lock:
            if self.fail.get(item, 0) > 0:
                self.fail[item] -= 1
                raise OrderFailed(f"the warehouse cannot take {item!r} right now")
        if self.hold is not None and item == self.hold and not self.entered.is_set():
            self.entered.set()             # only the first call of that item waits
            self.release.wait(timeout=8)
        time.sleep(self.slow)
        with self._lock:
            self.placed.append((user, item))
            return self.base + len(self.placed)

    def count(self, user: str | None = None, item: str | None = None) -> int:
        with self._lock:
            return sum(1 for u, i in self.placed
                       if user in (None, u) and item in (None, i))


class _SlowKeys(dict):
    """The shared ``keys``, as a store over a network would behave.

    Lookups take a little time. During a race round, the first two lookups also wait
    for each other (up to half a second), so that a check-then-set (``if key in keys:
    ... keys[key] = ...``) from two simultaneous copies really interleaves, whatever
    the timing of the machine. ``setdefault`` is one atomic step, as in Redis (SET NX).
    """

    PAUSE = 0.01

    def __init__(self) -> None:
        super().__init__()
        self.rendezvous: threading.Barrier | None = None

    def _lookup(self) -> None:
        time.sleep(self.PAUSE)
        meet = self.rendezvous
        if meet is not None:
            try:
                meet.wait(timeout=0.5)
            except threading.BrokenBarrierError:
                pass

    # Each lookup reads first, then takes its time to come back: what it returns may be
    # stale by the time the caller acts on it, as over a network.
    def get(self, key: Any, default: Any = None) -> Any:
        value = super().get(key, default)
        self._lookup()
        return value

    def __contains__(self, key: Any) -> bool:
        found = super().__contains__(key)
        self._lookup()
        return found

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        self._lookup()
        return value


class _Shop:
    """Sends orders to the learner's shop on the cluster and names what went wrong."""

    def __init__(self, url: str, orders: _Orders) -> None:
        self.url, self.orders = url, orders

    def post(self, token: str | None, key: str | None, body: Any, *, raw: bytes | None = None,
             authorization: str | None = None) -> requests.Response:
        headers = {}
        if authorization is not None:              # a header spelled by the check itself
            headers["Authorization"] = authorization
        elif token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if key is not None:
            headers["Idempotency-Key"] = key
        if raw is not None:
            headers["Content-Type"] = "application/json"
        return _call("POST", self.url + "/orders", json=body, data=raw, headers=headers,
                     what="POST /orders")

    def created(self, r: requests.Response, item: str, what: str) -> dict:
        if r.status_code != 201:
            raise CheckFailed(f"{what} should answer 201 (the order was placed), but your app"
                              f" answered {probe.describe(r)}.")
        answer = probe.expect_json(r, what)
        with self.orders._lock:
            numbers = {self.orders.base + i for i in range(1, len(self.orders.placed) + 1)}
        if not (isinstance(answer, dict) and answer.get("item") == item
                and answer.get("order") in numbers):
            raise CheckFailed(f"{what} should answer {{'order': <the number place_order"
                              f" returned>, 'item': <the item>}}, not {probe.describe(r)}.")
        return answer


def _expect_error(r: requests.Response, status: int | tuple, error: str | None, what: str,
                  why: str) -> None:
    allowed = status if isinstance(status, tuple) else (status,)
    if r.status_code not in allowed:
        wanted = " or ".join(map(str, allowed))
        raise CheckFailed(f"{what} should answer {wanted}: {why} Your app answered"
                          f" {probe.describe(r)}.")
    body = probe.body(r)
    if error is not None and not (isinstance(body, dict) and body.get("error") == error):
        raise CheckFailed(f"{what} should answer {status} with the JSON {{'error': {error!r}}},"
                          f" not {probe.describe(r)}.")


@question("05.idempotent_post", points=3, hints=[
    "Order matters: authenticate first (401, and nothing stored), then demand the key"
    " (400), then check the body (400 or 422, nothing stored). Only then claim the key."
    " keys is shared by every server: keep each claim there, under (user, key).",
    "Claim with keys.setdefault((user, key), claim): atomic, so exactly one copy gets its"
    " own claim back and does the work. Another copy sees the claim: a different body"
    " is 422, no answer yet is 409, a stored answer is replayed as is (201).",
    "Wrap place_order in try/except: on failure, del keys[(user, key)] (the key is free"
    " again, a retry runs) and answer 503 {'error': 'order_failed'}. On success, put the"
    " answer in the claim and return it with 201.",
])
def idempotent_post(make_shop: Callable[..., Any]) -> str:
    "Write a POST that honours an Idempotency-Key header, so that a retry is safe."
    from ..balancing.cluster import Cluster

    probe.expect_factory(make_shop, example="make_shop")
    rng = context().rng
    orders, keys = _Orders(base=rng.randrange(100, 9000)), _SlowKeys()
    users = [_word(rng, 5) + str(i) for i in range(2)]
    accounts = {secrets.token_urlsafe(12): user for user in users}
    token = {user: t for t, user in accounts.items()}
    alice, bob = users
    new_key = lambda: secrets.token_urlsafe(rng.randrange(8, 20))  # noqa: E731
    item = lambda: _word(rng, 5)  # noqa: E731

    probe.serve_factory(lambda: make_shop(orders, keys, accounts),
                        name="check-05-shop-dry").close()
    with Cluster(lambda: make_shop(orders, keys, accounts), size=2, balancer="round_robin",
                 name="check-05-shop") as cluster:
        shop = _Shop(cluster.url, orders)
        k1, tea = new_key(), item()

        # Authentication comes first; a refused request is never stored.
        _expect_error(shop.post(None, k1, {"item": tea}), 401, None,
                      "A POST without Authorization",
                      "authenticate before anything else, and place nothing.")
        _expect_error(shop.post("not-a-token-" + _word(rng), k1, {"item": tea}), 401, None,
                      "A POST with an unknown token", "it comes from nobody we know.")
        real = token[alice]
        for story, fake in (("a valid token with a character appended", real + "x"),
                            ("a valid token with a character put in front", "x" + real),
                            ("a valid token in another case", real.swapcase()),
                            ("a part of a valid token", real[:-3])):
            _expect_error(shop.post(fake, k1, {"item": tea}), 401, None,
                          f"A POST whose Authorization carries {story}",
                          "tokens match exactly, or not at all.")
        for story, header in (("the bare token, without the Bearer scheme", real),
                              ("the token under another scheme (Basic)", f"Basic {real}"),
                              ("the token under another scheme (Token)", f"Token {real}"),
                              ("the Bearer scheme glued to the token", f"Bearer{real}")):
            _expect_error(shop.post(None, k1, {"item": tea}, authorization=header), 401, None,
                          f"A POST whose Authorization carries {story}",
                          "only 'Authorization: Bearer <token>' authenticates.")
        _expect_error(shop.post(None, None, {"item": tea}), 401, None,
                      "A POST with neither a token nor a key",
                      "authentication comes first, before the key is even looked at.")
        if orders.count():
            raise CheckFailed("A request that was refused (401) placed an order.")
        _expect_error(shop.post(token[alice], None, {"item": tea}), 400,
                      "idempotency_key_required", "An authenticated POST without an"
                      " Idempotency-Key", "a POST that cannot be safely retried is refused.")
        for empty in ("",):   # (requests refuses to send a blank-only header value)
            _expect_error(shop.post(token[alice], empty, {"item": tea}), 400,
                          "idempotency_key_required", "An authenticated POST with an empty"
                          " Idempotency-Key", "an empty key is no key: every client that"
                          " sends one would share it.")
        if orders.count():
            raise CheckFailed("A POST with an empty Idempotency-Key placed an order.")
        first = shop.post(token[alice], k1, {"item": tea})
        answer = shop.created(first, tea, "The first POST with a key that a refused (401)"
                              " request had used")
        if orders.count() != 1:
            raise CheckFailed(f"One accepted POST should place one order, but it placed"
                              f" {orders.count()}.")

        # Retries replay the stored answer, on either server.
        for attempt in range(1, 4):
            raw = (jsonlib.dumps({"item": tea}, indent=1).encode() if attempt == 2
                   else None)  # the same JSON value, other bytes
            retry = shop.post(token[alice], k1, {"item": tea}, raw=raw)
            if orders.count() > 1:
                raise CheckFailed(
                    f"Retry {attempt} with the same key placed a second order. Keep every"
                    " key's claim and answer in `keys`, which every server shares, not in one"
                    " app's memory; and compare bodies as JSON values, not as bytes.")
            if retry.status_code != 201 or probe.body(retry) != answer:
                raise CheckFailed(f"Retry {attempt} should get the first answer again (the"
                                  " same status and the same JSON), but got"
                                  f" {probe.describe(retry)}.")
        _expect_error(shop.post(None, k1, {"item": tea}), 401, None,
                      "A retry of a stored key without Authorization",
                      "a stored answer is only for its own user; never replay it to a"
                      " stranger.")

        # Keys belong to their user.
        bob_first = shop.post(token[bob], k1, {"item": tea})
        bob_answer = shop.created(bob_first, tea, "Another user's POST with the same key"
                                  " and body")
        if orders.count(user=bob) != 1 or bob_answer.get("order") == answer.get("order"):
            raise CheckFailed("Another user who happened to pick the same Idempotency-Key got"
                              " the first user's stored answer: scope keys to the user"
                              " (keys[(user, key)]).")
        new_key_item, k_second = item(), new_key()
        second = shop.post(token[alice], k_second, {"item": new_key_item})
        shop.created(second, new_key_item, "A POST with a new key (a second, intended order)")
        bob_item = item()
        bob_other = shop.post(token[bob], k_second, {"item": bob_item})
        if bob_other.status_code in (409, 422):
            raise CheckFailed("A user's new key was refused because another user had used the"
                              " same key with another body: scope keys to the user.")
        shop.created(bob_other, bob_item, "A user's POST with a key only another user had used")
        before = orders.count()

        # Same key, different body: a client bug, not a retry. The whole body counts.
        extra_field = _word(rng, 4)
        for story, other in (("a different item", {"item": item()}),
                             ("the same item and one more field",
                              {"item": tea, extra_field: rng.choice([1, True, "x"])}),
                             ("the same item in a list field", {"item": tea, "items": [tea]})):
            reused = shop.post(token[alice], k1, other)
            _expect_error(reused, 422, "idempotency_key_reused",
                          f"A known key sent with a different body ({story})",
                          "it is a client bug, not a retry, and nothing is placed: compare"
                          " the whole JSON body, every field, not only the item.")
            if orders.count() != before:
                raise CheckFailed("A known key with a different body placed an order.")

        # A body that is refused does not use the key up.
        k2 = new_key()
        malformed = [({"item": rng.randrange(9)}, "a number as item"),
                     ({"item": rng.random() < 0.5}, "a boolean as item"),
                     ({"item": None}, "null as item"), ({"item": [tea]}, "a list as item"),
                     ({"item": {"name": tea}}, "an object as item"), ({}, "no item"),
                     ([tea], "a list, not an object"), ({"items": tea}, "no item"),
                     (tea, "a bare string")]
        rng.shuffle(malformed)
        for body_, story in malformed:
            bad = shop.post(token[alice], k2, body_)
            _expect_error(bad, (400, 422), None, f"A POST whose body is not {{'item': <text>}}"
                          f" ({story})", "refuse a malformed body: item must be a string.")
        bad = shop.post(token[alice], k2, None, raw=b'{"item": ')
        _expect_error(bad, (400, 422), None, "A POST whose body is not JSON at all",
                      "refuse a malformed body.")
        if orders.count() != before:
            raise CheckFailed("A POST with a malformed body placed an order.")
        good_item = item()
        good = shop.post(token[alice], k2, {"item": good_item})
        if good.status_code != 201:
            raise CheckFailed("After a malformed body was refused, the same key with a good"
                              f" body got {probe.describe(good)}: only requests that ran may"
                              " be stored; a refused one must leave the key free.")

        # A failure releases the key, twice in a row.
        k3, jam = new_key(), item()
        orders.fail[jam] = 2
        for attempt in ("The first POST", "Its retry"):
            failed = shop.post(token[alice], k3, {"item": jam})
            _expect_error(failed, 503, "order_failed",
                          f"{attempt} of an order whose place_order raised an exception",
                          "the order was not placed.")
        done = shop.post(token[alice], k3, {"item": jam})
        if done.status_code != 201 or orders.count(item=jam) != 1:
            raise CheckFailed(
                "After place_order failed twice, a third try with the same key got"
                f" {probe.describe(done)}: a failed request must release its key (delete"
                " the claim), so that a retry runs again.")

        # A copy that arrives while the first is still in flight gets 409.
        k4, cake = new_key(), item()
        orders.hold = cake
        pending: list[Any] = []
        worker = threading.Thread(target=lambda: pending.append(
            _safe(lambda: shop.post(token[alice], k4, {"item": cake}))), daemon=True)
        worker.start()
        try:
            if not orders.entered.wait(timeout=5):
                raise CheckFailed("The first POST of an order never reached place_order.")
            copies: list[Any] = []
            sender = threading.Thread(target=lambda: copies.append(
                _safe(lambda: shop.post(token[alice], k4, {"item": cake}))), daemon=True)
            sender.start()
            sender.join(timeout=3)
            if not copies:
                raise CheckFailed(
                    "A copy of a POST that is still in progress should answer 409 at once,"
                    " but your app kept it waiting for the first copy. Answer 409; the"
                    " client retries later.")
            copy = copies[0]
            if isinstance(copy, BaseException):
                raise copy
            if copy.status_code == 201 and orders.count(item=cake) > 0:
                raise CheckFailed(
                    "A copy that arrived while the first was still in progress placed a"
                    " second order. Claim the key before doing the work, in one atomic step"
                    " on the shared dict: keys.setdefault((user, key), claim).")
            _expect_error(copy, 409, None, "A copy of a POST that is still in progress",
                          "the first copy has not finished; the client should retry later.")
        finally:
            orders.release.set()
            worker.join(timeout=8)
        first_copy = pending[0] if pending else None
        if isinstance(first_copy, BaseException):
            raise first_copy
        if first_copy is None or first_copy.status_code != 201:
            raise CheckFailed("The first of two copies should answer 201 once its order is"
                              " placed.")
        replay = shop.post(token[alice], k4, {"item": cake})
        if replay.status_code != 201 or probe.body(replay) != probe.body(first_copy):
            raise CheckFailed("Once the first copy finished, a retry should get its answer,"
                              f" but got {probe.describe(replay)}.")

        # Many copies at the same moment, on both servers: still one order each time.
        orders.slow = 0.05
        for round_ in range(3):
            k, pie = new_key(), item()
            keys.rendezvous = threading.Barrier(2)
            try:
                results = probe.at_once(lambda: shop.post(token[alice], k, {"item": pie}),
                                        copies=6)
            finally:
                keys.rendezvous = None
            placed = orders.count(item=pie)
            if placed != 1:
                raise CheckFailed(
                    f"{len(results)} copies of one POST arrived at the same time and"
                    f" {placed} orders were placed. Claim the key before doing the work, in"
                    " one atomic step on the shared dict: keys.setdefault((user, key), claim)."
                    " A lock in your app is not shared by the other server.")
            statuses = sorted(r.status_code for r in results)
            bodies = {jsonlib.dumps(probe.body(r), sort_keys=True)
                      for r in results if r.status_code == 201}
            if statuses[0] != 201 or set(statuses) - {201, 409} or len(bodies) != 1:
                raise CheckFailed(
                    "Of simultaneous copies, the one that ran answers 201, the others 409"
                    " (still in progress) or the same 201 again, but your app answered"
                    f" {statuses}.")
    return ("Authenticated first, keys per user, retries replayed on either server, 422 for"
            " a reused key, 409 in flight, a failure frees its key; one order per key.")


def _safe(send: Callable[[], Any]) -> Any:
    try:
        return send()
    except BaseException as exc:  # reported by the check's thread
        return exc


# ------------------------------------------------------------------ deny-list
def _deny_under_load(DenyList: Callable[[], Any], rng: Any) -> None:
    """Revoke and look up from several threads at once; nothing may be lost or crash.

    Two threads keep calling is_revoked (each call purges what expired) while two others
    revoke tokens: long-lived ones, which must survive, and already expired ones, which
    the next purge drops (so both purging threads find the same stale entries).
    """
    deny = DenyList()
    base = rng.randrange(10_000, 100_000)
    now, far = base + 1_000, base + 100_000
    for i in range(2_000):       # a long list of live tokens: every purge walks it
        deny.revoke(f"live-{i}", far + i)
    fresh = [f"new-{_word(rng, 8)}-{i}" for i in range(200)]
    done = threading.Event()
    crashes: list[BaseException] = []

    def purger() -> None:
        deadline = time.monotonic() + 1.0
        while not done.is_set() and time.monotonic() < deadline:
            deny.is_revoked("x", now)

    def revoker(part: list[str]) -> Callable[[], None]:
        def run() -> None:
            for jti in part:
                deny.revoke(jti, far)
                deny.revoke("stale-" + jti, base)     # expired already: purged next
                time.sleep(0)                          # let the purgers run in between
        return run

    def revokers() -> None:
        try:
            probe.together(revoker(fresh[::2]), revoker(fresh[1::2]), timeout=10)
        finally:
            done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)   # switch threads often: races show up in a short run
    collecting = gc.isenabled()
    gc.collect()
    gc.disable()   # a finalizer run by the GC could switch threads inside list(d.items())
    try:
        probe.together(purger, purger, revokers, timeout=10)
    except CheckFailed:
        raise
    except Exception as exc:
        crashes.append(exc)
    finally:
        sys.setswitchinterval(old)
        if collecting:
            gc.enable()
    if crashes:
        raise CheckFailed(
            f"With server threads calling revoke and is_revoked at the same time, your"
            f" deny-list raised {type(crashes[0]).__name__}: {crashes[0]}. Never change the"
            " dict while iterating over it: iterate over a copy (list(...)), and delete with"
            " pop(jti, None), which cannot fail if another thread deleted it first.")
    lost = [jti for jti in fresh + [f"live-{i}" for i in range(0, 2_000, 7)]
            if not deny.is_revoked(jti, now)]
    if lost:
        raise CheckFailed(
            f"{len(lost)} token(s) revoked while another thread was purging came back to"
            " life: the purge rebuilt the dict from a snapshot and dropped what was added"
            " meanwhile. Delete expired entries from the dict itself instead of replacing it.")


@question("05.deny_list", points=2, hints=[
    "Keep a dict {jti: exp}. revoke adds to it; is_revoked looks the jti up, exactly"
    " (no case folding, no prefixes).",
    "An expired token is refused anyway, so its entry is useless: in is_revoked(jti,"
    " now), first delete every entry whose exp <= now. Iterate over a copy"
    " (list(self.revoked.items())) and delete with pop(jti, None): server threads call"
    " you concurrently.",
])
def deny_list(DenyList: Callable[[], Any]) -> str:
    "Write a deny-list that revokes tokens by jti and forgets them when they expire."
    from ..apps import social
    from ..serving.server import serve
    from ..state.tokens import TokenAuth, new_key

    rng = context().rng
    start = rng.randrange(1_000_000_000, 1_500_000_000)   # Unix seconds, in the past
    deny = DenyList()
    jtis = [secrets.token_urlsafe(rng.randrange(8, 16)) for _ in range(5)]
    exps = sorted(start + e for e in rng.sample(range(50, 5000, 2), len(jtis)))  # distinct
    for jti, exp in zip(jtis, exps):
        deny.revoke(jti, exp)
    now = start + rng.randrange(0, 40)
    for jti in jtis:
        if deny.is_revoked(jti, now) is not True:
            raise CheckFailed("A revoked token whose exp has not come yet should be revoked:"
                              " is_revoked(jti, now) should be True (a bool).")
    stranger = secrets.token_urlsafe(10)
    if deny.is_revoked(stranger, now) is not False:
        raise CheckFailed("is_revoked should be False (a bool) for a jti that was never"
                          " revoked: revoking one token must not revoke others.")
    target = rng.choice(jtis)
    lookalikes = {"the same jti in another case": target.swapcase(),
                  "a prefix of a revoked jti": target[:-2],
                  "a revoked jti with something appended": target + "x",
                  "an empty jti": ""}
    for story, jti in lookalikes.items():
        if jti not in jtis and deny.is_revoked(jti, now):
            raise CheckFailed(f"is_revoked was True for {story}: match jtis exactly.")
    if len(deny) != len(jtis):
        raise CheckFailed(f"After {len(jtis)} tokens were revoked (none expired yet), len() should"
                          f" be {len(jtis)}, not {len(deny)}.")
    if not deny.is_revoked(jtis[0], exps[0] - 1):  # the first to expire, a second early
        raise CheckFailed("A revoked token one second before its exp was no longer revoked:"
                          " it must stay revoked until its exp.")
    cut = rng.randrange(1, len(jtis))              # a time after some exps, before others
    later = (exps[cut - 1] + exps[cut]) // 2     # strictly between two exps: no tie
    alive = sum(1 for e in exps if e > later)
    deny.is_revoked(stranger, later)
    if len(deny) != alive:
        raise CheckFailed(
            f"After is_revoked(..., now) at a time when {len(jtis) - alive} revoked token(s)"
            " had expired, len() was off: drop every entry whose exp has passed in"
            " is_revoked, or the list grows forever (and do not drop live ones).")
    for jti, exp in zip(jtis, exps):
        if exp > later and not deny.is_revoked(jti, later):
            raise CheckFailed("A revoked token that has not expired yet was forgotten: it"
                              " must stay revoked until its exp.")
    deny.is_revoked(stranger, exps[-1] + 1)
    if len(deny) != 0:
        raise CheckFailed("Once every revoked token has expired, len() should be 0.")
    # Revoked again with a later exp (a token reissued under the same jti): the later
    # one counts, so the token stays refused until then.
    again, first_exp = secrets.token_urlsafe(10), start + rng.randrange(100, 200)
    second_exp = first_exp + rng.randrange(50, 500)
    deny.revoke(again, first_exp)
    deny.revoke(again, second_exp)
    if not deny.is_revoked(again, rng.randrange(first_exp + 1, second_exp)):
        raise CheckFailed("A jti revoked twice, the second time with a later exp, was"
                          " forgotten at the first exp: revoking again with a later exp"
                          " extends the revocation (keep the later exp).")
    deny.is_revoked(stranger, second_exp + 1)
    _deny_under_load(DenyList, rng)

    clock, key, deny = ManualClock(time.time() + rng.randrange(0, 10_000)), new_key(), DenyList()
    auth = lambda: TokenAuth(key, ttl=600, clock=clock, deny=deny)  # noqa: E731
    name = rng.choice(sorted(social.DEFAULT_USERS))
    person = {"username": name, "password": social.DEFAULT_USERS[name]}
    with serve(lambda: social.create_app(mode=auth(), kdf_iterations=1_000),
               name="check-05-deny") as server:
        def login() -> dict:
            r = _call("POST", server.url + "/login", json=person, what="POST /login")
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
            raise CheckFailed(f"After one token was revoked, len(deny) should be 1, not {len(deny)}.")
        clock.advance(601 + LEEWAY)  # both tokens have now expired
        probe.expect_status(me(login()), 200, "A fresh login's token on GET /me")
        if len(deny) != 0:
            raise CheckFailed("Once the revoked token expired, the deny-list should forget it,"
                              " but len(deny) is not 0.")
    return ("Revoked means refused, exactly that jti; expired entries go; no loss or crash"
            " under concurrent calls; logout really ends a token.")
