"""The chapter 05 checks: the reference passes, the released stubs fail, and every row of
the answer table (valid alternatives, wrong answers by class) gets the right verdict."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import threading
import time

import jwt
import markupsafe
from flask import Flask, jsonify, make_response, request

from exercise_kit import (SOLUTIONS, assert_case, assert_released_stubs_fail, check_calls,
                          reference, run, table, valid, wrong)
from labkit.state.tokens import DenyList as KitDenyList

SOLUTION = SOLUTIONS / "05_stateless_http_exercises.ipynb"
REF = reference(SOLUTION)
CALLS = check_calls(SOLUTION)
AUDIENCE, ISSUER = REF["AUDIENCE"], REF["ISSUER"]


def test_the_notebook_checks_four_questions():
    assert [qid for qid, _ in CALLS] == ["05.token_verifier", "05.content_negotiation",
                                         "05.idempotent_post", "05.deny_list"]


def test_reference_answers_pass():
    for qid, names in CALLS:
        result = run(qid, *(REF[n] for n in names))
        assert result.passed, (qid, result.message)


def test_released_stubs_fail_with_the_stub_message():
    assert_released_stubs_fail(SOLUTION, at_least=4)


# ------------------------------------------------------------------ token verifier
def decode_with(**overrides):
    def verify_token(token, key):
        options = dict(algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER, leeway=30,
                       options={"require": ["exp", "sub"]})
        options.update(overrides)
        return jwt.decode(token, key, **options)
    return verify_token


def strict_requires(token, key):
    """Valid: every registered claim required, through decode_complete."""
    return jwt.PyJWT().decode_complete(
        token, key, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER, leeway=30,
        options={"require": ["exp", "sub", "iss", "aud"]})["payload"]


def _unb64(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def by_hand(token, key):
    """Valid: a verifier written without jwt.decode, comparing in constant time."""
    try:
        head, body, sig = token.split(".")
        header, claims = json.loads(_unb64(head)), json.loads(_unb64(body))
        given = _unb64(sig)
    except (ValueError, TypeError) as exc:
        raise jwt.DecodeError("not a token") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise jwt.InvalidAlgorithmError("only HS256")
    wanted = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(wanted, given):
        raise jwt.InvalidSignatureError("bad signature")
    if not isinstance(claims, dict):
        raise jwt.DecodeError("claims must be an object")
    if claims.get("aud") != AUDIENCE:
        raise jwt.InvalidAudienceError("audience")
    if claims.get("iss") != ISSUER:
        raise jwt.InvalidIssuerError("issuer")
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool) or "sub" not in claims:
        raise jwt.MissingRequiredClaimError("exp/sub")
    if exp <= time.time() - 30:
        raise jwt.ExpiredSignatureError("expired")
    nbf = claims.get("nbf", 0)
    if not isinstance(nbf, (int, float)) or nbf > time.time() + 30:
        raise jwt.ImmatureSignatureError("not yet valid")
    return claims


def header_chooses(token, key):
    alg = jwt.get_unverified_header(token).get("alg", "HS256")
    return jwt.decode(token, key, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER,
                      leeway=30, options={"require": ["exp", "sub"]})


def returns_none_when_bad(token, key):
    try:
        return decode_with()(token, key)
    except jwt.InvalidTokenError:
        return None


def raises_value_error(token, key):
    try:
        return decode_with()(token, key)
    except jwt.InvalidTokenError as exc:
        raise ValueError("bad token") from exc


def loose_audience(token, key):
    """Checks the audience by substring: 'labkit-social-api-admin' slips through."""
    claims = jwt.decode(token, key, algorithms=["HS256"], issuer=ISSUER, leeway=30,
                        options={"require": ["exp", "sub"], "verify_aud": False})
    if AUDIENCE not in str(claims.get("aud")):
        raise jwt.InvalidAudienceError("audience")
    return claims


def loose_issuer(token, key):
    claims = jwt.decode(token, key, algorithms=["HS256"], audience=AUDIENCE, leeway=30,
                        options={"require": ["exp", "sub"], "verify_iss": False})
    if not str(claims.get("iss", "")).startswith(ISSUER):
        raise jwt.InvalidIssuerError("issuer")
    return claims


def only_the_subject(token, key):
    return {"sub": decode_with()(token, key)["sub"]}


def splits_first(token, key):
    """Crashes with ValueError on anything that does not have three parts."""
    head, body, sig = token.split(".")
    return decode_with()(f"{head}.{body}.{sig}", key)


# ------------------------------------------------------------------ content negotiation
OFFERED = ["application/json", "text/html", "text/plain"]


def card_app(*, vary=True, escape=True, empty_accept_is_json=True, list_on_406=True,
             negotiate=True, use_notebook_posts=False, escape_author=True, vary_404=True,
             escape_plain=False, json_fields=None, quote=True, case_sensitive=False):
    """The reference, with one rule switched off."""

    def make_card_app(posts):
        app = Flask("card-variant")
        table_ = REF["POSTS"] if use_notebook_posts else posts

        @app.get("/posts/<int:post_id>")
        def card(post_id):
            accept = request.accept_mimetypes
            best = accept.best_match(OFFERED) if accept or not empty_accept_is_json else (
                OFFERED[0])
            raw = request.headers.get("Accept", "")
            if case_sensitive and raw != raw.lower():   # "TEXT/HTML" is not "text/html"
                lower = [m for m in OFFERED if m in raw]
                best = lower[0] if lower else None
            if not negotiate:
                best = "application/json"
            post = table_.get(post_id)
            if best is None:
                response = jsonify(error="not_acceptable",
                                   **({"available": OFFERED} if list_on_406 else {}))
                response.status_code = 406
            elif post is None:
                response = jsonify(error="no_such_post")
                response.status_code = 404
                if not vary_404:
                    return response
            elif best == "text/html":
                text = html.escape(post["text"], quote=quote) if escape else post["text"]
                author = (html.escape(post["author"], quote=quote) if escape_author
                          else post["author"])
                response = app.response_class(
                    f"<h2 title=\"{author}\">{author}</h2><p>{text}</p>", mimetype="text/html")
            elif best == "text/plain":
                line = f"{post['author']}: {post['text']}"
                response = app.response_class(html.escape(line) if escape_plain else line,
                                              mimetype="text/plain")
            else:
                shown = {k: post[k] for k in json_fields} if json_fields else post
                response = jsonify(shown)
            if vary:
                response.vary.add("Accept")
            return response

        return app

    return make_card_app


def _ranges(header):
    out = []
    for part in header.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                q = float(value)
        if media:
            out.append((media.lower(), q))
    return out


def hand_negotiated(posts):
    """Valid: its own Accept parser (most specific range wins), markupsafe, ties to text."""
    app = Flask("hand")

    def quality(ranges, offered):
        kind, sub = offered.split("/")
        for wanted in (offered, f"{kind}/*", "*/*"):
            for media, q in ranges:
                if media == wanted:
                    return q
        return 0.0

    @app.get("/posts/<int:post_id>")
    def card(post_id):
        header = request.headers.get("Accept")
        if header is None:
            best = "application/json"
        else:
            ranges = _ranges(header)
            scored = [(quality(ranges, o), o) for o in reversed(OFFERED)]
            q, best = max(scored, key=lambda pair: pair[0])
            if q <= 0:
                best = None
        if best is None:
            response = make_response({"error": "not_acceptable",
                                      "available": list(reversed(OFFERED))}, 406)
        elif post_id not in posts:
            response = make_response({"error": "not_found"}, 404)
        else:
            post = posts[post_id]
            if best == "text/html":
                body = markupsafe.Markup("<!doctype html><title>{0}</title><p>{1}</p>").format(
                    post["author"], post["text"])
                response = make_response(str(body))
                response.mimetype = "text/html"
            elif best == "text/plain":
                response = make_response(f"{post['author']}: {post['text']}\n")
                response.mimetype = "text/plain"
            else:
                response = make_response(dict(post))
        response.headers["Vary"] = "Accept"
        return response

    return app


def first_listed(posts):
    """Ignores q values: the first offered type the header names wins."""
    app = Flask("first")

    @app.get("/posts/<int:post_id>")
    def card(post_id):
        header = request.headers.get("Accept") or "application/json"
        named = [m for m, _ in _ranges(header)]
        best = next((m for m in named if m in OFFERED), "application/json" if "*/*" in named
                    else None)
        post = posts.get(post_id)
        if best is None:
            response = jsonify(error="not_acceptable", available=OFFERED)
            response.status_code = 406
        elif post is None:
            response = jsonify(error="missing")
            response.status_code = 404
        elif best == "text/html":
            response = app.response_class(html.escape(f"{post['author']}: {post['text']}"),
                                          mimetype="text/html")
        elif best == "text/plain":
            response = app.response_class(f"{post['author']}: {post['text']}",
                                          mimetype="text/plain")
        else:
            response = jsonify(post)
        response.vary.add("Accept")
        return response

    return app


def substring_sniffer(posts):
    """'html' in the header means HTML: q=0 and wildcards are ignored."""
    app = Flask("sniff")

    @app.get("/posts/<int:post_id>")
    def card(post_id):
        header = (request.headers.get("Accept") or "").lower()
        post = posts.get(post_id)
        if post is None:
            response = jsonify(error="missing")
            response.status_code = 404
        elif "html" in header:
            response = app.response_class(html.escape(post["author"]) + ": "
                                          + html.escape(post["text"]), mimetype="text/html")
        elif "plain" in header:
            response = app.response_class(f"{post['author']}: {post['text']}",
                                          mimetype="text/plain")
        elif not header or "json" in header or "*/*" in header:
            response = jsonify(post)
        else:
            response = jsonify(error="not_acceptable", available=OFFERED)
            response.status_code = 406
        response.vary.add("Accept")
        return response

    return app


# ------------------------------------------------------------------ idempotent POST
def shop(*, shared=True, honour_key=True, require_key=True, check_body=True, atomic=True,
         app_lock=False, auth_first=True, scoped=True, catch_failure=True, release=True,
         store_failure=False, validate_first=True, wait_in_flight=False, replay_status=201,
         raw_compare=False, item_only=False, any_scheme=False, any_item=False,
         empty_key=False):
    """A shop with one idempotency rule broken."""

    def make_shop(place_order, keys, accounts):
        app = Flask("shop-variant")
        store = keys if shared else {}
        lock = threading.Lock()

        def who():
            header = request.headers.get("Authorization", "")
            if any_scheme:   # the last word, whatever the scheme (or none)
                return accounts.get(header.split()[-1]) if header.split() else None
            scheme, _, token = header.partition(" ")
            return accounts.get(token) if scheme.lower() == "bearer" else None

        @app.post("/orders")
        def order():
            user = who() if auth_first else None
            if auth_first and user is None:
                return {"error": "unauthorized"}, 401
            key = request.headers.get("Idempotency-Key")
            if (key is None if empty_key else not key) and require_key:
                return {"error": "idempotency_key_required"}, 400
            if not auth_first:
                user = who()
            body = request.get_json(silent=True)
            fingerprint = request.get_data() if raw_compare else body
            if item_only and isinstance(body, dict):
                fingerprint = body.get("item")
            shaped = isinstance(body, dict) and (
                "item" in body if any_item else isinstance(body.get("item"), str))
            if validate_first and not shaped:
                return {"error": "wrong_shape"}, 422
            slot = (user, key) if scoped else key
            claim = {"request": fingerprint, "answer": None}
            if honour_key and key is not None:
                if atomic:
                    seen = store.setdefault(slot, claim)
                elif app_lock:
                    with lock:
                        seen = store.get(slot)
                        if seen is None:
                            store[slot] = seen = claim
                else:
                    seen = store.get(slot)
                    if seen is None:
                        seen = claim
                if not auth_first and user is None:
                    return {"error": "unauthorized"}, 401
                if not validate_first and not shaped:
                    return {"error": "wrong_shape"}, 422
                if seen is not claim:
                    if check_body and seen["request"] != fingerprint:
                        return {"error": "idempotency_key_reused"}, 422
                    while wait_in_flight and seen["answer"] is None:
                        time.sleep(0.01)
                    if seen["answer"] is None:
                        return {"error": "in_progress"}, 409
                    return seen["answer"], seen.get("status", replay_status)
            elif user is None:
                return {"error": "unauthorized"}, 401
            try:
                answer = {"order": place_order(user, body["item"]), "item": body["item"]}
            except Exception:
                if not catch_failure:
                    raise
                if release and honour_key and key:
                    store.pop(slot, None)
                elif store_failure and honour_key and key:
                    claim["answer"], claim["status"] = {"error": "order_failed"}, 503
                return {"error": "order_failed"}, 503
            if honour_key and key:
                claim["answer"] = answer
                store[slot] = claim
            return answer, 201

        return app

    return make_shop


def loose_token_shop(place_order, keys, accounts):
    """Finds the caller by a substring of the header: any header holding a token works."""
    inner = shop()(place_order, keys, accounts)
    view = inner.view_functions["order"]

    def order():
        header = request.headers.get("Authorization", "")
        user = next((u for t, u in accounts.items() if t.lower() in header.lower()), None)
        if user is None:
            return {"error": "unauthorized"}, 401
        exact = {u: t for t, u in accounts.items()}[user]
        request.environ["HTTP_AUTHORIZATION"] = f"Bearer {exact}"
        return view()

    inner.view_functions["order"] = order
    return inner


def own_numbers_shop(place_order, keys, accounts):
    """Numbers orders itself from 1001 (what an old check expected), not place_order's."""
    inner = shop()(lambda user, item: 1000 + len(keys) + (place_order(user, item) * 0),
                   keys, accounts)
    return inner


def class_based_shop(place_order, keys, accounts):
    """Valid: string keys, a small class per request, 400 for a bad body, other 409 text."""
    app = Flask("class-shop")

    class Attempt:
        def __init__(self, user, key, body):
            self.slot = f"{len(user)}:{user}|{key}"   # length-prefixed: no collisions
            self.record = {"body": body, "status": None, "json": None}

        def claim(self):
            return keys.setdefault(self.slot, self.record)

    @app.post("/orders")
    def order():
        token = request.headers.get("Authorization", "")
        user = accounts.get(token[7:]) if token.startswith("Bearer ") else None
        if user is None:
            return jsonify(error="who_are_you"), 401
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            return jsonify(error="idempotency_key_required"), 400
        body = request.get_json(silent=True)
        if not (isinstance(body, dict) and isinstance(body.get("item"), str)):
            return jsonify(error="bad_body"), 400
        attempt = Attempt(user, key, body)
        held = attempt.claim()
        if held is not attempt.record:
            if held["body"] != body:
                return jsonify(error="idempotency_key_reused"), 422
            if held["status"] is None:
                return jsonify(error="conflict", detail="retry later"), 409
            return jsonify(held["json"]), held["status"]
        try:
            number = place_order(user, body["item"])
        except Exception:
            del keys[attempt.slot]
            return jsonify(error="order_failed"), 503
        attempt.record.update(json={"item": body["item"], "order": number}, status=201)
        return jsonify(attempt.record["json"]), 201

    return app


# ------------------------------------------------------------------ deny-list
class LockedDenyList:
    """Valid: a lock around everything; the purge may then rebuild the dict."""

    def __init__(self):
        self.revoked, self.lock = {}, threading.Lock()

    def revoke(self, jti, exp):
        with self.lock:
            self.revoked[jti] = exp

    def is_revoked(self, jti, now):
        with self.lock:
            self.revoked = {j: e for j, e in self.revoked.items() if e > now}
            return jti in self.revoked

    def __len__(self):
        return len(self.revoked)


class KeepsUntilAfterExp:
    """Valid: keeps an entry at now == exp exactly (the text allows either)."""

    def __init__(self):
        self.revoked = {}

    def revoke(self, jti, exp):
        self.revoked[jti] = exp

    def is_revoked(self, jti, now):
        for old, exp in list(self.revoked.items()):
            if exp < now:
                self.revoked.pop(old, None)
        return jti in self.revoked

    def __len__(self):
        return len(self.revoked)


class NeverForgets:
    def __init__(self):
        self.revoked = {}

    def revoke(self, jti, exp):
        self.revoked[jti] = exp

    def is_revoked(self, jti, now):
        return jti in self.revoked

    def __len__(self):
        return len(self.revoked)


class RevokesNothing(NeverForgets):
    def is_revoked(self, jti, now):
        return False


class EarlierExpWins(KitDenyList):
    """Revoked again with a later exp, it keeps the earlier one: forgotten too soon."""

    def revoke(self, jti, exp):
        with self._lock:
            known = self._jtis.get(jti)
        super().revoke(jti, exp if known is None else min(known, exp))


class LaterExpWins(REF["DenyList"]):
    """Valid: a re-revoke keeps the later of the two exps."""

    def revoke(self, jti, exp):
        self.revoked[jti] = max(exp, self.revoked.get(jti, exp))


class ForgetsTooEarly(NeverForgets):
    def is_revoked(self, jti, now):
        self.revoked = {j: e for j, e in self.revoked.items() if e > now + 10}
        return jti in self.revoked


class DeletesWhileIterating(NeverForgets):
    def is_revoked(self, jti, now):
        for old, exp in self.revoked.items():
            if exp <= now:
                del self.revoked[old]
        return jti in self.revoked


class RebuildsUnlocked(NeverForgets):
    """Replaces the dict with a filtered copy: a revoke made meanwhile is lost."""

    def is_revoked(self, jti, now):
        self.revoked = {j: e for j, e in list(self.revoked.items()) if e > now}
        return jti in self.revoked


class IndexesAfterSnapshot(NeverForgets):
    """Reads and deletes by index: two purging threads trip over each other."""

    def is_revoked(self, jti, now):
        for old in list(self.revoked):
            if self.revoked[old] <= now:
                del self.revoked[old]
        return jti in self.revoked


class CaseInsensitive(NeverForgets):
    def revoke(self, jti, exp):
        self.revoked[jti.lower()] = exp

    def is_revoked(self, jti, now):
        for old, exp in list(self.revoked.items()):
            if exp <= now:
                self.revoked.pop(old, None)
        return jti.lower() in self.revoked


class PrefixMatch(NeverForgets):
    def is_revoked(self, jti, now):
        for old, exp in list(self.revoked.items()):
            if exp <= now:
                self.revoked.pop(old, None)
        return any(old.startswith(jti) for old in list(self.revoked))


class WallClock(NeverForgets):
    """Purges with time.time() instead of the `now` it was given."""

    def is_revoked(self, jti, now):
        for old, exp in list(self.revoked.items()):
            if exp <= time.time():
                self.revoked.pop(old, None)
        return jti in self.revoked


class AnyRevokedMeansAll(NeverForgets):
    """One logout logs everyone out."""

    def is_revoked(self, jti, now):
        for old, exp in list(self.revoked.items()):
            if exp <= now:
                self.revoked.pop(old, None)
        return bool(self.revoked)


Q1, Q2, Q3, Q4 = ("05.token_verifier", "05.content_negotiation", "05.idempotent_post",
                  "05.deny_list")
CASES = [
    valid(Q1, "reference", REF["verify_token"]),
    valid(Q1, "decode_complete, every claim required", strict_requires),
    valid(Q1, "by hand with hmac.compare_digest", by_hand),
    wrong(Q1, "no leeway", decode_with(leeway=0), says="leeway=30", kind="logic"),
    wrong(Q1, "two minutes of leeway", decode_with(leeway=120), says="leeway",
          kind="visible-only"),
    wrong(Q1, "35 s of leeway", decode_with(leeway=35), says="leeway", kind="logic"),
    wrong(Q1, "45 s of leeway", decode_with(leeway=45), says="leeway", kind="logic"),
    wrong(Q1, "60 s of leeway", decode_with(leeway=60), says="leeway", kind="logic"),
    wrong(Q1, "20 s of leeway", decode_with(leeway=20), says="leeway", kind="logic"),
    wrong(Q1, "no audience", decode_with(audience=None), says="audience", kind="security"),
    wrong(Q1, "audience by substring", loose_audience, says="audience", kind="security"),
    wrong(Q1, "issuer by prefix", loose_issuer, says="issuer", kind="security"),
    wrong(Q1, "no issuer", decode_with(issuer=None), says="issuer", kind="security"),
    wrong(Q1, "exp not required", decode_with(options={"require": ["sub"]}), says="without exp",
          kind="security"),
    wrong(Q1, "sub not required", decode_with(options={"require": ["exp"]}),
          says="without sub", kind="security"),
    wrong(Q1, "signature not checked",
          decode_with(options={"verify_signature": False, "require": ["exp", "sub"]}),
          says="your function accepted", kind="security"),
    wrong(Q1, "two algorithms", decode_with(algorithms=["HS256", "HS384", "HS512"]),
          says="HS256", kind="security"),
    wrong(Q1, "the header chooses", header_chooses, says="HS256", kind="security"),
    wrong(Q1, "returns None", returns_none_when_bad, says="returned None", kind="substance"),
    wrong(Q1, "raises ValueError", raises_value_error, says="not jwt.InvalidTokenError",
          kind="substance"),
    wrong(Q1, "only the subject", only_the_subject, says="all of them", kind="substance"),
    wrong(Q1, "splits first", splits_first, says="InvalidTokenError", kind="hostile-input"),

    valid(Q2, "reference", REF["make_card_app"]),
    valid(Q2, "own parser, markupsafe, ties to text", hand_negotiated),
    valid(Q2, "JSON order kept, whole documents", card_app()),
    wrong(Q2, "quotes left unescaped in an attribute", card_app(quote=False),
          says="quotes", kind="security"),
    wrong(Q2, "media types matched case-sensitively", card_app(case_sensitive=True),
          says="ignore case", kind="hostile-input"),
    wrong(Q2, "no Vary", card_app(vary=False), says="Vary: Accept", kind="substance"),
    wrong(Q2, "no Vary on 404", card_app(vary_404=False), says="404 answer needs",
          kind="substance"),
    wrong(Q2, "text not escaped", card_app(escape=False), says="unescaped", kind="security"),
    wrong(Q2, "author not escaped", card_app(escape_author=False), says="author",
          kind="security"),
    wrong(Q2, "plain text escaped", card_app(escape_plain=True), says="unescaped",
          kind="substance"),
    wrong(Q2, "no Accept means 406", card_app(empty_accept_is_json=False),
          says="no Accept header", kind="hostile-input"),
    wrong(Q2, "406 without the list", card_app(list_on_406=False), says="available",
          kind="substance"),
    wrong(Q2, "always JSON", card_app(negotiate=False), says="should be answered as",
          kind="logic"),
    wrong(Q2, "the notebook's POSTS", card_app(use_notebook_posts=True),
          says="should answer 200", kind="visible-only"),
    wrong(Q2, "JSON without the id", card_app(json_fields=("author", "text")),
          says="the post itself", kind="substance"),
    wrong(Q2, "first listed type, q ignored", first_listed, says="most preferred",
          kind="hostile-input"),
    wrong(Q2, "substring sniffing", substring_sniffer, says="most preferred",
          kind="hostile-input"),

    valid(Q3, "reference", REF["make_shop"]),
    valid(Q3, "variant with every rule", shop()),
    valid(Q3, "class per request, string keys, 400 for a bad body", class_based_shop),
    wrong(Q3, "only the item compared", shop(item_only=True), says="every field",
          kind="logic"),
    wrong(Q3, "any scheme, or none", shop(any_scheme=True), says="Bearer", kind="security"),
    wrong(Q3, "any item type", shop(any_item=True), says="item must be a string",
          kind="hostile-input"),
    wrong(Q3, "an empty key is a key", shop(empty_key=True), says="empty Idempotency-Key",
          kind="hostile-input"),
    wrong(Q3, "keys in one app", shop(shared=False), says="which every server shares",
          kind="substance"),
    wrong(Q3, "key ignored", shop(honour_key=False), says="placed a second order",
          kind="logic"),
    wrong(Q3, "key optional", shop(require_key=False), says="without an Idempotency-Key",
          kind="hostile-input"),
    wrong(Q3, "body not compared", shop(check_body=False), says="different body",
          kind="logic"),
    wrong(Q3, "bodies compared as bytes", shop(raw_compare=True),
          says="should get the first answer again", kind="hostile-input"),
    wrong(Q3, "check then set", shop(atomic=False), says="atomic", kind="concurrency"),
    wrong(Q3, "check then set under an app lock", shop(atomic=False, app_lock=True),
          says="atomic", kind="concurrency"),
    wrong(Q3, "key before authentication", shop(auth_first=False),
          says="authentication comes first", kind="security"),
    wrong(Q3, "numbers orders itself", own_numbers_shop, says="place_order returned",
          kind="visible-only"),
    wrong(Q3, "tokens matched by substring", loose_token_shop, says="match exactly",
          kind="security"),
    wrong(Q3, "keys not scoped to the user", shop(scoped=False), says="scope keys",
          kind="security"),
    wrong(Q3, "a failure is a 500", shop(catch_failure=False), says="should answer 503",
          kind="hostile-input"),
    wrong(Q3, "a failure keeps the key", shop(release=False), says="Its retry",
          kind="logic"),
    wrong(Q3, "a failure is stored and replayed", shop(release=False, store_failure=True),
          says="release its key", kind="logic"),
    wrong(Q3, "a bad body uses the key up", shop(validate_first=False),
          says="only requests that ran", kind="logic"),
    wrong(Q3, "the copy in flight waits", shop(wait_in_flight=True), says="409",
          kind="concurrency"),
    wrong(Q3, "replays with 200", shop(replay_status=200), says="same status",
          kind="substance"),

    valid(Q4, "reference", REF["DenyList"]),
    valid(Q4, "the kit's DenyList (a heap)", KitDenyList),
    valid(Q4, "a lock around a rebuilt dict", LockedDenyList),
    valid(Q4, "keeps an entry at now == exp", KeepsUntilAfterExp),
    valid(Q4, "a re-revoke keeps the later exp", LaterExpWins),
    wrong(Q4, "a re-revoke keeps the earlier exp", EarlierExpWins, says="later exp",
          kind="logic"),
    wrong(Q4, "never forgets", NeverForgets, says="grows forever", kind="logic"),
    wrong(Q4, "revokes nothing", RevokesNothing, says="should be revoked", kind="security"),
    wrong(Q4, "forgets too early", ForgetsTooEarly, says="must stay revoked", kind="logic"),
    wrong(Q4, "deletes while iterating", DeletesWhileIterating, says="RuntimeError",
          kind="hostile-input"),
    wrong(Q4, "rebuilds without a lock", RebuildsUnlocked, says="thread", kind="concurrency"),
    wrong(Q4, "indexes after a snapshot", IndexesAfterSnapshot, says="thread",
          kind="concurrency"),
    wrong(Q4, "case-insensitive", CaseInsensitive, says="exactly", kind="security"),
    wrong(Q4, "prefix match", PrefixMatch, says="exactly", kind="security"),
    wrong(Q4, "purges by the wall clock", WallClock, says="should be revoked",
          kind="visible-only"),
    wrong(Q4, "one logout logs out everyone", AnyRevokedMeansAll, says="never revoked",
          kind="security"),
]


@table(CASES)
def test_answer_table(case):
    assert_case(case)
