"""HTTP clients for the attack demonstrations: a second "machine" on loopback.

The whole 127.0.0.0/8 block is loopback on Linux, so a client can connect to a
server on 127.0.0.1 *from* 127.0.0.2 by binding its socket's source address. The
server then sees a different client address, as if a second machine were talking
to it; the traffic still never leaves this computer.

macOS configures only 127.0.0.1: there, ``client(source="127.0.0.2")`` raises
:class:`~labkit.errors.LoopbackAddressError` saying how to add the address
(``sudo ifconfig lo0 alias 127.0.0.2 up``). WSL is Linux and needs nothing.

>>> mallory = client(source="127.0.0.2", user_agent="Mallory/1.0")   # doctest: +SKIP
>>> mallory.get(server.url + "/me")                                  # doctest: +SKIP
"""

from __future__ import annotations

import http.cookiejar
import socket
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from ..errors import AppConfigError, LoopbackAddressError

__all__ = ["client"]


class _SourceAddressAdapter(HTTPAdapter):
    """A requests adapter whose connections leave from a chosen local address."""

    def __init__(self, source: str, **kwargs: Any) -> None:
        self._source = source
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._source, 0)  # port 0: any free port
        super().init_poolmanager(*args, **kwargs)


def client(*, source: str = "127.0.0.1", user_agent: str | None = None,
           keep_cookies: bool = True) -> requests.Session:
    """A ``requests.Session`` that connects from ``source`` with ``user_agent``.

    ``keep_cookies=False`` makes a client that never stores what servers set: it
    sends only the cookies you pass per request (a thief replaying a stolen one).
    All course servers share the host 127.0.0.1, and cookies ignore ports, so a
    client that keeps cookies would carry one server's cookie to the next.

    Use it as a context manager (``with client(...) as c:``) so its connections
    are closed when you are done.
    """
    if not source.startswith("127."):
        raise AppConfigError("the course only sends traffic on loopback: use a 127.x.y.z source")
    _require_local_address(source)
    session = requests.Session()
    session.mount("http://", _SourceAddressAdapter(source))
    if not keep_cookies:
        session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    if user_agent is not None:
        session.headers["User-Agent"] = user_agent
    return session


def _require_local_address(source: str) -> None:
    """Fail now, with what to do, if this machine cannot send from ``source``."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind((source, 0))
    except OSError as exc:
        raise LoopbackAddressError(
            f"This machine cannot send from {source}: {exc.strerror or exc}. Linux (and"
            f" WSL) treat all of 127.0.0.0/8 as loopback; macOS configures only"
            f" 127.0.0.1. Add the address with `sudo ifconfig lo0 alias {source} up`"
            f" (until the next reboot), then run the cell again.") from None
    finally:
        probe.close()
