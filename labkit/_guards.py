"""Guards for a server's sockets: deadlines for slow clients, a cap on connections.

A slow client is an attack when it is slow on purpose: a request head sent one
byte at a time (slowloris) or a body that never completes holds a thread for as
long as the server waits. :class:`TimedReader` gives a whole head, or a whole
body, a deadline; the balancer and every kit server answer ``408`` when it passes.
:class:`Refuser` turns away connections over a cap with a ``503`` without
spending a thread on them.

The timeouts follow common production settings: HAProxy's usual
``timeout http-request 10s`` for a head, Apache mod_reqtimeout's ``body=20`` for a
body (32 MiB on loopback needs well under a second), and 30 s for a client to
accept its answer.

    >>> import socket
    >>> a, b = socket.socketpair()
    >>> timer = TimedReader(a)
    >>> timer.start(0.05)
    >>> timer.readinto(bytearray(10))
    Traceback (most recent call last):
    ...
    labkit._guards.TimedOut
    >>> a.close(); b.close()

Next: :mod:`labkit._http` (the framing rules these guard).
"""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
from typing import Callable

HEAD_TIMEOUT = 10.0   # seconds for a whole request head
BODY_TIMEOUT = 20.0   # seconds for a whole request body
SEND_TIMEOUT = 30.0   # seconds a client may take to accept its answer


class TimedOut(Exception):
    """A read did not finish before its deadline (see :class:`TimedReader`)."""


class TimedReader(io.RawIOBase):
    """A socket's input that never waits past ``deadline`` (``time.monotonic()``).

    A per-read timeout alone does not stop a slow client: one byte every nine
    seconds never trips a ten-second timeout. A deadline for the whole head (or
    body) does. Wrap it in ``io.BufferedReader`` for ``readline``::

        timer = TimedReader(sock)
        rfile = io.BufferedReader(timer)
        timer.start(HEAD_TIMEOUT)   # then read the head from rfile

    The socket stays in blocking mode and the kernel enforces the time left
    (``SO_RCVTIMEO``; writes get ``SO_SNDTIMEO`` = ``SEND_TIMEOUT``): one system call
    per read, where Python's own socket timeouts add a ``poll`` before each one.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline: float | None = None
        self.received = 0          # bytes read from the socket so far
        self.eof_on_timeout = False
        self.on_timeout: Callable[[], Exception] = TimedOut  # what a late read raises
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, _timeval(SEND_TIMEOUT))

    def start(self, seconds: float | None) -> None:
        """Reads must finish within ``seconds`` from now (None: no deadline)."""
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        left = SEND_TIMEOUT if self.deadline is None else self.deadline - time.monotonic()
        if left <= 0:
            return self._timed_out()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(left))
        try:
            n = self.sock.recv_into(buffer)
        except (BlockingIOError, socket.timeout):  # EAGAIN: the time ran out
            return self._timed_out()
        self.received += n
        return n

    def _timed_out(self) -> int:
        if self.eof_on_timeout:
            return 0
        raise self.on_timeout()


def _timeval(seconds: float) -> bytes:
    """A ``struct timeval`` (never zero: zero would mean "wait forever")."""
    whole = int(seconds)
    return struct.pack("@ll", whole, max(1, int((seconds - whole) * 1e6)))


class Refuser:
    """Turns away connections over a cap: an answer, then a close a little later.

    Closing a socket at once, while the client's request is still unread, makes
    the kernel send a reset, which can destroy the answer before the client reads
    it. So a refused socket gets its answer and a FIN now, and is closed (its
    unread input drained) once it is a second old, or when more than ``keep`` wait.
    No thread is spent on a client that is being turned away.
    """

    def __init__(self, keep: int = 64, linger: float = 1.0) -> None:
        self.keep, self.linger = keep, linger
        self._waiting: list[tuple[float, socket.socket]] = []
        self._lock = threading.Lock()

    def refuse(self, conn: socket.socket, answer: bytes) -> None:
        try:
            conn.setblocking(False)  # a client that does not read cannot stall us
            conn.send(answer)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        with self._lock:
            self._waiting.append((time.monotonic(), conn))
        self.reap()

    def reap(self, *, everything: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            done = [c for t, c in self._waiting if everything or now - t > self.linger]
            if not everything and len(self._waiting) - len(done) > self.keep:
                done += [c for _, c in self._waiting[: len(self._waiting) - self.keep]]
            self._waiting = [(t, c) for t, c in self._waiting if c not in done]
        for conn in done:
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                pass
            conn.close()
