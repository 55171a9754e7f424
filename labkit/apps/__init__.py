"""The small Flask apps the course serves, each built by a factory function.

* :mod:`labkit.apps.social` -- users, posts, "HAHA" reactions and a conversation
  endpoint; stateful (server-side sessions) or re-authenticating every request.
* :mod:`labkit.apps.guarded` -- a login app in two profiles, ``"naive"`` and
  ``"defended"``, for the session attacks of chapter 02.
* :mod:`labkit.apps.cookie_session` -- the same login app on Flask's built-in
  signed-cookie session, to show what a signed cookie does and does not protect.
* :mod:`labkit.apps.token_auth` -- the social app's token mode (chapter 05): the
  HTTP side of :class:`labkit.state.tokens.TokenAuth`.
* :mod:`labkit.apps.idempotency` -- ``with_idempotency_keys(app)``: a retried
  ``POST`` acts once (the IETF Idempotency-Key draft's rules, chapter 05).
* :mod:`labkit.apps.uploads` -- an upload server and the size-counting gateway in
  front of it (chapter 07).
* :mod:`labkit.apps.clients` -- ``client(source="127.0.0.2", user_agent=...)``: a
  second "machine" on loopback, for the attack demonstrations.
* ``_auth`` (passwords, callers, the ``Auth`` seam) and ``_json`` (reason codes,
  bodies; from :mod:`labkit.serving.json_api`) are what the apps share.

Every app answers errors as JSON ``{"error": "<reason_code>", ...}`` with a 4xx
status, never an HTML page and never a 500 for bad input; no error body carries
exception text; with no secret key given, an app makes a random one.

Example::

    from labkit.apps import social
    with lk.serve(lambda: social.create_app(mode="session"), name="social") as s:
        ...
"""

from __future__ import annotations
