"""The small Flask apps the course serves, each built by a factory function.

* :mod:`labkit.apps.social` -- users, posts, "HAHA" reactions and a conversation
  endpoint; stateful (server-side sessions) or re-authenticating every request.
* :mod:`labkit.apps.guarded` -- a login app in two profiles, ``"naive"`` and
  ``"defended"``, for the session attacks of chapter 02.
* :mod:`labkit.apps.cookie_session` -- the same login app on Flask's built-in
  signed-cookie session, to show what a signed cookie does and does not protect.
* :mod:`labkit.apps.clients` -- ``client(source="127.0.0.2", user_agent=...)``: a
  second "machine" on loopback, for the attack demonstrations.

Every app answers errors as JSON ``{"error": "<reason_code>", ...}`` with a 4xx
status, never an HTML page and never a 500 for bad input.

Example::

    from labkit.apps import social
    with lk.serve(lambda: social.create_app(mode="session"), name="social") as s:
        ...
"""

from __future__ import annotations
