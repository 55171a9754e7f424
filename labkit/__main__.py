"""``python -m labkit``: the same command line as the ``labkit`` console script."""

from __future__ import annotations

from .instructor.cli import main

raise SystemExit(main())
