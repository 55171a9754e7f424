"""Adversarial answers for questions 04-07: plausible wrong ones and unusual valid ones.

``CASES`` is a list of ``(qid, name, kind, valid, factory)``; ``factory()`` builds fresh
answers (the tuple ``lk.check`` would get). Written from the released exercise text only.
"""
from __future__ import annotations

import bisect
import collections
import datetime
import hashlib
import heapq
import hmac
import base64
import html
import itertools
import json
import math
import random
import secrets
import threading
import time
import types
from fractions import Fraction

import jwt
import requests
from flask import Flask, Response, jsonify, request
from flask.views import MethodView

from labkit.apps import social
from labkit import StoreUnavailable
from labkit.replication import Copy, Replica

CASES: list = []


def case(qid, name, kind, valid):
    def deco(factory):
        CASES.append((qid, name, kind, valid, factory))
        return factory
    return deco


# =============================================================== 04.write_invalidate
def make_invalidate(*, payload_in_invalidate=False, fetch=True, drop_on_invalidate=True,
                    always_fetch=False, lock_across_send=False, bump_version=True,
                    check_version=True, keep_fetched=True, fetch_from="owner",
                    exclusive=False, clear_exclusive=True, peers_slice=None):
    class P(Replica):
        def read(self, sid):
            with self.lock:
                c = self.copies.get(sid)
            if c is None:
                return None
            if c.data is not None and not always_fetch:
                return c.data
            if c.owner == self.name and c.data is not None:
                return c.data
            if not fetch:
                return None
            target = c.owner if fetch_from == "owner" else self.peers()[0]
            reply = self.send(target, "fetch", sid)
            if reply is None:
                return c.data
            if keep_fetched:
                with self.lock:
                    self.copies[sid] = Copy(reply["data"], reply["version"], owner=c.owner)
            return reply["data"]

        def write(self, sid, data):
            def body_of(v):
                b = {"version": v}
                if payload_in_invalidate:
                    b["data"] = data
                return b
            if lock_across_send:
                with self.lock:
                    old = self.copies.get(sid)
                    v = (old.version if old else 0) + (1 if bump_version else 0) or 1
                    self.copies[sid] = Copy(data, v, owner=self.name)
                    for peer in self.peers()[:peers_slice]:
                        self.send(peer, "invalidate", sid, body_of(v))
                return
            with self.lock:
                old = self.copies.get(sid)
                v = (old.version if old else 0) + (1 if bump_version else 0) or 1
                quiet = exclusive and old is not None and old.exclusive
                self.copies[sid] = Copy(data, v, owner=self.name, exclusive=exclusive)
            if not quiet:
                for peer in self.peers()[:peers_slice]:
                    self.send(peer, "invalidate", sid, body_of(v))

        def on_message(self, kind, sid, body, sender):
            if kind == "invalidate":
                with self.lock:
                    c = self.copies.get(sid)
                    if not check_version or c is None or body["version"] > c.version:
                        keep = None if drop_on_invalidate else (c.data if c else None)
                        self.copies[sid] = Copy(keep, body["version"], owner=sender)
                return None
            if kind == "fetch":
                with self.lock:
                    c = self.copies.get(sid)
                    if c is None or c.data is None:
                        return None
                    if clear_exclusive:
                        c.exclusive = False
                    return {"data": c.data, "version": c.version}
            return super().on_message(kind, sid, body, sender)
    P.__name__ = "MyInvalidate"
    return P


Q = "04.write_invalidate"
for _name, _kind, _kw in [
    ("payload_in_invalidate", "write-update in disguise", dict(payload_in_invalidate=True)),
    ("never_fetches", "logic", dict(fetch=False)),
    ("keeps_stale_data", "stale read", dict(drop_on_invalidate=False)),
    ("always_fetches", "needless fetch", dict(always_fetch=True)),
    ("lock_across_send", "concurrency", dict(lock_across_send=True)),
    ("version_never_bumped", "logic", dict(bump_version=False)),
    ("fetch_not_kept", "needless fetch", dict(keep_fetched=False)),
    ("fetch_from_first_peer", "logic", dict(fetch_from="first")),
    ("exclusive_never_cleared", "stale read", dict(exclusive=True, clear_exclusive=False)),
    ("invalidate_first_peer_only", "logic", dict(peers_slice=1)),
]:
    CASES.append((Q, _name, _kind, False, (lambda kw=_kw: (make_invalidate(**kw),))))

CASES.append((Q, "valid_always_invalidate", "valid: no exclusive shortcut", True,
              lambda: (make_invalidate(),)))
CASES.append((Q, "valid_exclusive_shortcut", "valid: kit-like shortcut", True,
              lambda: (make_invalidate(exclusive=True),)))


@case(Q, "valid_dispatch_table", "valid: handler table, owner in reply", True)
def _():
    class MyInvalidate(Replica):
        def read(self, sid):
            with self.lock:
                c = self.copies.get(sid)
                snapshot = None if c is None else (c.data, c.owner)
            if snapshot is None:
                return None
            data, owner = snapshot
            if data is not None:
                return data
            reply = self.send(owner, "fetch", sid)
            if not reply:
                return None
            with self.lock:
                cur = self.copies.get(sid)
                if cur is None or reply["version"] >= cur.version:
                    self.copies[sid] = Copy(reply["data"], reply["version"], reply.get("owner", owner))
            return reply["data"]

        def write(self, sid, data):
            with self.lock:
                prev = self.copies.get(sid)
                version = 1 + (prev.version if prev is not None else 0)
                self.copies[sid] = Copy(data, version, self.name)
            msg = {"version": version}
            for peer in self.peers():
                self.send(peer, "invalidate", sid, msg)

        def _invalidate(self, sid, body, sender):
            with self.lock:
                cur = self.copies.get(sid)
                if cur is None or body["version"] > cur.version:
                    self.copies[sid] = Copy(None, body["version"], sender)

        def _fetch(self, sid, body, sender):
            with self.lock:
                cur = self.copies.get(sid)
                if cur is not None and cur.data is not None:
                    return {"data": cur.data, "version": cur.version, "owner": cur.owner}
            return None

        def on_message(self, kind, sid, body, sender):
            handler = {"invalidate": self._invalidate, "fetch": self._fetch}.get(kind)
            if handler is None:
                return super().on_message(kind, sid, body, sender)
            return handler(sid, body, sender)
    return (MyInvalidate,)


# =================================================================== 04.redis_store
Q = "04.redis_store"


class GoodRedisStore:
    def __init__(self, client, *, idle_timeout=1800, prefix="sess:"):
        self.client, self.idle_timeout, self.prefix = client, idle_timeout, prefix

    def _k(self, sid):
        return self.prefix + sid

    def _ttl(self):
        return max(1, math.ceil(self.idle_timeout)) if isinstance(self.idle_timeout, float) \
            and not self.idle_timeout.is_integer() else int(self.idle_timeout)

    def _newid(self):
        return secrets.token_urlsafe(32)

    def new(self, data=None):
        while True:
            sid = self._newid()
            if self.client.set(self._k(sid), json.dumps(data or {}), ex=self._ttl(), nx=True):
                return sid

    def get(self, sid):
        raw = self.client.get(self._k(sid))
        if raw is None:
            return None
        self.client.expire(self._k(sid), self._ttl())
        return json.loads(raw)

    def save(self, sid, data):
        if not self.client.set(self._k(sid), json.dumps(data), ex=self._ttl(), xx=True):
            raise KeyError(sid)

    def delete(self, sid):
        return bool(self.client.delete(self._k(sid)))


def store_variant(**overrides):
    cls = type("MyRedisStore", (GoodRedisStore,), overrides)
    return lambda: (cls,)


def _new_no_ttl(self, data=None):
    sid = secrets.token_urlsafe(32)
    self.client.set(self._k(sid), json.dumps(data or {}))
    return sid


def _get_no_touch(self, sid):
    raw = self.client.get(self._k(sid))
    return None if raw is None else json.loads(raw)


def _save_resurrects(self, sid, data):
    self.client.set(self._k(sid), json.dumps(data), ex=self._ttl())


def _save_drops_ttl(self, sid, data):
    self.client.set(self._k(sid), json.dumps(data), xx=True)  # SET without EX clears the TTL


_counter = itertools.count(1)

CASES += [
    (Q, "new_without_expiry", "logic", False, store_variant(new=_new_no_ttl)),
    (Q, "get_does_not_touch", "logic", False, store_variant(get=_get_no_touch)),
    (Q, "save_resurrects_ids", "security: client-chosen id", False,
     store_variant(save=_save_resurrects)),
    (Q, "save_drops_ttl", "subtle: SET xx without EX", False, store_variant(save=_save_drops_ttl)),
    (Q, "counter_ids", "security: guessable ids", False,
     store_variant(_newid=lambda self: f"s{self.client.incr(self.prefix + '__n')}")),
    (Q, "short_ids_64bit", "security: short ids", False,
     store_variant(_newid=lambda self: secrets.token_urlsafe(8))),
    (Q, "delete_always_true", "logic", False,
     store_variant(delete=lambda self, sid: (self.client.delete(self._k(sid)), True)[1])),
    (Q, "hardcoded_prefix", "right only for default", False,
     store_variant(_k=lambda self, sid: "sess:" + sid)),
    (Q, "hardcoded_timeout", "right only for default", False,
     store_variant(_ttl=lambda self: 1800)),
    (Q, "ttl_in_ms_confusion", "subtle: px vs ex", False,
     store_variant(_ttl=lambda self: max(1, int(self.idle_timeout) // 1000 or 1))),
    (Q, "id_carries_user", "security: id carries user", False,
     store_variant(new=lambda self, data=None: (lambda sid: (self.client.set(
         self._k(sid), json.dumps(data or {}), ex=self._ttl()), sid)[1])(
         f"{(data or {}).get('user', 'anon')}.{secrets.token_urlsafe(32)}"))),
]


@case(Q, "local_cache", "state in object", False)
def _():
    class MyRedisStore(GoodRedisStore):
        def __init__(self, client, **kw):
            super().__init__(client, **kw)
            self.cache = {}

        def get(self, sid):
            if sid in self.cache:
                self.client.expire(self._k(sid), self._ttl())
                return self.cache[sid]
            data = super().get(sid)
            if data is not None:
                self.cache[sid] = data
            return data

        def save(self, sid, data):
            super().save(sid, data)
            self.cache[sid] = data
    return (MyRedisStore,)


CASES.append((Q, "valid_plain", "valid: set ex / expire / xx", True, lambda: (GoodRedisStore,)))


@case(Q, "valid_getex_hex_ids_save_noop", "valid: GETEX, token_hex(16), save no-op", True)
def _():
    class MyRedisStore:
        def __init__(self, client, *, idle_timeout=1800, prefix="sess:"):
            self.c, self.ms, self.p = client, max(1, int(round(idle_timeout * 1000))), prefix

        def new(self, data=None):
            sid = secrets.token_hex(16)
            self.c.set(self.p + sid, json.dumps({} if data is None else data), px=self.ms)
            return sid

        def get(self, sid):
            raw = self.c.getex(self.p + sid, px=self.ms)
            return None if raw is None else json.loads(raw)

        def save(self, sid, data):
            self.c.set(self.p + sid, json.dumps(data), px=self.ms, xx=True)

        def delete(self, sid):
            return self.c.delete(self.p + sid) == 1
    return (MyRedisStore,)


@case(Q, "valid_closure_namespace", "valid: closures, pipeline", True)
def _():
    def MyRedisStore(client, *, idle_timeout=1800, prefix="sess:"):
        ttl = max(1, math.ceil(idle_timeout))
        key = lambda sid: f"{prefix}{sid}"

        def new(data=None):
            sid = base64.urlsafe_b64encode(secrets.token_bytes(24)).decode().rstrip("=")
            client.set(key(sid), json.dumps(data if data is not None else {}), ex=ttl)
            return sid

        def get(sid):
            pipe = client.pipeline()
            pipe.get(key(sid))
            pipe.expire(key(sid), ttl)
            raw, _ = pipe.execute()
            return json.loads(raw) if raw is not None else None

        def save(sid, data):
            if client.set(key(sid), json.dumps(data), ex=ttl, xx=True) is None:
                raise KeyError(sid)

        def delete(sid):
            return client.delete(key(sid)) > 0
        return types.SimpleNamespace(new=new, get=get, save=save, delete=delete)
    return (MyRedisStore,)


# ==================================================================== 04.store_down
Q = "04.store_down"


def _social(sessions):
    return social.create_app(store=sessions, kdf_iterations=1_000)


@case(Q, "no_handler", "status: bare 500", False)
def _():
    return (_social,)


@case(Q, "handler_500_json", "status wrong", False)
def _():
    def make_app(sessions):
        app = _social(sessions)
        app.register_error_handler(StoreUnavailable, lambda e: (jsonify(error=e.reason), 500))
        return app
    return (make_app,)


@case(Q, "handler_503_text_body", "body/content-type wrong", False)
def _():
    def make_app(sessions):
        app = _social(sessions)
        app.register_error_handler(StoreUnavailable, lambda e: ("store_unavailable", 503))
        return app
    return (make_app,)


@case(Q, "handler_503_json_as_html", "content-type wrong", False)
def _():
    def make_app(sessions):
        app = _social(sessions)
        app.register_error_handler(StoreUnavailable, lambda e: Response(
            json.dumps({"error": "store_unavailable"}), 503, mimetype="text/html"))
        return app
    return (make_app,)


@case(Q, "catch_all_exception_503", "breaks 404 / other answers", False)
def _():
    def make_app(sessions):
        app = _social(sessions)
        app.register_error_handler(Exception, lambda e: (jsonify(error="store_unavailable"), 503))
        return app
    return (make_app,)


@case(Q, "sticky_down_flag", "no recovery", False)
def _():
    def make_app(sessions):
        app = _social(sessions)
        state = {"down": False}

        @app.before_request
        def gate():
            if state["down"]:
                return jsonify(error="store_unavailable"), 503

        @app.errorhandler(StoreUnavailable)
        def down(e):
            state["down"] = True
            return jsonify(error="store_unavailable"), 503
        return app
    return (make_app,)


@case(Q, "wrong_reason", "body wrong", False)
def _():
    def make_app(sessions):
        app = _social(sessions)
        app.register_error_handler(StoreUnavailable, lambda e: (jsonify(error="unavailable"), 503))
        return app
    return (make_app,)


@case(Q, "probe_store_every_request", "public page 503 too", False)
def _():
    def make_app(sessions):
        app = _social(sessions)

        @app.before_request
        def probe():
            try:
                sessions.get("probe")
            except StoreUnavailable:
                return jsonify(error="store_unavailable"), 503
        return app
    return (make_app,)


@case(Q, "wrong_password_as_503", "everything 503 while any error", False)
def _():
    def make_app(sessions):
        app = _social(sessions)

        @app.after_request
        def hide(resp):
            if resp.status_code >= 400 and resp.status_code != 404:
                return Response(json.dumps({"error": "store_unavailable"}), 503,
                                mimetype="application/json")
            return resp
        app.register_error_handler(StoreUnavailable, lambda e: (jsonify(error=e.reason), 503))
        return app
    return (make_app,)


@case(Q, "valid_errorhandler", "valid: register_error_handler", True)
def _():
    def make_app(sessions):
        app = _social(sessions)
        app.register_error_handler(StoreUnavailable, lambda e: (jsonify(error=e.reason), 503))
        return app
    return (make_app,)


@case(Q, "valid_generic_with_reason_attr", "valid: Exception handler dispatching on .reason", True)
def _():
    from werkzeug.exceptions import HTTPException, InternalServerError

    def make_app(sessions):
        app = _social(sessions)

        @app.errorhandler(Exception)
        def any_error(e):
            if isinstance(e, HTTPException):
                return e
            if getattr(e, "reason", None) == "store_unavailable":
                r = jsonify(error="store_unavailable", retry=True)
                r.status_code = 503
                r.headers["Retry-After"] = "1"
                return r
            return InternalServerError()
        return app
    return (make_app,)


@case(Q, "valid_wrapping_blueprintless", "valid: handler via errorhandler decorator on base class", True)
def _():
    from labkit.state.redis import StoreError

    def make_app(sessions):
        app = _social(sessions)

        @app.errorhandler(StoreError)
        def store_error(e):
            return {"error": getattr(e, "reason", "store_unavailable"), "detail": "try again"}, 503
        return app
    return (make_app,)


# ================================================================= 05.token_verifier
Q = "05.token_verifier"
AUDIENCE = "labkit-social-api"
ISSUER = "labkit-social"


def verifier(**kw):
    def verify_token(token, key):
        opts = {"require": ["exp", "sub", "aud", "iss"]}
        opts.update(kw.pop("options", {}) if False else kw.get("options", {}))
        args = dict(algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER, leeway=30)
        args.update({k: v for k, v in kw.items() if k != "options"})
        return jwt.decode(token, key, options=opts, **args)
    return lambda: (verify_token,)


CASES += [
    (Q, "alg_from_header", "security: other algorithm", False, lambda: (
        lambda token, key: jwt.decode(token, key,
                                      algorithms=[jwt.get_unverified_header(token)["alg"]],
                                      audience=AUDIENCE, issuer=ISSUER, leeway=30,
                                      options={"require": ["exp", "sub", "aud", "iss"]}),)),
    (Q, "hs256_or_hs512", "security: other algorithm", False,
     verifier(algorithms=["HS256", "HS512"])),
    (Q, "leeway_60", "subtle: too much leeway", False, verifier(leeway=60)),
    (Q, "leeway_0", "subtle: no leeway", False, verifier(leeway=0)),
    (Q, "sub_not_required", "missing claim", False,
     verifier(options={"require": ["exp", "aud", "iss"]})),
    (Q, "no_signature_check", "security", False,
     verifier(options={"verify_signature": False, "require": ["exp", "sub", "aud", "iss"]})),
]


@case(Q, "loose_aud_iss_casefold", "security: loose claim matching", False)
def _():
    def verify_token(token, key):
        claims = jwt.decode(token, key, algorithms=["HS256"], leeway=30,
                            options={"verify_aud": False, "verify_iss": False,
                                     "require": ["exp", "sub", "aud", "iss"]})
        if str(claims["aud"]).lower() != AUDIENCE or not str(claims["iss"]).lower().startswith(ISSUER):
            raise jwt.InvalidTokenError("bad aud/iss")
        return claims
    return (verify_token,)


@case(Q, "garbage_returns_none", "hostile input: no raise", False)
def _():
    def verify_token(token, key):
        try:
            return jwt.decode(token, key, algorithms=["HS256"], audience=AUDIENCE,
                              issuer=ISSUER, leeway=30,
                              options={"require": ["exp", "sub", "aud", "iss"]})
        except jwt.DecodeError:
            return None
    return (verify_token,)


@case(Q, "empty_raises_valueerror", "hostile input: wrong exception", False)
def _():
    def verify_token(token, key):
        if not token or token.count(".") != 2:
            raise ValueError("not a token")
        return jwt.decode(token, key, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER,
                          leeway=30, options={"require": ["exp", "sub", "aud", "iss"]})
    return (verify_token,)


@case(Q, "returns_subset", "claims trimmed", False)
def _():
    def verify_token(token, key):
        c = jwt.decode(token, key, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER,
                       leeway=30, options={"require": ["exp", "sub", "aud", "iss"]})
        return {k: c[k] for k in ("sub", "exp", "aud", "iss")}
    return (verify_token,)


@case(Q, "aud_iss_optional", "missing claim accepted", False)
def _():
    def verify_token(token, key):
        return jwt.decode(token, key, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER,
                          leeway=30, options={"require": ["exp", "sub"], "verify_aud": False})
    return (verify_token,)


CASES.append((Q, "valid_pyjwt", "valid: jwt.decode with require", True, verifier()))
CASES.append((Q, "valid_timedelta_leeway", "valid: PyJWT object, timedelta leeway", True, lambda: (
    lambda token, key: jwt.PyJWT().decode(
        token, key, algorithms=("HS256",), audience=[AUDIENCE], issuer=ISSUER,
        leeway=datetime.timedelta(seconds=30),
        options={"require": ["exp", "sub", "aud", "iss"], "verify_signature": True}),)))


@case(Q, "valid_manual_hmac", "valid: hand-rolled HMAC + claims", True)
def _():
    def b64d(part):
        try:
            return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (ValueError, TypeError) as e:
            raise jwt.DecodeError(str(e)) from None

    def verify_token(token, key):
        if not isinstance(token, str) or token.count(".") != 2:
            raise jwt.DecodeError("not a token")
        h, p, s = token.split(".")
        if not h or not p or not s:
            raise jwt.DecodeError("incomplete token")
        try:
            header = json.loads(b64d(h))
            claims = json.loads(b64d(p))
        except ValueError as e:
            raise jwt.DecodeError(str(e)) from None
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            raise jwt.InvalidAlgorithmError("only HS256")
        kb = key.encode() if isinstance(key, str) else key
        want = hmac.new(kb, f"{h}.{p}".encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(want, b64d(s)):
            raise jwt.InvalidSignatureError("bad signature")
        if not isinstance(claims, dict):
            raise jwt.DecodeError("claims are not an object")
        for name in ("exp", "sub", "aud", "iss"):
            if name not in claims:
                raise jwt.MissingRequiredClaimError(name)
        aud = claims["aud"]
        if not (aud == AUDIENCE or (isinstance(aud, list) and AUDIENCE in aud)):
            raise jwt.InvalidAudienceError("aud")
        if claims["iss"] != ISSUER:
            raise jwt.InvalidIssuerError("iss")
        if not isinstance(claims["sub"], str):
            raise jwt.InvalidSubjectError("sub")
        now = time.time()
        for name in ("exp", "nbf", "iat"):
            if name in claims and (isinstance(claims[name], bool)
                                   or not isinstance(claims[name], (int, float))):
                raise jwt.DecodeError(f"{name} must be a number")
        if now > claims["exp"] + 30:
            raise jwt.ExpiredSignatureError("expired")
        if "nbf" in claims and now < claims["nbf"] - 30:
            raise jwt.ImmatureSignatureError("nbf")
        if "iat" in claims and now < claims["iat"] - 30:
            raise jwt.ImmatureSignatureError("iat")
        return claims
    return (verify_token,)


# ============================================================ 05.content_negotiation
Q = "05.content_negotiation"
OFFERED = ["application/json", "text/html", "text/plain"]


def parse_accept(header):
    ranges = []
    for part in header.split(","):
        bits = [b.strip() for b in part.split(";")]
        mt = bits[0].lower()
        if not mt:
            continue
        q = 1.0
        for b in bits[1:]:
            if b.lower().startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        ranges.append((mt, q))
    return ranges


def quality_rfc(offer, ranges):
    best, spec = None, -1
    t, s = offer.split("/")
    for mt, q in ranges:
        rt, _, rs = mt.partition("/")
        if mt == offer:
            sp = 2
        elif rt == t and rs == "*":
            sp = 1
        elif mt == "*/*":
            sp = 0
        else:
            continue
        if sp > spec:
            best, spec = q, sp
    return 0.0 if best is None else best


def render(post, kind, escape=True, plain_escape=False):
    if kind == "application/json":
        return jsonify(post)
    if kind == "text/html":
        e = html.escape if escape else (lambda x: x)
        return Response(f"<article><b>{e(str(post['author']))}</b>: <p>{e(str(post['text']))}</p></article>",
                        mimetype="text/html")
    line = f"{post['author']}: {post['text']}"
    return Response(html.escape(line) if plain_escape else line, mimetype="text/plain")


def card_app(choose, *, vary_all=True, escape=True, plain_escape=False,
             not_acceptable=lambda: (jsonify(error="not_acceptable", available=OFFERED), 406)):
    def make_card_app(posts):
        app = Flask("cards")

        @app.get("/posts/<int:pid>")
        def card(pid):
            if pid not in posts:
                return jsonify(error="not_found"), 404
            kind = choose(request.headers.get("Accept"))
            if kind is None:
                return not_acceptable()
            r = render(posts[pid], kind, escape, plain_escape)
            if not vary_all:
                r.headers["Vary"] = "Accept"
            return r

        if vary_all:
            @app.after_request
            def vary(resp):
                resp.vary.add("Accept")
                return resp
        return app
    return make_card_app


def choose_rfc(header):
    if header is None or not header.strip():
        return "application/json"
    ranges = parse_accept(header)
    scored = [(quality_rfc(o, ranges), -i, o) for i, o in enumerate(OFFERED)]
    q, _, o = max(scored)
    return o if q > 0 else None


def choose_first_listed(header):
    if not header:
        return "application/json"
    for mt, q in parse_accept(header):
        if mt in OFFERED:
            return mt
        if mt == "*/*":
            return "application/json"
    return None


def choose_substring(header):
    h = (header or "").lower()
    if "html" in h:
        return "text/html"
    if "plain" in h or "text" in h:
        return "text/plain"
    if "json" in h or "*/*" in h or not h:
        return "application/json"
    return None


def choose_no_wildcards(header):
    if not header:
        return "application/json"
    ranges = dict(parse_accept(header))
    best = max(OFFERED, key=lambda o: ranges.get(o, -1))
    return best if ranges.get(best, -1) > 0 else ("application/json" if "*/*" in ranges else None)


def choose_q0_ok(header):
    if not header:
        return "application/json"
    ranges = parse_accept(header)
    for o in OFFERED:
        for mt, q in sorted(ranges, key=lambda r: -r[1]):
            if mt == o or mt == "*/*" or (mt.endswith("/*") and o.startswith(mt[:-1])):
                return o
    return None


def choose_first_match_not_specific(header):
    if not header:
        return "application/json"
    ranges = parse_accept(header)

    def q_of(o):
        for mt, q in ranges:  # first matching range, not the most specific one
            if mt == o or mt == "*/*" or (mt.endswith("/*") and o.startswith(mt[:-1])):
                return q
        return 0
    best = max(OFFERED, key=q_of)
    return best if q_of(best) > 0 else None


CASES += [
    (Q, "first_listed_ignores_q", "logic: q ignored", False, lambda: (card_app(choose_first_listed),)),
    (Q, "substring_sniffing", "logic", False, lambda: (card_app(choose_substring),)),
    (Q, "no_wildcards", "logic", False, lambda: (card_app(choose_no_wildcards),)),
    (Q, "q0_treated_as_ok", "logic", False, lambda: (card_app(choose_q0_ok),)),
    (Q, "first_range_not_most_specific", "subtle: specificity", False,
     lambda: (card_app(choose_first_match_not_specific),)),
    (Q, "html_not_escaped", "security: XSS", False, lambda: (card_app(choose_rfc, escape=False),)),
    (Q, "plain_escaped", "logic", False, lambda: (card_app(choose_rfc, plain_escape=True),)),
    (Q, "vary_only_on_200", "headers", False, lambda: (card_app(choose_rfc, vary_all=False),)),
    (Q, "406_without_available", "body wrong", False, lambda: (card_app(
        choose_rfc, not_acceptable=lambda: (jsonify(error="not_acceptable"), 406)),)),
    (Q, "415_instead_of_406", "status wrong", False, lambda: (card_app(
        choose_rfc, not_acceptable=lambda: (jsonify(error="not_acceptable", available=OFFERED), 415)),)),
]


@case(Q, "json_as_text_plain", "content-type wrong", False)
def _():
    def make_card_app(posts):
        inner = card_app(choose_rfc)(posts)

        @inner.after_request
        def retag(resp):
            if resp.mimetype == "application/json" and resp.status_code == 200:
                resp.mimetype = "text/plain"
            return resp
        return inner
    return (make_card_app,)


CASES.append((Q, "valid_rfc_parser", "valid: own parser, most specific wins", True,
              lambda: (card_app(choose_rfc),)))


@case(Q, "valid_werkzeug_best_match", "valid: accept_mimetypes.best_match", True)
def _():
    def make_card_app(posts):
        app = Flask("cards")

        @app.route("/posts/<int:pid>")
        def card(pid):
            post = posts.get(pid)
            if post is None:
                r = Response("no such post", 404, mimetype="text/plain")
            else:
                if "Accept" not in request.headers:
                    kind = "application/json"
                else:
                    kind = request.accept_mimetypes.best_match(OFFERED)
                if kind is None:
                    r = jsonify(error="not_acceptable", available=OFFERED, hint="use Accept")
                    r.status_code = 406
                else:
                    r = render(post, kind)
            r.headers.add("Vary", "Accept")
            return r
        return app
    return (make_card_app,)


@case(Q, "valid_methodview_markupsafe", "valid: MethodView, markupsafe, prefers html on ties", True)
def _():
    from markupsafe import escape

    class Card(MethodView):
        def __init__(self, posts):
            self.posts = posts

        def get(self, pid):
            if pid not in self.posts:
                return Response("<h1>404</h1>", 404, {"Vary": "Accept"}, mimetype="text/html")
            header = request.headers.get("Accept", "*/*") or "*/*"
            ranges = parse_accept(header)
            order = ["text/html", "text/plain", "application/json"]
            q = {o: quality_rfc(o, ranges) for o in order}
            top = max(q.values())
            if top <= 0:
                return Response(json.dumps({"error": "not_acceptable", "available": OFFERED}),
                                406, {"Vary": "Accept"}, mimetype="application/json")
            kind = next(o for o in order if q[o] == top)
            if header == "*/*" and "Accept" not in request.headers:
                kind = "application/json"
            p = self.posts[pid]
            if kind == "text/html":
                body, mt = f"<div class=card><span>{escape(p['author'])}</span> {escape(p['text'])}</div>", kind
            elif kind == "text/plain":
                body, mt = f"{p['author']}: {p['text']}", kind
            else:
                body, mt = json.dumps(p), kind
            return Response(body, 200, {"Vary": "Accept"}, mimetype=mt)

    def make_card_app(posts):
        app = Flask("cards")
        app.add_url_rule("/posts/<int:pid>", view_func=Card.as_view("card", posts))
        return app
    return (make_card_app,)


# ================================================================ 05.idempotent_post
Q = "05.idempotent_post"


def shop(*, scope_user=True, auth_first=True, release_on_fail=True, compare="value",
         replay_status=201, local_store=False, reuse_status=422, claim_before_validate=False,
         in_progress=lambda: (jsonify(error="in_progress"), 409), item_check=True,
         no_claim=False, loose_bearer=False):
    def make_shop(place_order, keys, accounts):
        app = Flask("shop")
        store = {} if local_store else keys

        def user_of():
            h = request.headers.get("Authorization", "")
            if loose_bearer:
                return accounts.get(h.split()[-1]) if h.split() else None
            if not h.startswith("Bearer "):
                return None
            return accounts.get(h[len("Bearer "):])

        @app.post("/orders")
        def orders():
            user = None
            if auth_first:
                user = user_of()
                if user is None:
                    return jsonify(error="unauthorized"), 401
            key = request.headers.get("Idempotency-Key")
            if not key:
                return jsonify(error="idempotency_key_required"), 400
            if not auth_first:
                user = user_of()
                if user is None:
                    return jsonify(error="unauthorized"), 401
            k = (user, key) if scope_user else key
            raw = request.get_data()
            body = request.get_json(silent=True)
            fingerprint = body if compare == "value" else raw
            if claim_before_validate:
                mine = ["pending", fingerprint, None]
                won = store.setdefault(k, mine)
                if won is not mine:
                    return judge(won, fingerprint)
            if not isinstance(body, dict) or (item_check and not isinstance(body.get("item"), str)) \
                    or "item" not in body:
                return jsonify(error="bad_body"), 400
            if not claim_before_validate:
                if no_claim:
                    if k in store and store[k][0] == "done":
                        return judge(store[k], fingerprint)
                else:
                    mine = ["pending", fingerprint, None]
                    won = store.setdefault(k, mine)
                    if won is not mine:
                        return judge(won, fingerprint)
            try:
                number = place_order(user, body["item"])
            except Exception:
                if release_on_fail and not no_claim:
                    store.pop(k, None)
                return jsonify(error="order_failed"), 503
            answer = {"order": number, "item": body["item"]}
            store[k] = ["done", fingerprint, answer]
            return jsonify(answer), 201

        def judge(claim, fingerprint):
            state, fp, answer = claim
            if fp != fingerprint:
                return jsonify(error="idempotency_key_reused"), reuse_status
            if state == "pending":
                return in_progress()
            return jsonify(answer), replay_status
        return app
    return lambda: (make_shop,)


CASES += [
    (Q, "keys_not_scoped_by_user", "security: missing user scoping", False, shop(scope_user=False)),
    (Q, "key_before_auth", "order of checks", False, shop(auth_first=False)),
    (Q, "failure_keeps_key", "logic: no release", False, shop(release_on_fail=False)),
    (Q, "raw_bytes_compare", "logic: spacing/key order", False, shop(compare="raw")),
    (Q, "replay_200", "status wrong", False, shop(replay_status=200)),
    (Q, "answers_in_app_memory", "state in app", False, shop(local_store=True)),
    (Q, "reuse_409", "status wrong", False, shop(reuse_status=409)),
    (Q, "claim_before_body_check", "bad body consumes key", False, shop(claim_before_validate=True)),
    (Q, "in_progress_200_pending", "status wrong", False,
     shop(in_progress=lambda: (jsonify(status="pending"), 200))),
    (Q, "item_any_type", "validation", False, shop(item_check=False)),
    (Q, "check_then_act_no_claim", "concurrency: duplicate orders", False, shop(no_claim=True)),
    (Q, "loose_bearer", "security: auth scheme ignored", False, shop(loose_bearer=True)),
    (Q, "valid_list_claims", "valid: list claims", True, shop()),
    (Q, "valid_422_bad_body", "valid: 422 for bad body", True, lambda: (
        _wrap_422(shop()()[0]),)),
]


def _wrap_422(factory):
    def make_shop(place_order, keys, accounts):
        app = factory(place_order, keys, accounts)

        @app.after_request
        def to_422(resp):
            if resp.status_code == 400 and (resp.get_json(silent=True) or {}).get("error") == "bad_body":
                resp.status_code = 422
            return resp
        return app
    return make_shop


@case(Q, "valid_dict_claims_identity_release", "valid: dict claims, canonical JSON, token release", True)
def _():
    def make_shop(place_order, keys, accounts):
        app = Flask("shop")

        def canon(v):
            return json.dumps(v, sort_keys=True, separators=(",", ":"))

        @app.route("/orders", methods=["POST"])
        def orders():
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            user = accounts.get(token) if scheme == "Bearer" and token else None
            if user is None:
                return {"error": "auth_required"}, 401
            idem = request.headers.get("Idempotency-Key")
            if idem is None or idem == "":
                return {"error": "idempotency_key_required"}, 400
            try:
                body = json.loads(request.get_data() or b"null")
            except ValueError:
                body = None
            if type(body) is not dict or type(body.get("item")) is not str:
                return {"error": "invalid_body"}, 422
            me = {"owner": secrets.token_hex(8), "body": canon(body), "answer": None}
            slot = (user, idem)
            claim = keys.setdefault(slot, me)
            if claim is not me:
                if claim["body"] != me["body"]:
                    return {"error": "idempotency_key_reused"}, 422
                if claim["answer"] is None:
                    return {"error": "in_progress"}, 409
                return dict(claim["answer"]), 201
            try:
                number = place_order(user, body["item"])
            except Exception:
                if keys.get(slot) is me:
                    del keys[slot]
                return {"error": "order_failed"}, 503
            keys[slot] = {"owner": me["owner"], "body": me["body"],
                          "answer": {"order": number, "item": body["item"]}}
            return {"order": number, "item": body["item"]}, 201
        return app
    return (make_shop,)


# ====================================================================== 05.deny_list
Q = "05.deny_list"


class GoodDeny:
    def __init__(self):
        self.revoked = {}
        self._lock = threading.Lock()

    def revoke(self, jti, exp):
        with self._lock:
            self.revoked[jti] = exp

    def _expired(self, exp, now):
        return now > exp

    def is_revoked(self, jti, now):
        with self._lock:
            for j, e in list(self.revoked.items()):
                if self._expired(e, now):
                    del self.revoked[j]
            return jti in self.revoked

    def __len__(self):
        return len(self.revoked)


def deny_variant(**overrides):
    cls = type("DenyList", (GoodDeny,), overrides)
    return lambda: (cls,)


def _rebuild(self, jti, now):
    self.revoked = {j: e for j, e in self.revoked.items() if e > now}
    return jti in self.revoked


def _iter_delete(self, jti, now):
    for j in self.revoked:
        if self.revoked[j] < now:
            del self.revoked[j]
    return jti in self.revoked


def _never_drop(self, jti, now):
    return jti in self.revoked


def _casefold(self, jti, now):
    with self._lock:
        for j, e in list(self.revoked.items()):
            if now > e:
                del self.revoked[j]
        return any(j.lower() == str(jti).lower() for j in self.revoked)


def _prefix(self, jti, now):
    with self._lock:
        for j, e in list(self.revoked.items()):
            if now > e:
                del self.revoked[j]
        return any(j.startswith(jti) or jti.startswith(j) for j in self.revoked)


CASES += [
    (Q, "never_drops", "grows forever", False, deny_variant(is_revoked=_never_drop)),
    (Q, "rebuilds_dict", "concurrency: lost revoke", False, deny_variant(is_revoked=_rebuild)),
    (Q, "delete_while_iterating", "concurrency/RuntimeError", False, deny_variant(is_revoked=_iter_delete)),
    (Q, "case_insensitive", "security: loose match", False, deny_variant(is_revoked=_casefold)),
    (Q, "prefix_match", "security: loose match", False, deny_variant(is_revoked=_prefix)),
    (Q, "drops_one_second_early", "off-by-one: drops live revocation", False,
     deny_variant(_expired=lambda self, e, now: now >= e - 1)),
    (Q, "inverted_expiry", "logic", False, deny_variant(_expired=lambda self, e, now: e > now)),
    (Q, "any_revoked_means_all", "security: logs out everyone", False,
     deny_variant(is_revoked=lambda self, jti, now: (_never_drop(self, jti, now), bool(self.revoked))[1])),
    (Q, "wall_clock_expiry", "logic: ignores exp/now", False,
     deny_variant(revoke=lambda self, jti, exp: self.revoked.__setitem__(jti, time.time() + 3600))),
    (Q, "valid_lock_sweep", "valid: lock + full sweep", True, lambda: (GoodDeny,)),
]


@case(Q, "valid_heap", "valid: heap of expiries, drops all expired", True)
def _():
    class DenyList:
        def __init__(self):
            self.revoked = {}
            self._heap = []
            self._lock = threading.RLock()

        def revoke(self, jti, exp):
            with self._lock:
                self.revoked[jti] = max(exp, self.revoked.get(jti, exp))
                heapq.heappush(self._heap, (exp, jti))

        def is_revoked(self, jti, now):
            with self._lock:
                while self._heap and self._heap[0][0] < now:
                    exp, j = heapq.heappop(self._heap)
                    if self.revoked.get(j) == exp:
                        del self.revoked[j]
                exp = self.revoked.get(jti)
                return exp is not None and now <= exp

        def __len__(self):
            return len(self.revoked)
    return (DenyList,)


@case(Q, "valid_only_queried_plus_expired_true", "valid: sweep, expired one reported revoked", True)
def _():
    class DenyList:
        def __init__(self):
            self.revoked = {}
            self.guard = threading.Lock()

        def revoke(self, jti, exp):
            with self.guard:
                self.revoked[jti] = exp

        def is_revoked(self, jti, now):
            with self.guard:
                stale = [j for j, e in self.revoked.items() if e < now]
                hit = jti in self.revoked
                for j in stale:
                    self.revoked.pop(j)
            return hit  # an expired token is refused anyway; True is harmless

        def __len__(self):
            with self.guard:
                return len(self.revoked)
    return (DenyList,)


# ================================================================ 06.servers_needed
Q = "06.servers_needed"


def cap(*, servers, workers, service_time):
    return servers * workers / service_time


def sn(f):
    return lambda: (cap, f)


CASES += [
    (Q, "round_not_ceil", "rounding", False,
     sn(lambda *, target, workers, service_time: max(1, round(target * service_time / workers)))),
    (Q, "floor_plus_one", "off-by-one on boundary", False,
     sn(lambda *, target, workers, service_time: int(target * service_time / workers) + 1)),
    (Q, "no_minimum_one", "target 0", False,
     sn(lambda *, target, workers, service_time: math.ceil(target * service_time / workers))),
    (Q, "capacity_multiplies_time", "formula", False, lambda: (
        lambda *, servers, workers, service_time: servers * workers * service_time,
        lambda *, target, workers, service_time: max(1, math.ceil(target / (workers * service_time))))),
    (Q, "returns_float", "type", False,
     sn(lambda *, target, workers, service_time: max(1.0, -(-target * service_time // workers)))),
    (Q, "ignores_service_time", "formula", False,
     sn(lambda *, target, workers, service_time: max(1, math.ceil(target / workers)))),
    (Q, "capacity_per_server", "formula", False, lambda: (
        lambda *, servers, workers, service_time: workers / service_time,
        lambda *, target, workers, service_time: max(1, math.ceil(target * service_time / workers)))),
    (Q, "naive_float_ceil", "subtle: float boundary (obvious answer)", False,
     sn(lambda *, target, workers, service_time: max(1, math.ceil(target * service_time / workers)))),
]


def _needed_corrected(*, target, workers, service_time):
    n = max(1, math.ceil(target * service_time / workers))
    while n > 1 and cap(servers=n - 1, workers=workers, service_time=service_time) >= target:
        n -= 1
    while cap(servers=n, workers=workers, service_time=service_time) < target:
        n += 1
    return int(n)


def _needed_bisect(*, target, workers, service_time):
    lo, hi = 1, 1
    while cap(servers=hi, workers=workers, service_time=service_time) < target:
        hi *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        if cap(servers=mid, workers=workers, service_time=service_time) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _needed_fraction(*, target, workers, service_time):
    x = Fraction(target) * Fraction(service_time) / Fraction(workers)
    return max(1, math.ceil(x))


CASES += [
    (Q, "valid_ceil_corrected", "valid: ceil then fix with capacity", True, sn(_needed_corrected)),
    (Q, "valid_bisect", "valid: galloping + bisection on capacity", True, sn(_needed_bisect)),
    (Q, "valid_fraction", "valid: exact Fraction arithmetic", True, lambda: (
        lambda *, servers, workers, service_time: float(Fraction(servers) * Fraction(workers) / Fraction(service_time)),
        _needed_fraction)),
]


# ================================================================== 06.least_loaded
Q = "06.least_loaded"


def policy(fn, name="least_loaded"):
    cls = type("LeastLoaded", (), {"name": name, "choose": lambda self, request, servers: fn(self, servers)})
    return lambda: (cls,)


CASES += [
    (Q, "first_server", "right for sorted example", False, policy(lambda self, s: s[0])),
    (Q, "min_by_name", "logic", False, policy(lambda self, s: min(s, key=lambda b: b.name))),
    (Q, "most_loaded", "logic", False, policy(lambda self, s: max(s, key=lambda b: b.active))),
    (Q, "returns_name", "type", False, policy(lambda self, s: min(s, key=lambda b: b.active).name)),
    (Q, "returns_copy", "type: not the object", False, policy(
        lambda self, s: (lambda b: type(b)(b.name, b.alive, b.active, b.served, b.errors))(
            min(s, key=lambda b: b.active)))),
    (Q, "min_by_served", "logic", False, policy(lambda self, s: min(s, key=lambda b: b.served))),
    (Q, "skips_first", "off-by-one", False, policy(lambda self, s: min(s[1:] or s[:0], key=lambda b: b.active))),
    (Q, "hardcoded_s1", "right only for the example", False, policy(
        lambda self, s: next((b for b in s if b.name == "s1"), s[0]))),
    (Q, "active_plus_served", "logic", False, policy(lambda self, s: min(s, key=lambda b: b.active + b.served))),
]


@case(Q, "round_robin", "logic", False)
def _():
    class LeastLoaded:
        name = "least_loaded"

        def __init__(self):
            self.i = itertools.count()

        def choose(self, request, servers):
            return servers[next(self.i) % len(servers)]
    return (LeastLoaded,)


CASES += [
    (Q, "valid_min", "valid: min by active", True, policy(lambda self, s: min(s, key=lambda b: b.active))),
    (Q, "valid_sorted_tiebreak", "valid: sorted by (active, served)", True,
     policy(lambda self, s: sorted(s, key=lambda b: (b.active, b.served))[0])),
]


@case(Q, "valid_random_among_ties", "valid: random tie-break, manual loop", True)
def _():
    class LeastLoaded:
        name = "least_loaded"

        def __init__(self):
            self.rng = random.Random(7)

        def choose(self, request, servers):
            best, ties = None, []
            for b in servers:
                if best is None or b.active < best:
                    best, ties = b.active, [b]
                elif b.active == best:
                    ties.append(b)
            return self.rng.choice(ties)
    return (LeastLoaded,)


# ================================================================= 06.lost_by_period
Q = "06.lost_by_period"
INF = float("inf")


def lost(*, use_start=False, pre=0.1, count_ok=False, keep_zero=True, add=True, upper=True,
         none_until=INF, key_tuple=False):
    def lost_by_period(report):
        out = {}
        for server, frm, until in report.fault_periods():
            until = none_until if until is None else until
            k = (server, frm) if key_tuple else server
            n = 0
            for s in report.samples:
                if s.ok and not count_ok:
                    continue
                t = s.start if use_start else s.start + s.latency
                if frm - pre <= t and (not upper or t <= until):
                    n += 1
            if add:
                out[k] = out.get(k, 0) + n
            else:
                out[k] = n
        if not keep_zero:
            out = {k: v for k, v in out.items() if v}
        return out
    return lambda: (lost_by_period,)


CASES += [
    (Q, "counts_by_start", "logic", False, lost(use_start=True)),
    (Q, "no_pre_window", "logic", False, lost(pre=0.0)),
    (Q, "window_one_second", "units", False, lost(pre=1.0)),
    (Q, "counts_ok_too", "logic", False, lost(count_ok=True)),
    (Q, "drops_zero_keys", "missing keys", False, lost(keep_zero=False)),
    (Q, "second_period_overwrites", "logic: two periods", False, lost(add=False)),
    (Q, "no_upper_bound", "logic", False, lost(upper=False)),
    (Q, "pre_window_0_3", "window too wide", False, lost(pre=0.3)),
    (Q, "tuple_keys", "shape", False, lost(key_tuple=True)),
    (Q, "valid_loops", "valid: nested loops", True, lost()),
]


@case(Q, "valid_bisect", "valid: sorted end times + bisect", True)
def _():
    def lost_by_period(report):
        ends = sorted(s.start + s.latency for s in report.samples if not s.ok)
        totals = collections.Counter()
        seen = []
        for server, frm, until in report.fault_periods():
            hi = INF if until is None else until
            seen.append(server)
            totals[server] += bisect.bisect_right(ends, hi) - bisect.bisect_left(ends, frm - 0.1)
        return {s: totals[s] for s in seen}
    return (lost_by_period,)


@case(Q, "valid_comprehension", "valid: generator sums, defaultdict", True)
def _():
    def lost_by_period(report):
        out = collections.defaultdict(int)
        failed = [x for x in report.samples if not x.ok]
        for server, a, b in report.fault_periods():
            b = math.inf if b is None else b
            out[server] += sum(a - 0.1 <= x.start + x.latency <= b for x in failed)
        return dict(out)
    return (lost_by_period,)


# ===================================================================== 06.retry_rule
Q = "06.retry_rule"
IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}

CASES += [
    (Q, "get_only", "logic", False, lambda: (lambda m: m.upper() == "GET",)),
    (Q, "case_sensitive", "odd case", False, lambda: (lambda m: m in IDEMPOTENT,)),
    (Q, "not_post", "unknown methods retried", False, lambda: (lambda m: m.upper() != "POST",)),
    (Q, "includes_patch", "logic", False, lambda: (lambda m: m.upper() in IDEMPOTENT | {"PATCH"},)),
    (Q, "substring_test", "hostile input", False,
     lambda: (lambda m: m.upper() in "GET HEAD OPTIONS TRACE PUT DELETE",)),
    (Q, "safe_only", "logic: PUT/DELETE are idempotent", False,
     lambda: (lambda m: m.upper() in {"GET", "HEAD", "OPTIONS", "TRACE"},)),
    (Q, "no_options_trace", "logic", False,
     lambda: (lambda m: m.lower() in {"get", "head", "put", "delete"},)),
    (Q, "valid_set", "valid: set + upper", True, lambda: (lambda m: m.upper() in IDEMPOTENT,)),
]


@case(Q, "valid_match", "valid: match statement, casefold, strict type", True)
def _():
    def may_retry(method):
        if not isinstance(method, str):
            return False
        match method.casefold():
            case "get" | "head" | "options" | "trace" | "put" | "delete":
                return True
            case _:
                return False
    return (may_retry,)


@case(Q, "valid_http_enum", "valid: http.HTTPMethod-free table", True)
def _():
    table = dict.fromkeys(["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"], True)
    return (lambda method: table.get(str(method).upper(), False),)


# ==================================================================== 07.size_gateway
Q = "07.size_gateway"


def forward(upstream, body):
    r = requests.post(upstream + "/upload", data=body,
                      headers={"Content-Type": "application/octet-stream"}, timeout=30)
    return Response(r.content, r.status_code, mimetype="application/json")


def read_capped(limit):
    buf = bytearray()
    while len(buf) <= limit:
        chunk = request.stream.read(min(65536, limit + 1 - len(buf)))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def drain():
    while request.stream.read(65536):
        pass


def gateway(*, cmp=lambda n, limit: n > limit, refusal=lambda: (jsonify(error="too_large"), 413),
            do_drain=True, cumulative=False, status_passthrough=True, transform=None,
            empty_400=False):
    def make_gateway(upstream, *, limit):
        app = Flask("gateway")
        total = [0]

        @app.post("/upload")
        def upload():
            body = read_capped(limit)
            n = len(body) + (total[0] if cumulative else 0)
            if cmp(n, limit):
                if do_drain:
                    drain()
                return refusal()
            if empty_400 and not body:
                return jsonify(error="empty"), 400
            total[0] += len(body)
            if transform:
                body = transform(body)
            r = requests.post(upstream + "/upload", data=body, timeout=30)
            if status_passthrough:
                return Response(r.content, r.status_code, mimetype="application/json")
            return jsonify(r.json()), 200
        return app
    return lambda: (make_gateway,)


@case(Q, "trusts_content_length", "hostile input: chunked/lying", False)
def _():
    def make_gateway(upstream, *, limit):
        app = Flask("gateway")

        @app.post("/upload")
        def upload():
            if request.content_length is not None and request.content_length > limit:
                drain()
                return jsonify(error="too_large"), 413
            return forward(upstream, request.get_data())
        return app
    return (make_gateway,)


@case(Q, "reads_stream_forwards_get_data", "logic: forwards empty", False)
def _():
    def make_gateway(upstream, *, limit):
        app = Flask("gateway")

        @app.post("/upload")
        def upload():
            body = read_capped(limit)
            if len(body) > limit:
                drain()
                return jsonify(error="too_large"), 413
            return forward(upstream, request.get_data())
        return app
    return (make_gateway,)


CASES += [
    (Q, "exact_limit_refused", "off-by-one", False, gateway(cmp=lambda n, limit: n >= limit)),
    (Q, "cumulative_limit", "logic: totals", False, gateway(cumulative=True)),
    (Q, "always_200", "status: upstream status lost", False, gateway(status_passthrough=False)),
    (Q, "413_text_body", "body: not JSON", False,
     gateway(refusal=lambda: Response("too large", 413, mimetype="text/plain"))),
    (Q, "no_drain", "client may not hear", False, gateway(do_drain=False)),
    (Q, "utf8_roundtrip", "bytes changed", False,
     gateway(transform=lambda b: b.decode("utf-8", "replace").encode("utf-8"))),
    (Q, "empty_refused", "edge: empty upload", False, gateway(empty_400=True)),
    (Q, "valid_capped_read", "valid: read limit+1, drain", True, gateway()),
]


@case(Q, "valid_declared_fast_path", "valid: refuse on declared size, then count", True)
def _():
    def make_gateway(upstream, *, limit):
        app = Flask("gateway")

        def too_big():
            drain()
            r = jsonify(error="too_large", limit=limit)
            r.status_code = 413
            return r

        @app.route("/upload", methods=["POST"])
        def upload():
            declared = request.content_length
            if declared is not None and declared > limit:
                return too_big()
            parts, size = [], 0
            for chunk in iter(lambda: request.stream.read(4096), b""):
                size += len(chunk)
                if size > limit:
                    return too_big()
                parts.append(chunk)
            up = requests.post(f"{upstream}/upload", data=b"".join(parts), timeout=30)
            return up.json(), up.status_code
        return app
    return (make_gateway,)


@case(Q, "valid_class_session", "valid: class, requests.Session, BytesIO", True)
def _():
    import io

    class Gateway:
        def __init__(self, upstream, limit):
            self.url, self.limit = upstream.rstrip("/") + "/upload", limit
            self.http = requests.Session()

        def handle(self):
            sink = io.BytesIO()
            while sink.tell() <= self.limit:
                chunk = request.stream.read(self.limit + 1 - sink.tell())
                if not chunk:
                    break
                sink.write(chunk)
            if sink.tell() > self.limit:
                for _ in iter(lambda: request.stream.read(1 << 15), b""):
                    pass
                return Response(json.dumps({"error": "too_large"}), 413, mimetype="application/json")
            r = self.http.post(self.url, data=sink.getvalue(), timeout=30)
            return Response(r.content, r.status_code, content_type=r.headers.get("Content-Type", "application/json"))

    def make_gateway(upstream, *, limit):
        app = Flask("gateway")
        gw = Gateway(upstream, limit)
        app.add_url_rule("/upload", "upload", gw.handle, methods=["POST"])
        return app
    return (make_gateway,)


# ============================================================== 07.stateless_handler
Q = "07.stateless_handler"


def visits(handler_factory):
    return lambda: (handler_factory,)


def _mod_local():
    counts = collections.Counter()

    def handler(event, context):
        counts[event["user"]] += 1
        return {"user": event["user"], "visits": counts[event["user"]]}
    return handler


def _get_set():
    def handler(event, context):
        k = "visits:" + event["user"]
        n = context.store.get(k, 0) + 1
        context.store.set(k, n)
        return {"user": event["user"], "visits": n}
    return handler


def _lower():
    def handler(event, context):
        u = event["user"]
        return {"user": u, "visits": context.store.incr("visits:" + u.lower())}
    return handler


def _prefix3():
    def handler(event, context):
        u = event["user"]
        return {"user": u, "visits": context.store.incr("v:" + u[:3])}
    return handler


def _minus1():
    def handler(event, context):
        u = event["user"]
        return {"user": u, "visits": context.store.incr("visits:" + u) - 1}
    return handler


def _no_user():
    def handler(event, context):
        return {"visits": context.store.incr("visits:" + event["user"])}
    return handler


def _per_container():
    def handler(event, context):
        u = event["user"]
        return {"user": u, "visits": context.store.incr(f"{context.container}:{u}")}
    return handler


def _cached_at_cold_start():
    cache = {}

    def handler(event, context):
        u = event["user"]
        if u not in cache:
            cache[u] = context.store.get("visits:" + u, 0)
        cache[u] += 1
        context.store.set("visits:" + u, cache[u])
        return {"user": u, "visits": cache[u]}
    return handler


def _colliding_keys():
    def handler(event, context):
        u = event["user"]
        return {"user": u, "visits": context.store.incr(f"visits:{hash(u.casefold()) % 7}")}
    return handler


def _v_json_key():
    def handler(event, context):
        user = event["user"]
        n = context.store.incr(json.dumps(["visits", user]))
        return {"user": user, "visits": n}
    return handler


def _v_class():
    class Counter:
        def __init__(self):
            self.prefix = "visit-count/"

        def __call__(self, event, context):
            user = event["user"]
            return {"user": user, "visits": context.store.incr(self.prefix + repr(user), by=1)}
    return Counter()


def _v_plain():
    def handler(event, context):
        return {"user": event["user"], "visits": context.store.incr(f"visits:{event['user']}")}
    return handler


CASES += [
    (Q, "module_local_counter", "state in container", False, visits(_mod_local)),
    (Q, "get_then_set", "concurrency: read-modify-write", False, visits(_get_set)),
    (Q, "lowercased_key", "odd case", False, visits(_lower)),
    (Q, "key_prefix_3", "key collision", False, visits(_prefix3)),
    (Q, "off_by_one", "logic", False, visits(_minus1)),
    (Q, "missing_user_field", "body shape", False, visits(_no_user)),
    (Q, "per_container_key", "state split", False, visits(_per_container)),
    (Q, "cached_at_cold_start", "state in container", False, visits(_cached_at_cold_start)),
    (Q, "hash_bucket_keys", "key collision", False, visits(_colliding_keys)),
    (Q, "valid_incr", "valid: incr", True, visits(_v_plain)),
    (Q, "valid_json_key", "valid: JSON-encoded key", True, visits(_v_json_key)),
    (Q, "valid_callable_object", "valid: callable object handler", True, visits(_v_class)),
]


# ============================================================ 07.predict_cold_starts
Q = "07.predict_cold_starts"


def sim(*, reap=lambda idle, kw: idle > kw, mru=True, track="last"):
    def cold_starts(bursts, keep_warm):
        pool = []  # [last_used, created]
        cold = 0
        for t, n in bursts:
            pool = [c for c in pool if not reap(t - (c[0] if track == "last" else c[1]), keep_warm)]
            pool.sort(key=lambda c: c[0], reverse=mru)
            use = pool[:n]
            for c in use:
                c[0] = t
            new = max(0, n - len(use))
            cold += new
            pool += [[t, t] for _ in range(new)]
        return cold
    return lambda: (cold_starts,)


CASES += [
    (Q, "reap_at_exactly_keep_warm", "boundary", False, sim(reap=lambda idle, kw: idle >= kw)),
    (Q, "lru_reuse", "logic: LRU not MRU", False, sim(mru=False)),
    (Q, "age_since_creation", "logic", False, sim(track="created")),
    (Q, "never_reaped", "ignores keep_warm", False, sim(reap=lambda idle, kw: False)),
    (Q, "every_event_cold", "logic", False, lambda: (lambda bursts, keep_warm: sum(n for _, n in bursts),)),
    (Q, "one_per_gap", "logic", False, lambda: (lambda bursts, keep_warm: sum(
        n for i, (t, n) in enumerate(bursts) if i == 0 or t - bursts[i - 1][0] > keep_warm),)),
    (Q, "max_crashes_on_empty", "edge: no bursts", False, lambda: (
        lambda bursts, keep_warm: max(n for _, n in bursts) + 0 * keep_warm,)),
    (Q, "valid_sim", "valid: simulate pool", True, sim()),
]


@case(Q, "valid_counts_warm", "valid: warm = containers used within keep_warm", True)
def _():
    def cold_starts(bursts, keep_warm):
        last = []  # last-use time of each container, most recent first
        cold = 0
        for t, n in sorted(bursts, key=lambda b: b[0]):
            last = [u for u in last if t - u <= keep_warm]
            reused = min(n, len(last))
            cold += n - reused
            last = [t] * n + last[reused:]
        return int(cold)
    return (cold_starts,)


@case(Q, "valid_deque", "valid: deque stack of idle containers", True)
def _():
    def cold_starts(bursts, keep_warm):
        idle = collections.deque()  # left = most recently used
        total = 0
        for t, n in bursts:
            while idle and t - idle[-1] > keep_warm:
                idle.pop()
            take = min(n, len(idle))
            for _ in range(take):
                idle.popleft()
            total += n - take
            idle.extendleft([t] * n)
        return total
    return (cold_starts,)


# ======================================================================= wave 2
# Harder cases, written after the first run showed which kinds every check catches.

Q = "04.write_invalidate"
CASES.append((Q, "invalidate_on_tie", "concurrency: >= on equal versions", False, lambda: (
    make_invalidate_tie(),)))


def make_invalidate_tie():
    base = make_invalidate()

    class P(base):
        def on_message(self, kind, sid, body, sender):
            if kind == "invalidate":
                with self.lock:
                    c = self.copies.get(sid)
                    if c is None or body["version"] >= c.version:
                        self.copies[sid] = Copy(None, body["version"], owner=sender)
                return None
            return super().on_message(kind, sid, body, sender)
    P.__name__ = "MyInvalidate"
    return P


@case(Q, "writer_keeps_old_owner", "equivalent: owner field unused while data is valid", True)
def _():
    base = make_invalidate()

    class P(base):
        def write(self, sid, data):
            with self.lock:
                old = self.copies.get(sid)
                v = (old.version if old else 0) + 1
                self.copies[sid] = Copy(data, v, owner=old.owner if old else self.name)
            for peer in self.peers():
                self.send(peer, "invalidate", sid, {"version": v})
    P.__name__ = "MyInvalidate"
    return (P,)


@case(Q, "invalidate_keeps_old_owner", "logic: owner not learned", False)
def _():
    base = make_invalidate()

    class P(base):
        def on_message(self, kind, sid, body, sender):
            if kind == "invalidate":
                with self.lock:
                    c = self.copies.get(sid)
                    if c is None or body["version"] > c.version:
                        self.copies[sid] = Copy(None, body["version"], owner=c.owner if c else sender)
                return None
            return super().on_message(kind, sid, body, sender)
    P.__name__ = "MyInvalidate"
    return (P,)


@case(Q, "fetch_all_peers", "needless messages", False)
def _():
    base = make_invalidate()

    class P(base):
        def read(self, sid):
            with self.lock:
                c = self.copies.get(sid)
            if c is None:
                return None
            if c.data is not None:
                return c.data
            got = None
            for peer in self.peers():
                r = self.send(peer, "fetch", sid)
                if r and (got is None or r["version"] > got["version"]):
                    got = r
            if got is None:
                return None
            with self.lock:
                self.copies[sid] = Copy(got["data"], got["version"], owner=c.owner)
            return got["data"]
    P.__name__ = "MyInvalidate"
    return (P,)


Q = "04.redis_store"


def _new_null(self, data=None):
    sid = secrets.token_urlsafe(32)
    self.client.set(self._k(sid), json.dumps(data), ex=self._ttl())
    return sid


def _save_exists_then_set(self, sid, data):
    if not self.client.exists(self._k(sid)):
        raise KeyError(sid)
    self.client.set(self._k(sid), json.dumps(data), ex=self._ttl())  # TOCTOU: may resurrect


import uuid  # noqa: E402

CASES += [
    (Q, "new_none_stored_as_null", "edge: data=None", False, store_variant(new=_new_null)),
    (Q, "save_exists_then_set", "concurrency: TOCTOU resurrect", False,
     store_variant(save=_save_exists_then_set)),
    (Q, "uuid4_ids_122_bits", "ids under 128 bits", False,
     store_variant(_newid=lambda self: str(uuid.uuid4()))),
    (Q, "mersenne_twister_ids", "security: predictable RNG", False,
     store_variant(_newid=lambda self: "%032x" % random.getrandbits(128))),
    (Q, "time_based_ids", "security: guessable ids", False,
     store_variant(_newid=lambda self: hashlib.sha256(str(time.time_ns()).encode()).hexdigest())),
    (Q, "valid_token_urlsafe_16", "valid: exactly 128 bits", True,
     store_variant(_newid=lambda self: secrets.token_urlsafe(16))),
]


Q = "04.store_down"


@case(Q, "catches_redis_error_only", "wrong exception", False)
def _():
    import redis

    def make_app(sessions):
        app = _social(sessions)
        app.register_error_handler(redis.exceptions.ConnectionError,
                                   lambda e: (jsonify(error="store_unavailable"), 503))
        return app
    return (make_app,)


@case(Q, "error_key_misspelt_reason", "body: reason under another key", False)
def _():
    def make_app(sessions):
        app = _social(sessions)
        app.register_error_handler(StoreUnavailable, lambda e: (jsonify(reason=e.reason), 503))
        return app
    return (make_app,)


Q = "05.token_verifier"
CASES += [
    (Q, "no_require_at_all", "missing exp/sub accepted", False, lambda: (
        lambda token, key: jwt.decode(token, key, algorithms=["HS256"], audience=AUDIENCE,
                                      issuer=ISSUER, leeway=30),)),
    (Q, "leeway_45", "subtle: too much leeway", False, verifier(leeway=45)),
    (Q, "leeway_35", "subtle: too much leeway", False, verifier(leeway=35)),
    (Q, "leeway_20", "subtle: too little leeway", False, verifier(leeway=20)),
]


@case(Q, "valid_wrap_all_errors", "valid: every exception turned into InvalidTokenError", True)
def _():
    def verify_token(token, key):
        try:
            return jwt.decode(token, key, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER,
                              leeway=30, options={"require": ["exp", "sub", "aud", "iss"]})
        except jwt.InvalidTokenError:
            raise
        except Exception as e:
            raise jwt.InvalidTokenError(f"unreadable token: {type(e).__name__}") from None
    return (verify_token,)


Q = "05.content_negotiation"


def choose_case_sensitive(header):
    if header is None or not header.strip():
        return "application/json"
    ranges = []
    for part in header.split(","):
        bits = [b.strip() for b in part.split(";")]
        q = 1.0
        for b in bits[1:]:
            if b.startswith("q="):
                q = float(b[2:])
        ranges.append((bits[0], q))
    scored = [(quality_rfc(o, ranges), -i, o) for i, o in enumerate(OFFERED)]
    q, _, o = max(scored)
    return o if q > 0 else None


def choose_no_accept_html(header):
    return "text/html" if header is None else choose_rfc(header)


@case(Q, "html_quotes_unescaped", "security: attribute XSS", False)
def _():
    def make_card_app(posts):
        app = card_app(lambda h: None)(posts)  # placeholder, replaced below
        return app
    # a real variant: escape only <, >, &
    def mk(posts):
        app = Flask("cards")

        @app.get("/posts/<int:pid>")
        def card(pid):
            if pid not in posts:
                return jsonify(error="nf"), 404
            kind = choose_rfc(request.headers.get("Accept"))
            if kind is None:
                return jsonify(error="not_acceptable", available=OFFERED), 406
            p = posts[pid]
            if kind == "text/html":
                e = lambda x: html.escape(str(x), quote=False)
                return Response(f"<p title='{e(p['author'])}'>{e(p['author'])}: {e(p['text'])}</p>",
                                mimetype="text/html")
            return render(p, kind)

        @app.after_request
        def v(resp):
            resp.vary.add("Accept")
            return resp
        return app
    return (mk,)


CASES += [
    (Q, "case_sensitive_media_types", "odd case", False, lambda: (card_app(choose_case_sensitive),)),
    (Q, "no_accept_means_html", "logic: missing header", False, lambda: (card_app(choose_no_accept_html),)),
]

Q = "05.idempotent_post"


@case(Q, "compare_item_only", "logic: body fingerprint too coarse", False)
def _():
    inner = shop()()[0]

    def make_shop(place_order, keys, accounts):
        class ItemOnly(dict):
            pass
        app = inner(place_order, keys, accounts)
        return app
    # implement directly: fingerprint = item only
    def make_shop2(place_order, keys, accounts):
        app = Flask("shop")

        @app.post("/orders")
        def orders():
            h = request.headers.get("Authorization", "")
            user = accounts.get(h[7:]) if h.startswith("Bearer ") else None
            if user is None:
                return jsonify(error="unauthorized"), 401
            key = request.headers.get("Idempotency-Key")
            if not key:
                return jsonify(error="idempotency_key_required"), 400
            body = request.get_json(silent=True)
            if not isinstance(body, dict) or not isinstance(body.get("item"), str):
                return jsonify(error="bad_body"), 400
            mine = ["pending", body["item"], None]
            won = keys.setdefault((user, key), mine)
            if won is not mine:
                if won[1] != body["item"]:
                    return jsonify(error="idempotency_key_reused"), 422
                if won[0] == "pending":
                    return jsonify(error="in_progress"), 409
                return jsonify(won[2]), 201
            try:
                n = place_order(user, body["item"])
            except Exception:
                keys.pop((user, key), None)
                return jsonify(error="order_failed"), 503
            keys[(user, key)] = ["done", body["item"], {"order": n, "item": body["item"]}]
            return jsonify(keys[(user, key)][2]), 201
        return app
    return (make_shop2,)


@case(Q, "empty_key_accepted", "edge: empty Idempotency-Key is a key", False)
def _():
    base = shop()()[0]

    def make_shop(place_order, keys, accounts):
        app = base(place_order, keys, accounts)

        @app.before_request
        def fill():
            if request.headers.get("Idempotency-Key") == "":
                request.environ["HTTP_IDEMPOTENCY_KEY"] = "default"
        return app
    return (make_shop,)


Q = "05.deny_list"


@case(Q, "drops_only_queried_no_lock", "grows: unqueried entries stay; lock-free pop", False)
def _():
    class DenyList:
        def __init__(self):
            self.revoked = {}

        def revoke(self, jti, exp):
            self.revoked[jti] = exp

        def is_revoked(self, jti, now):
            exp = self.revoked.get(jti)
            if exp is None:
                return False
            if now > exp:
                self.revoked.pop(jti, None)
                return False
            return True

        def __len__(self):
            return len(self.revoked)
    return (DenyList,)


def _earlier_wins(self, jti, exp):
    with self._lock:
        self.revoked[jti] = min(exp, self.revoked.get(jti, exp))


CASES += [
    (Q, "rerevoke_keeps_earlier_exp", "logic: re-revoke shortens", False,
     deny_variant(revoke=_earlier_wins)),
]

Q = "06.servers_needed"
CASES += [
    (Q, "capacity_floor_div", "formula: // ", False, lambda: (
        lambda *, servers, workers, service_time: servers * workers // service_time, _needed_corrected)),
    (Q, "epsilon_ceil", "subtle: epsilon hides real excess", False,
     sn(lambda *, target, workers, service_time: max(1, math.ceil(target * service_time / workers - 1e-6)))),
    (Q, "linear_search", "valid? slow for huge targets", True,
     sn(lambda *, target, workers, service_time: next(
         n for n in itertools.count(1) if cap(servers=n, workers=workers, service_time=service_time) >= target))),
]

Q = "06.least_loaded"


@case(Q, "sticky_per_client", "logic: stickiness", False)
def _():
    class LeastLoaded:
        name = "least_loaded"

        def __init__(self):
            self.by_client = {}

        def choose(self, request, servers):
            names = {s.name: s for s in servers}
            prev = self.by_client.get(request.client_id)
            if prev in names:
                return names[prev]
            pick = min(servers, key=lambda s: s.active)
            self.by_client[request.client_id] = pick.name
            return pick
    return (LeastLoaded,)


@case(Q, "cached_first_list", "stale state: dead servers", False)
def _():
    class LeastLoaded:
        name = "least_loaded"
        seen = None

        def choose(self, request, servers):
            if self.seen is None:
                self.seen = list(servers)
            return min(self.seen, key=lambda s: s.active)
    return (LeastLoaded,)


Q = "06.retry_rule"
CASES += [
    (Q, "strip_then_match", "hostile input: ' GET ' retried", False,
     lambda: (lambda m: m.strip().upper() in IDEMPOTENT,)),
    (Q, "startswith", "hostile input: prefix match", False,
     lambda: (lambda m: any(m.upper().startswith(x) for x in IDEMPOTENT),)),
]

Q = "07.size_gateway"


@case(Q, "truncate_at_limit", "forwards first limit bytes of a big upload", False)
def _():
    def make_gateway(upstream, *, limit):
        app = Flask("gateway")

        @app.post("/upload")
        def upload():
            body = request.stream.read(limit)
            drain()
            return forward(upstream, body)
        return app
    return (make_gateway,)


CASES += [
    (Q, "refuse_400", "status wrong", False,
     gateway(refusal=lambda: (jsonify(error="too_large"), 400))),
]


@case(Q, "passthrough_html_ctype", "content-type of upstream answer lost", False)
def _():
    def make_gateway(upstream, *, limit):
        app = Flask("gateway")

        @app.post("/upload")
        def upload():
            body = read_capped(limit)
            if len(body) > limit:
                drain()
                return jsonify(error="too_large"), 413
            r = requests.post(upstream + "/upload", data=body, timeout=30)
            return r.text, r.status_code  # Flask makes it text/html
        return app
    return (make_gateway,)


@case(Q, "forwards_client_headers", "equivalent: requests recomputes Content-Length", True)
def _():
    def make_gateway(upstream, *, limit):
        app = Flask("gateway")

        @app.post("/upload")
        def upload():
            body = read_capped(limit)
            if len(body) > limit:
                drain()
                return jsonify(error="too_large"), 413
            hdrs = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
            hdrs.pop("Transfer-Encoding", None)
            try:
                r = requests.post(upstream + "/upload", data=body, headers=hdrs, timeout=5)
            except requests.RequestException:
                return jsonify(error="bad_gateway"), 502
            return Response(r.content, r.status_code, mimetype="application/json")
        return app
    return (make_gateway,)


Q = "07.stateless_handler"


def _incr_then_get():
    def handler(event, context):
        k = "visits:" + event["user"]
        context.store.incr(k)
        return {"user": event["user"], "visits": context.store.get(k)}
    return handler


def _prefix_collide():
    def handler(event, context):
        u = event["user"]
        return {"user": u, "visits": context.store.incr("v:" + u[:4].ljust(4))}
    return handler


CASES += [
    (Q, "incr_then_get", "concurrency: returns someone else's count", False, visits(_incr_then_get)),
    (Q, "key_prefix_4", "key collision", False, visits(_prefix_collide)),
]

Q = "07.predict_cold_starts"


@case(Q, "gap_based_pool", "logic: one pool age for all containers", False)
def _():
    def cold_starts(bursts, keep_warm):
        pool, last, cold = 0, None, 0
        for t, n in bursts:
            if last is not None and t - last > keep_warm:
                pool = 0
            cold += max(0, n - pool)
            pool = max(pool, n)
            last = t
        return cold
    return (cold_starts,)


Q = "06.lost_by_period"
CASES.append((Q, "valid_exclusive_bounds", "valid: open interval (boundaries are measure-zero)", True,
              lambda: (_lost_exclusive,)))


def _lost_exclusive(report):
    out = {}
    for server, a, b in report.fault_periods():
        out[server] = out.get(server, 0) + sum(
            1 for x in report.samples if not x.ok and a - 0.1 < x.start + x.latency < b)
    return out


@case(Q, "first_period_only_per_failure", "overlap: a failure goes to one period only", False)
def _():
    def lost_by_period(report):
        periods = report.fault_periods()
        out = {s: 0 for s, _, _ in periods}
        for x in report.samples:
            if x.ok:
                continue
            end = x.start + x.latency
            for s, a, b in periods:
                if a - 0.1 <= end <= b:
                    out[s] += 1
                    break
        return out
    return (lost_by_period,)
