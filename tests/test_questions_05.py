"""The chapter 05 checks: the reference passes, the released stubs and wrong answers fail."""

from __future__ import annotations

import html

import jwt
import pytest
from flask import Flask, jsonify, request

from exercise_kit import SOLUTIONS, STUB_MESSAGE, check_calls, reference, released_stubs, run

SOLUTION = SOLUTIONS / "05_stateless_http_exercises.ipynb"
REF = reference(SOLUTION)
STUBS = released_stubs(SOLUTION)
CALLS = check_calls(SOLUTION)
AUDIENCE, ISSUER = REF["AUDIENCE"], REF["ISSUER"]


def test_the_notebook_checks_four_questions():
    assert [qid for qid, _ in CALLS] == ["05.token_verifier", "05.content_negotiation",
                                         "05.idempotent_post", "05.deny_list"]


@pytest.mark.parametrize("qid,names", CALLS, ids=[qid for qid, _ in CALLS])
def test_reference_passes_and_released_stub_fails(qid, names):
    result = run(qid, *(REF[n] for n in names))
    assert result.passed, result.message
    result = run(qid, *(STUBS[n] for n in names))
    assert not result.passed and result.message == STUB_MESSAGE


# ------------------------------------------------------------------ token verifier
def decode_with(**overrides):
    def verify_token(token, key):
        options = dict(algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER, leeway=30,
                       options={"require": ["exp", "sub"]})
        options.update(overrides)
        return jwt.decode(token, key, **options)
    return verify_token


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


@pytest.mark.parametrize("wrong,expected", [
    (decode_with(leeway=0), "leeway=30"),
    (decode_with(audience=None), "audience="),
    (decode_with(issuer=None), "another issuer"),
    (decode_with(options={}), "without exp"),
    (decode_with(options={"require": ["exp"]}), "without sub"),
    (decode_with(options={"verify_signature": False, "require": ["exp", "sub"]}),
     "payload was changed"),
    (decode_with(algorithms=["HS256", "HS384"]), "HS384"),
    (header_chooses, "InvalidKeyError"),
    (returns_none_when_bad, "returned None"),
    (raises_value_error, "not jwt.InvalidTokenError"),
], ids=["no leeway", "no audience", "no issuer", "exp not required", "sub not required",
        "signature not checked", "two algorithms", "header chooses", "returns None",
        "raises ValueError"])
def test_plausible_verifiers_fail_with_a_useful_message(wrong, expected):
    result = run("05.token_verifier", wrong)
    assert not result.passed and expected in result.message, result.message


# ------------------------------------------------------------------ content negotiation
POST = {"id": 1, "author": "ex", "text": "Fish & chips <3"}
OFFERED = ["application/json", "text/html", "text/plain"]


def card_app(*, vary=True, escape=True, empty_accept_is_json=True, list_on_406=True,
             negotiate=True):
    """The reference, with one rule switched off."""

    def make_card_app():
        app = Flask("card-variant")

        @app.get("/posts/<int:post_id>")
        def card(post_id):
            accept = request.accept_mimetypes
            if accept or not empty_accept_is_json:
                best = accept.best_match(OFFERED)
            else:
                best = OFFERED[0]
            if not negotiate:
                best = "application/json"
            if best is None:
                response = jsonify(error="not_acceptable",
                                   **({"available": OFFERED} if list_on_406 else {}))
                response.status_code = 406
            elif post_id != 1:
                response = jsonify(error="no_such_post")
                response.status_code = 404
            elif best == "text/html":
                text = html.escape(POST["text"]) if escape else POST["text"]
                response = app.response_class(f"<p>{text}</p>", mimetype="text/html")
            elif best == "text/plain":
                response = app.response_class(f"ex: {POST['text']}", mimetype="text/plain")
            else:
                response = jsonify(POST)
            if vary:
                response.vary.add("Accept")
            return response

        return app

    return make_card_app


@pytest.mark.parametrize("options,expected", [
    ({"vary": False}, "Vary: Accept"),
    ({"escape": False}, "escaped"),
    ({"empty_accept_is_json": False}, "no accept"),
    ({"list_on_406": False}, "available"),
    ({"negotiate": False}, "should be text/html"),
], ids=["no vary", "no escaping", "no accept means 406", "406 without list", "always JSON"])
def test_plausible_negotiation_mistakes_fail(options, expected):
    result = run("05.content_negotiation", card_app(**options))
    assert not result.passed and expected in result.message, result.message
    assert run("05.content_negotiation", card_app()).passed


# ------------------------------------------------------------------ idempotent POST
def shop(*, shared=True, honour_key=True, require_key=True, check_body=True, atomic=True):
    """A shop with one idempotency rule broken."""

    def make_shop(place_order, keys):
        app = Flask("shop-variant")
        store = keys if shared else {}

        @app.post("/orders")
        def order():
            key = request.headers.get("Idempotency-Key")
            if not key and require_key:
                return {"error": "idempotency_key_required"}, 400
            body = request.get_json()
            if honour_key and key:
                if atomic:
                    claim = {"request": body, "answer": None}
                    seen = store.setdefault(key, claim)
                else:
                    seen = store.get(key)
                    claim = {"request": body, "answer": None}
                    if seen is None:
                        seen = claim
                if seen is not claim:
                    if check_body and seen["request"] != body:
                        return {"error": "idempotency_key_reused"}, 422
                    if seen["answer"] is None:
                        return {"error": "in_progress"}, 409
                    return seen["answer"], 201
            answer = {"order": place_order(body["item"]), "item": body["item"]}
            if honour_key and key:
                claim["answer"] = answer
                store[key] = claim
            return answer, 201

        return app

    return make_shop


@pytest.mark.parametrize("options,expected", [
    ({"shared": False}, "which every server shares"),
    ({"honour_key": False}, "placed a second order"),
    ({"require_key": False}, "without an Idempotency-Key"),
    ({"check_body": False}, "different body"),
    ({"atomic": False}, "setdefault"),
], ids=["keys in one app", "key ignored", "key optional", "body not compared",
        "check then set"])
def test_plausible_idempotency_mistakes_fail(options, expected):
    result = run("05.idempotent_post", shop(**options))
    assert not result.passed and expected in result.message, result.message


def test_the_idempotency_variants_pass_when_nothing_is_broken():
    assert run("05.idempotent_post", shop()).passed


# ------------------------------------------------------------------ deny-list
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


class ForgetsTooEarly(NeverForgets):
    def is_revoked(self, jti, now):
        self.revoked = {j: e for j, e in self.revoked.items() if e > now + 10}
        return jti in self.revoked


@pytest.mark.parametrize("wrong,expected", [
    (NeverForgets, "grows forever"),
    (RevokesNothing, "should be True"),
    (ForgetsTooEarly, "must stay revoked"),
], ids=["never forgets", "revokes nothing", "forgets too early"])
def test_plausible_deny_lists_fail(wrong, expected):
    result = run("05.deny_list", wrong)
    assert not result.passed and expected in result.message, result.message
