"""Idempotency keys: a retried ``POST`` that acts once (chapter 05).

The client invents one key per *intended* action and sends it, in an
``Idempotency-Key`` header, with every copy of the request. The server remembers the
answer it gave for the key and gives that answer again to a copy, without acting
twice. Each rule below closes a hole that a simpler version leaves open. Rules 3 and
4 are the IETF draft's ("The Idempotency-Key HTTP Header Field",
draft-ietf-httpapi-idempotency-key-header: 422 and 409); rule 1 is its security
advice (a lookup key combined with who the client is); rules 2 and 5 are this kit's
choice, where the draft would replay the first result "success or an error":

1. **After authentication, scoped to the user.** The key is looked up only once the
   caller is known, and under ``(user, key)``. Otherwise anyone who learns Alice's key
   gets Alice's stored answer, and a request that fails to log in could plant an
   answer under her key.
2. **Only answers of requests that ran are stored.** A request refused before it ran
   (401, 403, 408, 409, 429) and a server failure (5xx) store nothing, so a later
   good copy still runs. (Storing a 401 would make Alice's real request, with the
   same key, replay that 401 for ever.)
3. **Same key, different request: 422** ``idempotency_key_reused``. The server keeps
   a fingerprint (method, path, query, body) with the key; a copy must match it. A
   client bug that reuses a key must not get another request's answer.
4. **Key in flight: 409** ``idempotency_key_in_flight``. The first copy *claims* the
   key atomically (under a lock) before it runs; a second copy arriving meanwhile is
   refused rather than run in parallel, which would act twice.
5. **A failed request releases the key.** If the first copy crashes (an exception, a
   5xx), the claim is dropped, so a retry can run instead of waiting for ever.

Stored answers expire after ``ttl`` seconds; at most ``max_keys`` are kept (oldest
finished first). They live in this server's memory: a cluster needs them in a shared
store (the chapter's exercise). Requests without the header are not affected.

Example::

    >>> from labkit.apps import social
    >>> app = with_idempotency_keys(social.create_app(mode="basic", kdf_iterations=1_000))
    >>> c, alice = app.test_client(), ("alice", "wonderland")
    >>> copy = dict(json={"reaction": "HAHA"}, auth=alice, headers={"Idempotency-Key": "k1"})
    >>> c.post("/posts/1/react", **copy).json["reactions"]
    {'HAHA': 1}
    >>> again = c.post("/posts/1/react", **copy)
    >>> again.json["reactions"], again.headers["Idempotent-Replayed"]
    ({'HAHA': 1}, 'true')
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Request, Response, g, request

from ._json import ApiError, guard_request_body

__all__ = ["IdempotencyKeys", "with_idempotency_keys"]

# A key is a short printable ASCII string (the draft's sf-string, quotes optional).
_KEY = re.compile(r'"?([\x20-\x21\x23-\x7e]{1,255})"?')
# Answers that mean "this request did not run, try again": never stored (rule 2).
_NOT_RUN = {401, 403, 408, 409, 429}


@dataclass
class _Entry:
    fingerprint: str
    done: bool = False                  # False while the first copy runs (in flight)
    answer: tuple[int, bytes, str] | None = None  # status, body, content type
    expires: float = 0.0


def _user_of(app: Flask) -> Callable[[Request], str]:
    """Who is asking, by the social app's own auth mode (401 if nobody)."""
    auth = app.extensions["labkit.social"]["auth"]
    return lambda req: auth.identify(req).user


class IdempotencyKeys:
    """The table of ``(user, key) -> answer`` and the hooks that use it.

    ``identify(request) -> user`` must raise an HTTP 401 for a caller it does not
    know; ``methods`` are the methods that honour the header; ``skip`` the paths
    that ignore it (``/login``: nobody is logged in yet to scope a key to).
    """

    def __init__(self, *, identify: Callable[[Request], str],
                 methods: tuple[str, ...] = ("POST", "PATCH"),
                 skip: tuple[str, ...] = ("/login",), ttl: float = 24 * 3600,
                 max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.identify = identify
        self.methods = methods
        self.skip = skip
        self.ttl = ttl
        self.max_keys = max_keys
        self.clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._lock = threading.Lock()

    def in_flight(self) -> int:
        """How many keys are claimed by a request that is still running."""
        with self._lock:
            return sum(not e.done for e in self._entries.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- the hooks ---------------------------------------------------------------------

    def install(self, app: Flask) -> Flask:
        # Registered first, these run before the app's own hooks and views.
        app.before_request_funcs.setdefault(None, []).insert(0, self._before)
        app.after_request(self._after)
        app.teardown_request(self._teardown)
        app.extensions["labkit.idempotency"] = self
        return app

    def _before(self) -> Response | None:
        g.idempotency_claim = None
        header = request.headers.get("Idempotency-Key")
        if header is None or request.method not in self.methods or request.path in self.skip:
            return None
        match = _KEY.fullmatch(header.strip())
        if match is None:
            raise ApiError(400, "bad_idempotency_key",
                           "Idempotency-Key is 1 to 255 printable ASCII characters.")
        user = self.identify(request)           # rule 1: authenticate first (401)
        # This hook runs before the app's own, and reads the body (the fingerprint):
        # bound that read first, or a client that never sends its body holds a
        # worker for ever.
        guard_request_body()
        slot = (user, match.group(1))           # rule 1: scoped to the user
        fingerprint = self._fingerprint()
        now = self.clock()
        with self._lock:                        # rule 4: check and claim as one step
            self._expire(now)
            entry = self._entries.get(slot)
            if entry is None:
                self._entries[slot] = _Entry(fingerprint, expires=now + self.ttl)
                g.idempotency_claim = slot      # this copy runs; the others wait
                return None
        if entry.fingerprint != fingerprint:    # rule 3
            raise ApiError(422, "idempotency_key_reused",
                           "This Idempotency-Key was used for a different request.")
        if not entry.done:                      # rule 4
            raise ApiError(409, "idempotency_key_in_flight",
                           "A request with this Idempotency-Key is still running;"
                           " retry later.", headers=[("Retry-After", "1")])
        status, body, mimetype = entry.answer
        return Response(body, status, mimetype=mimetype,
                        headers={"Idempotent-Replayed": "true"})

    def _after(self, response: Response) -> Response:
        slot = g.pop("idempotency_claim", None)
        if slot is None:
            return response
        with self._lock:
            if response.status_code >= 500 or response.status_code in _NOT_RUN:
                self._entries.pop(slot, None)   # rules 2 and 5: release the key
            else:
                entry = self._entries[slot]
                entry.answer = (response.status_code, response.get_data(),
                                response.mimetype or "application/json")
                entry.done = True
                self._entries.move_to_end(slot)
        return response

    def _teardown(self, exc: BaseException | None) -> None:
        slot = g.pop("idempotency_claim", None)
        if slot is not None:                    # rule 5: the request died on the way
            with self._lock:
                self._entries.pop(slot, None)

    # -- helpers -----------------------------------------------------------------------

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for part in (request.method.encode(), request.path.encode("utf-8", "replace"),
                     request.query_string, request.get_data(cache=True)):
            digest.update(len(part).to_bytes(8, "big") + part)
        return digest.hexdigest()

    def _expire(self, now: float) -> None:
        for slot in [s for s, e in self._entries.items() if e.done and e.expires <= now]:
            del self._entries[slot]
        while len(self._entries) >= self.max_keys:
            oldest = next((s for s, e in self._entries.items() if e.done), None)
            if oldest is None:
                raise ApiError(503, "too_many_requests_in_flight",
                               "Too many requests in flight; retry later.")
            del self._entries[oldest]


def with_idempotency_keys(app: Flask, *, identify: Callable[[Request], str] | None = None,
                          **options: object) -> Flask:
    """Make ``app`` honour ``Idempotency-Key`` on ``POST`` (see the module's rules).

    ``identify`` defaults to the social app's own auth mode. ``options`` go to
    :class:`IdempotencyKeys` (``ttl``, ``max_keys``, ``clock``, ``methods``, ``skip``); the
    table is ``app.extensions["labkit.idempotency"]``.
    """
    keys = IdempotencyKeys(identify=identify or _user_of(app), **options)  # type: ignore[arg-type]
    return keys.install(app)
