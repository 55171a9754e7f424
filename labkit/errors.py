"""Every error the kit raises on purpose.

All of them derive from :class:`LabkitError`, so a notebook can catch the kit's
complaints with one ``except``. Each message says what happened and what to do next,
the way werkzeug's "Port N is in use" message does.
"""

from __future__ import annotations


class LabkitError(Exception):
    """Base class of every error the kit raises on purpose."""


class BadAppError(LabkitError, TypeError):
    """What was passed to ``serve`` is not a Flask app or a factory of one."""


class AppFactoryError(LabkitError):
    """The app factory raised while building the app."""


class ServerStartError(LabkitError):
    """A server did not start, or did not answer in time."""


class PortInUseError(ServerStartError):
    """The port a server wanted is taken by another program."""


class LoopbackAddressError(LabkitError, OSError):
    """A second loopback address (127.0.0.2, ...) is not configured on this machine."""


class LabkitWarning(UserWarning):
    """The kit did something other than asked, and says why (e.g. a platform fallback)."""


class UnknownServerError(LabkitError, KeyError):
    """A server name that the cluster does not have."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class UnknownPolicyError(LabkitError, ValueError):
    """A balancing policy name the kit does not know."""


class ServerStateError(LabkitError):
    """An operation that does not fit the server's state (e.g. using a closed one)."""


class StoreError(LabkitError):
    """The session store (Redis) could not be started or reached."""


class StorePortInUseError(StoreError):
    """Redis could not listen: another program holds the port it was given."""


class BadOptionError(LabkitError, ValueError):
    """An option outside its range (a negative timeout, an unknown protocol name)."""


class UnknownSessionError(LabkitError, KeyError):
    """No live session with this id: it expired, was revoked, or was never issued."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class SessionDataError(LabkitError, TypeError):
    """Session data that a store cannot keep (not a dict, or not JSON-serialisable)."""


class CheckError(LabkitError):
    """A graded check was called wrongly (unknown question id, missing answers)."""


class ReleaseError(LabkitError):
    """``labkit release`` cannot proceed (malformed markers, edited exercises)."""


class GradeError(LabkitError):
    """``labkit grade`` cannot proceed (no notebooks found, bad output path)."""


class EngineError(LabkitError):
    """A production part (HAProxy, gunicorn) is missing, or refused to start."""


class CostModelError(LabkitError, ValueError):
    """An input the cost model cannot use (a negative count, zero capacity, an unknown design)."""


class AppConfigError(LabkitError, ValueError):
    """A course app was asked for a mode or profile it does not have."""
