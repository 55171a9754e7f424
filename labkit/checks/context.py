"""What a check knows about the run it is part of: its seed, and whether it is hidden.

A question's check draws every input the learner cannot see (user names, keys,
timelines, which server dies, the order of clients) from ``context().rng``, so a
table of the visible cases is useless, yet one seed always gives the same run and a
failure can be reproduced::

    from labkit.checks import context

    @question("03.predict_logouts", points=2)
    def predict_logouts(who_loses):
        ctx = context()
        users = [f"user{ctx.rng.randrange(10_000)}" for _ in range(8)]
        ...
        if ctx.hidden:      # extra probes the learner never saw (run at grade time)
            ...

The seed is fresh for every ``lk.check`` call unless one is given
(``lk.check(qid, answer, seed=1234)``, or the ``LABKIT_CHECK_SEED`` environment
variable). A failed check shows its seed, so the learner can run exactly that case
again. ``hidden`` is true only when ``labkit grade`` re-runs a question with probes
the notebook never showed.
"""

from __future__ import annotations

import contextvars
import os
import random
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

SEED_VARIABLE = "LABKIT_CHECK_SEED"


@dataclass(frozen=True)
class CheckContext:
    """The seed of one check run, its random source, and whether it is a hidden re-check."""

    seed: int
    hidden: bool = False
    rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rng", random.Random(self.seed))


_CURRENT: contextvars.ContextVar[CheckContext | None] = contextvars.ContextVar(
    "labkit_check_context", default=None)


def new_seed() -> int:
    """A seed for the next check: ``LABKIT_CHECK_SEED`` if set, else a random one."""
    fixed = os.environ.get(SEED_VARIABLE, "").strip()
    if fixed.isascii() and fixed.isdigit():
        return int(fixed)
    return secrets.randbelow(1_000_000)


def context() -> CheckContext:
    """The context of the check that is running (seed 0, visible, outside a check)."""
    current = _CURRENT.get()
    if current is None:
        current = CheckContext(seed=0)
        _CURRENT.set(current)
    return current


@contextmanager
def running(ctx: CheckContext) -> Iterator[CheckContext]:
    """Make ``ctx`` the current context for the duration of one check."""
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)
