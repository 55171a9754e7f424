"""Signed tokens (JWT) for the social app: the stateless way to know who is asking.

In session mode (chapter 01) the server remembers who you are. In token mode it
remembers nothing: at login it *signs* a small statement, "this is alice, until
12:15", and gives it to the client. The client sends it back on every request in
``Authorization: Bearer <token>``, and any server that holds the key can check the
signature and believe the statement, with no memory of the login and no store to ask.

The token is a JSON Web Token (RFC 7519) made and checked by PyJWT. A server must
reject, with ``401`` and a reason code (never a 500):

==========================  ==========================================================
``token_required``          no ``Authorization: Bearer ...`` header
``malformed_token``         not three base64url segments of JSON; a time claim that
                            is not a number
``alg_not_allowed``         any algorithm but the one configured: ``none`` in any
                            casing, or HS256 on an RS256 server (algorithm confusion)
``bad_signature``           the payload or the signature was changed, or another key
                            signed it
``missing_claim``           no ``exp``, ``iat``, ``sub``, ``jti``, ``aud`` or ``iss``
``wrong_audience``          made for another service
``wrong_issuer``            made by another issuer
``token_expired``           ``exp`` has passed (beyond ``leeway``)
``token_not_yet_valid``     ``iat`` or ``nbf`` in the future (beyond ``leeway``)
``token_revoked``           on the deny-list, or older than the user's last "log out
                            everywhere" (its ``gen`` claim is behind the user's count)
``invalid_token``           anything else PyJWT rejects
==========================  ==========================================================

PyJWT checks the signature, the algorithm, the audience, the issuer and the required
claims. The times are checked here, against an injectable ``clock``, because PyJWT
always reads the real clock and a notebook wants to fast-forward.

Example::

    >>> from labkit.apps import social
    >>> from labkit import tokens
    >>> key = tokens.new_key()                       # 32 random bytes
    >>> app = social.create_app(mode=tokens.TokenAuth(key))
    >>> token = app.test_client().post("/login", json={
    ...     "username": "alice", "password": "wonderland"}).json["token"]
    >>> tokens.verify(token, key)["sub"]
    'alice'

This module is JWT only: no Flask, no app. :mod:`labkit.apps.token_auth` plugs a
:class:`TokenAuth` into the social app. ``social.create_app(mode="token")`` signs
with :data:`DEFAULT_KEY`, made once per Python process, so every server started from
one notebook (threads or forked processes) shares it, as the servers of a real
deployment share a key from their configuration.

Logging out of a stateless server does nothing to a token that was already handed
out: it stays valid until it expires. :class:`DenyList` (one server's memory) and
:class:`RedisDenyList` (shared by a cluster) fix that, and bring state back.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import json
import math
import secrets
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import jwt

from ..errors import LabkitError
from .redis import StoreUnavailable

__all__ = ["AUDIENCE", "DEFAULT_KEY", "DenyList", "ISSUER", "RedisDenyList", "REASONS",
           "KeyTypeError", "TokenAuth", "TokenConfigError", "TokenRejected", "WeakKeyError", "forge", "issue", "new_key",
           "verify"]

ISSUER = "labkit-social"            # who signs the tokens (the ``iss`` claim)
AUDIENCE = "labkit-social-api"      # who they are for (the ``aud`` claim)
REQUIRED = ["exp", "iat", "sub", "jti", "aud", "iss"]
MIN_HMAC_KEY = 32                   # bytes: as long as the SHA-256 output (RFC 7518 3.2)

REASONS = ("token_required", "malformed_token", "alg_not_allowed", "bad_signature",
           "missing_claim", "wrong_audience", "wrong_issuer", "token_expired",
           "token_not_yet_valid", "token_revoked", "invalid_token")

# PyJWT's errors, most specific first (several are subclasses of DecodeError).
_PYJWT_REASONS: list[tuple[type[Exception], str]] = [
    (jwt.InvalidAlgorithmError, "alg_not_allowed"),
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.InvalidAudienceError, "wrong_audience"),
    (jwt.InvalidIssuerError, "wrong_issuer"),
    (jwt.ExpiredSignatureError, "token_expired"),
    (jwt.ImmatureSignatureError, "token_not_yet_valid"),
    (jwt.DecodeError, "malformed_token"),
    (jwt.InvalidTokenError, "invalid_token"),
]


# What a client is told for each reason (never the library's exception text).
_MESSAGES = {
    "alg_not_allowed": "This server accepts one signing algorithm, and not this one.",
    "bad_signature": "The signature does not match: the token was changed or not"
                     " signed by this server.",
    "missing_claim": "The token lacks a required claim (exp, iat, sub, jti, aud, iss).",
    "wrong_audience": "The token was made for another service.",
    "wrong_issuer": "The token was made by another issuer.",
    "token_expired": "The token has expired; log in again.",
    "token_not_yet_valid": "The token is not valid yet.",
    "malformed_token": "Not a token: expected three base64url segments of JSON.",
    "invalid_token": "The token was refused.",
}


class TokenRejected(LabkitError):
    """A token failed verification; ``reason`` is one of :data:`REASONS`.

    An app answers it with 401 and (RFC 6750) a ``WWW-Authenticate`` challenge.
    """

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


class TokenConfigError(LabkitError, ValueError):
    """A token setting the kit cannot use (an unknown algorithm, a key of no use)."""


class WeakKeyError(TokenConfigError):
    """An HMAC secret too short to resist an offline guessing attack."""


class KeyTypeError(LabkitError, TypeError):
    """A key of the wrong type (an HS256 secret is bytes or str)."""


def new_key(algorithm: str = "HS256") -> Any:
    """A fresh signing key: 32 random bytes for HS256, a 2048-bit RSA key for RS256."""
    if algorithm.startswith("HS"):
        return secrets.token_bytes(MIN_HMAC_KEY)
    if algorithm.startswith("RS"):
        from cryptography.hazmat.primitives.asymmetric import rsa

        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise TokenConfigError(f"new_key knows HS* and RS* algorithms, not {algorithm!r}")


#: The key of ``create_app(mode="token")``: one per Python process, made at import.
DEFAULT_KEY = new_key()


def _verifying_key(key: Any, algorithm: str) -> Any:
    """The key that checks signatures: the secret itself, or an RSA public key."""
    if algorithm.startswith("HS"):
        return key
    if isinstance(key, (str, bytes)):  # a PEM: private keys sign, public keys verify
        from cryptography.hazmat.primitives import serialization

        pem = key.encode() if isinstance(key, str) else key
        if b"PRIVATE KEY" not in pem:
            return pem
        key = serialization.load_pem_private_key(pem, password=None)
    return key.public_key() if hasattr(key, "public_key") else key


def issue(user: str, key: Any, *, algorithm: str = "HS256", ttl: float = 900,
          now: float | None = None, issuer: str = ISSUER, audience: str = AUDIENCE,
          **claims: Any) -> str:
    """Sign a token saying "this is ``user``" for ``ttl`` seconds from ``now``.

    Times are whole Unix seconds (a JWT "NumericDate" may carry fractions; whole
    seconds are what libraries write); ``jti`` is a random id that names this one
    token, so that it alone can be revoked.

    >>> token = issue("alice", new_key(), ttl=60)
    >>> token.count(".")
    2
    """
    now = time.time() if now is None else now
    payload = {"iss": issuer, "aud": audience, "sub": user, "iat": int(now),
               "exp": int(now + ttl), "jti": secrets.token_urlsafe(16), **claims}
    return jwt.encode(payload, key, algorithm=algorithm)


def verify(token: str | None, key: Any, *, algorithm: str = "HS256",
           issuer: str = ISSUER, audience: str = AUDIENCE, leeway: float = 0.0,
           now: float | None = None) -> dict:
    """Return the claims of a good ``token``, or raise :class:`TokenRejected`.

    Only ``algorithm`` is accepted, whatever the token's header says (RFC 8725 3.1):
    the header is written by whoever made the token, so it must never choose how the
    token is checked. ``key`` is the HMAC secret, or for RS256 the private or public
    key (only the public half is used). ``leeway`` forgives that many seconds of
    clock difference between servers; ``now`` defaults to the real clock.
    """
    if not token:
        raise TokenRejected("token_required", "Send Authorization: Bearer <token>.")
    try:
        claims = jwt.decode(
            token, _verifying_key(key, algorithm), algorithms=[algorithm],
            audience=audience, issuer=issuer,
            options={"require": REQUIRED, "verify_exp": False, "verify_iat": False,
                     "verify_nbf": False})
    except jwt.InvalidTokenError as exc:
        reason = next(r for kind, r in _PYJWT_REASONS if isinstance(exc, kind))
        # Our own words, not PyJWT's: its exception text describes its parser and
        # echoes what it was sent (security.md 34: no exception text in answers).
        raise TokenRejected(reason, _MESSAGES[reason]) from None
    now = time.time() if now is None else now
    times = {name: claims[name] for name in ("exp", "iat", "nbf") if name in claims}
    if not all(_is_time(t) for t in times.values()):
        raise TokenRejected("malformed_token", "exp, iat and nbf must be numbers.")
    if times["exp"] <= now - leeway:
        raise TokenRejected("token_expired", "The token has expired; log in again.")
    if max(times["iat"], times.get("nbf", times["iat"])) > now + leeway:
        raise TokenRejected("token_not_yet_valid", "The token is not valid yet.")
    if not isinstance(claims["sub"], str) or not isinstance(claims["jti"], str):
        raise TokenRejected("invalid_token", "sub and jti must be strings.")
    return claims


def _is_time(value: Any) -> bool:
    """A JWT NumericDate: a number of seconds (not a bool, not NaN or infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) or math.isfinite(value)


class TokenAuth:
    """One server's token rules: the key, the algorithm, the lifetime, the deny-list.

    Pass it to :func:`labkit.apps.social.create_app` as ``mode=``: then ``POST /login``
    answers ``{"token": ..., "token_type": "Bearer", "expires_in": ttl}``; later
    requests carry ``Authorization: Bearer <token>`` and the server checks the
    signature, the algorithm, ``aud``, ``iss`` and the times, and keeps nothing
    (:mod:`labkit.apps.token_auth` does the HTTP side).

    Args:
        key: the HMAC secret (HS256, at least 32 bytes; see :func:`new_key`) or an
            RSA private key (RS256). Default: :data:`DEFAULT_KEY`.
        algorithm: ``"HS256"`` or ``"RS256"``; the only one accepted.
        ttl: seconds a token lives.
        leeway: seconds of clock difference forgiven when checking times.
        clock: Unix seconds, ``time.time`` by default; a
            :class:`~labkit.state.sessions.ManualClock` fast-forwards expiry.
        deny: a deny-list (:class:`DenyList`, :class:`RedisDenyList` or your own with
            ``revoke(jti, exp)`` and ``is_revoked(jti, now)``); then ``POST /logout``
            revokes the token it carries, and ``POST /logout?everywhere=1`` every token
            of that user issued so far (if the deny-list has ``revoke_user`` and
            ``generation``: tokens then carry the user's generation in a ``gen``
            claim, and a token whose ``gen`` is behind the user's count is refused).
        allow_weak_key: accept an HMAC secret shorter than 32 bytes, for the cracking
            demonstration only.
    """

    name = "token"

    def __init__(self, key: Any = None, *, algorithm: str = "HS256", ttl: float = 900,
                 leeway: float = 0.0, clock: Callable[[], float] = time.time,
                 deny: Any = None, issuer: str = ISSUER, audience: str = AUDIENCE,
                 allow_weak_key: bool = False) -> None:
        key = DEFAULT_KEY if key is None else key
        if algorithm not in ("HS256", "RS256"):
            raise TokenConfigError(
                f"algorithm must be 'HS256' or 'RS256', not {algorithm!r}")
        if algorithm == "HS256":
            raw = key.encode() if isinstance(key, str) else key
            if not isinstance(raw, bytes):
                raise KeyTypeError("an HS256 key is bytes (or str); use tokens.new_key()")
            if len(raw) < MIN_HMAC_KEY:
                if not allow_weak_key:
                    raise WeakKeyError(
                        f"An HS256 secret of {len(raw)} bytes can be guessed offline from"
                        " any token it signed. Use tokens.new_key() (32 random bytes), or"
                        " pass allow_weak_key=True to run the cracking experiment.")
                # PyJWT warns on every use of such a key; we were told, so keep quiet.
                warnings.filterwarnings("ignore", category=jwt.warnings.InsecureKeyLengthWarning,
                                        message=rf"The HMAC key is {len(raw)} bytes long")
        self.key = key
        self.algorithm = algorithm
        self.ttl = ttl
        self.leeway = leeway
        self.clock = clock
        self.deny = deny
        self.issuer = issuer
        self.audience = audience

    def __repr__(self) -> str:
        deny = f" deny={type(self.deny).__name__}" if self.deny is not None else ""
        return f"<TokenAuth {self.algorithm} ttl={self.ttl:g}s{deny}>"

    @property
    def public_key(self) -> bytes | None:
        """RS256: the public key as PEM, safe to publish (it can only verify)."""
        if self.algorithm != "RS256":
            return None
        from cryptography.hazmat.primitives import serialization

        public = _verifying_key(self.key, self.algorithm)
        if isinstance(public, bytes):
            return public
        return public.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)

    def issue(self, user: str, **claims: Any) -> str:
        """Sign a token for ``user`` now (what ``POST /login`` does)."""
        return issue(user, self.key, algorithm=self.algorithm, ttl=self.ttl,
                     now=self.clock(), issuer=self.issuer, audience=self.audience, **claims)

    def verify(self, token: str | None) -> dict:
        """Check ``token`` as this server does; the claims, or :class:`TokenRejected`.

        With a deny-list that cannot be reached, raises
        :class:`~labkit.state.redis.StoreUnavailable`: a server must then refuse
        (fail closed), not accept a token it cannot check.
        """
        now = self.clock()
        claims = verify(token, self.key, algorithm=self.algorithm, issuer=self.issuer,
                        audience=self.audience, leeway=self.leeway, now=now)
        if self.deny is not None:
            if self.deny.is_revoked(claims["jti"], now):
                raise TokenRejected("token_revoked", "This token was revoked.")
            generation = getattr(self.deny, "generation", None)
            current = generation(claims["sub"]) if generation else None
            if current is not None and _generation_of(claims) < current:
                raise TokenRejected("token_revoked",
                                    "You logged out everywhere after this token was issued.")
        return claims

    def revoke(self, claims: dict, *, everywhere: bool = False) -> None:
        """Deny the token with these ``claims`` (or, ``everywhere``, all of its user's).

        Needs a deny-list; raises :class:`~labkit.state.redis.StoreUnavailable` when
        it cannot be reached (the token was then *not* revoked).
        """
        if self.deny is None:
            return  # the token stays valid until it expires: see chapter 05
        if everywhere and hasattr(self.deny, "revoke_user"):
            self.deny.revoke_user(claims["sub"])
        else:
            self.deny.revoke(claims["jti"], claims["exp"] + self.leeway)

    def login_claims(self, user: str) -> dict:
        """Extra claims for a token issued at login (may raise ``StoreUnavailable``).

        The user's "log out everywhere" count goes into the token, so that a later
        logout-everywhere refuses it, with no clock involved: a login in the same
        second as the logout is still newer (a counter, not a time).
        """
        if self.deny is not None and hasattr(self.deny, "generation"):
            return {"gen": self.deny.generation(user)}
        return {}


def _generation_of(claims: dict) -> int:
    """A token's ``gen`` claim: 0 when absent (issued before any logout-everywhere)."""
    gen = claims.get("gen", 0)
    return gen if isinstance(gen, int) and not isinstance(gen, bool) else -1


# ----------------------------------------------------------------- revocation lists
class DenyList:
    """Revoked tokens, in this server's memory, until each one expires by itself.

    ``revoke(jti, exp)`` denies one token, until it expires by itself: an entry is
    dropped once the token it names has expired, so the list holds only revoked
    tokens that are still alive. ``revoke_user(user)`` denies every token of ``user``
    issued so far by counting up the user's *generation*; tokens carry the
    generation they were issued in (the ``gen`` claim) and an older one is refused.
    A counter, not a time: a login in the same second as the logout is still newer,
    and no two servers' clocks have to agree. The count is kept for good (one small
    number per user who ever logged out everywhere): were it to expire and restart
    at zero, old numbers would become valid again. This is state again: a cluster
    needs one shared list (:class:`RedisDenyList`).

    >>> deny = DenyList()
    >>> deny.revoke("token-1", exp=100)
    >>> deny.is_revoked("token-1", now=50), deny.is_revoked("token-2", now=50)
    (True, False)
    >>> deny.is_revoked("token-1", now=100), len(deny)
    (False, 0)
    >>> deny.generation("bob"), deny.revoke_user("bob"), deny.generation("bob")
    (0, 1, 1)
    """

    def __init__(self) -> None:
        self._jtis: dict[str, float] = {}
        self._generations: dict[str, int] = {}            # user -> logouts everywhere
        self._expiry: list[tuple[float, str]] = []        # a heap of (exp, jti)
        self._lock = threading.Lock()

    def revoke(self, jti: str, exp: float) -> None:
        with self._lock:
            self._jtis[jti] = exp
            heapq.heappush(self._expiry, (exp, jti))

    def is_revoked(self, jti: str, now: float) -> bool:
        with self._lock:
            self._purge(now)
            return jti in self._jtis

    def revoke_user(self, user: str) -> int:
        """Revoke every token of ``user`` issued so far; return the new generation."""
        with self._lock:
            self._generations[user] = self._generations.get(user, 0) + 1
            return self._generations[user]

    def generation(self, user: str) -> int:
        """How many times ``user`` logged out everywhere (0: never)."""
        with self._lock:
            return self._generations.get(user, 0)

    def _purge(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            exp, jti = heapq.heappop(self._expiry)
            if self._jtis.get(jti) == exp:
                del self._jtis[jti]

    def __len__(self) -> int:
        with self._lock:
            return len(self._jtis) + len(self._generations)

    def __repr__(self) -> str:
        return f"<DenyList {len(self)} entries>"


class RedisDenyList:
    """Revoked tokens in Redis, shared by every server of a cluster.

    Each revoked token is one key, ``deny:jti:<jti>``, that Redis deletes by itself at
    the token's ``exp`` (``SET ... EXAT``); a user's generation (how many times they
    logged out everywhere) is ``deny:user:<name>``, counted up with ``INCR``, which is
    atomic, so two servers logging the same user out at once both count. Every request now costs a round trip to Redis: the price of
    being able to take a token back. When Redis is down the methods raise
    :class:`~labkit.state.redis.StoreUnavailable` and the app answers 503: it
    fails closed rather than accept tokens it cannot check.
    """

    def __init__(self, client_or_server: Any, *, prefix: str = "deny:") -> None:
        from .redis import RedisServer

        if isinstance(client_or_server, RedisServer):
            client_or_server = client_or_server.client()
        self.client = client_or_server
        self.prefix = prefix

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        import redis

        try:
            return getattr(self.client, method)(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(f"Redis cannot be reached: {exc}") from None

    def revoke(self, jti: str, exp: float) -> None:
        self._call("set", f"{self.prefix}jti:{jti}", "1", exat=max(1, math.ceil(exp)))

    def is_revoked(self, jti: str, now: float) -> bool:
        return bool(self._call("exists", f"{self.prefix}jti:{jti}"))

    def revoke_user(self, user: str) -> int:
        return int(self._call("incr", f"{self.prefix}user:{user}"))

    def generation(self, user: str) -> int:
        value = self._call("get", f"{self.prefix}user:{user}")
        return int(value) if value is not None else 0

    def __len__(self) -> int:
        return sum(1 for _ in self._call("scan_iter", match=f"{self.prefix}*"))

    def __repr__(self) -> str:
        return f"<RedisDenyList prefix={self.prefix!r}>"


# ----------------------------------------------------------------- the attacker's tool
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, payload: dict, *, key: bytes | str | None = None,
          signature: bytes = b"") -> str:
    """Build a token by hand, as an attacker would: no library, no checks.

    The header and payload are encoded as base64url JSON; with ``key`` the token is
    signed HMAC-SHA256 with those bytes, whatever the header claims (a public key's
    PEM works: that is algorithm confusion); otherwise ``signature`` is appended as
    is (empty for ``alg: none``).

    >>> forge({"alg": "none"}, {"sub": "admin"})
    'eyJhbGciOiAibm9uZSJ9.eyJzdWIiOiAiYWRtaW4ifQ.'
    """
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if key is not None:
        secret = key.encode() if isinstance(key, str) else key
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"
