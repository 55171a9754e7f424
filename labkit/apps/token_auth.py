"""Token mode of the social app: a JWT at login, checked on every request.

:class:`labkit.state.tokens.TokenAuth` holds the rules (key, algorithm, lifetime,
deny-list) and knows nothing about HTTP. :class:`TokenMode` is the other half: the
:class:`~labkit.apps._auth.Auth` seam of :mod:`labkit.apps.social`, which reads the
``Authorization: Bearer`` header and turns every refusal into a 401 with a reason
(RFC 6750's ``WWW-Authenticate`` challenge), or a 503 when the deny-list is down.

You rarely build one yourself: ``social.create_app(mode=tokens.TokenAuth(key))``
wraps the rules in a :class:`TokenMode`, and ``mode="token"`` uses the process's
:data:`~labkit.state.tokens.DEFAULT_KEY`.

>>> from labkit.apps import social
>>> app = social.create_app(mode="token", kdf_iterations=1_000)
>>> app.test_client().get("/me").json["error"]
'token_required'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Request, Response

from ..state.redis import StoreUnavailable
from ..state.tokens import TokenAuth, TokenRejected
from ._auth import Caller, PasswordBook
from ._json import ApiError

__all__ = ["TokenMode", "bearer_token", "token_mode"]


def bearer_token(req: Request) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = req.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _unavailable(message: str) -> ApiError:
    return ApiError(503, StoreUnavailable.reason, message)


class TokenMode:
    """The social app's token mode: an :class:`~labkit.apps._auth.Auth` around a
    :class:`~labkit.state.tokens.TokenAuth`.

    Attributes other than the Auth methods (``key``, ``ttl``, ``deny``, ``issue``,
    ``verify``...) are the rules' own, so ``app.extensions["labkit.tokens"].ttl``
    reads as before.
    """

    name = "token"

    def __init__(self, rules: TokenAuth) -> None:
        self.rules = rules

    def __getattr__(self, attribute: str) -> Any:
        if attribute == "rules":  # not set yet (a copy being built): no recursion
            raise AttributeError(attribute)
        return getattr(self.rules, attribute)

    def __repr__(self) -> str:
        return repr(self.rules)

    def install(self, app: Flask, passwords: PasswordBook) -> None:
        app.extensions["labkit.tokens"] = self.rules  # nothing to count: no sessions

    def identify(self, req: Request) -> Caller:
        try:
            claims = self.rules.verify(bearer_token(req))
        except TokenRejected as exc:
            # RFC 6750: name the error only when a token came and was bad.
            challenge = "Bearer" if exc.reason == "token_required" else (
                f'Bearer error="invalid_token", error_description="{exc.reason}"')
            raise ApiError(401, exc.reason, str(exc),
                           headers=[("WWW-Authenticate", challenge)]) from None
        except StoreUnavailable:
            raise _unavailable("The deny-list cannot be reached; try again soon.") from None
        return Caller(user=claims["sub"])

    def login(self, user: str, response: Response) -> dict:
        try:
            claims = self.rules.login_claims(user)
        except StoreUnavailable:
            raise _unavailable("The deny-list cannot be reached; try again soon.") from None
        return {"token": self.rules.issue(user, **claims), "token_type": "Bearer",
                "expires_in": self.rules.ttl}

    def remember(self, caller: Caller) -> None:
        pass  # the server keeps nothing: that is the point

    def logout(self, req: Request, response: Response) -> None:
        """Revoke the caller's token (with a deny-list); without one, nothing happens."""
        if self.rules.deny is None:
            return  # the token stays valid until it expires: see chapter 05
        try:
            claims = self.rules.verify(bearer_token(req))
        except TokenRejected:
            return  # nothing valid to revoke
        except StoreUnavailable:
            raise _unavailable("The deny-list cannot be reached; the token was not"
                               " revoked.") from None
        try:
            self.rules.revoke(claims, everywhere=bool(req.args.get("everywhere")))
        except StoreUnavailable:
            raise _unavailable("The deny-list cannot be reached; the token was not"
                               " revoked.") from None


def token_mode(*, clock: Callable[[], float] = time.time, **_store_options: Any) -> TokenMode:
    """``AUTH_MODES["token"]``: the default rules, signed with ``DEFAULT_KEY``."""
    # create_app passes the session store's default clock (time.monotonic); token
    # times are Unix times, so that default becomes time.time. A ManualClock stays.
    return TokenMode(TokenAuth(clock=time.time if clock is time.monotonic else clock))
