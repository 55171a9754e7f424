"""The ``labkit`` command line: ``release``, ``grade`` and ``doctor``.

Each subcommand is a thin layer over a module (:mod:`labkit.instructor.release`,
:mod:`labkit.instructor.grading`, :mod:`labkit.instructor.doctor`). Mistakes in the input end the
program with one readable line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from ..errors import LabkitError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (not usage + error)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


def _jobs(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="labkit", description="The lab kit of 'Two Ways to Serve'.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     parser_class=_Parser)

    release = commands.add_parser(
        "release", help="regenerate exercises/ from solutions/",
        description="Write exercises/NN_*.ipynb from solutions/NN_*.ipynb: solution"
                    " regions become stubs, outputs are cleared.")
    release.add_argument("--force", action="store_true",
                         help="overwrite exercise notebooks that a person edited")
    release.add_argument("--solutions", default="solutions", metavar="DIR",
                         help="instructor notebooks (default: solutions)")
    release.add_argument("--exercises", default="exercises", metavar="DIR",
                         help="where to write the student notebooks (default: exercises)")

    grade = commands.add_parser(
        "grade", help="run submitted notebooks and score their checks",
        description="Run each notebook in a scratch copy and score its checks.")
    grade.add_argument("paths", nargs="+", metavar="NOTEBOOK_OR_FOLDER")
    grade.add_argument("--out", metavar="FILE", help="also write FILE.csv, .json or .html")
    grade.add_argument("--timeout", type=_positive, default=600.0, metavar="S",
                       help="seconds a whole notebook may run (default: 600)")
    grade.add_argument("--cell-timeout", type=_positive, default=None, metavar="S",
                       help="seconds one cell may run (default: the --timeout)")
    grade.add_argument("--jobs", type=_jobs, default=1, metavar="N",
                       help="notebooks graded at the same time (default: 1)")

    commands.add_parser("doctor", help="check that this machine has what the course needs")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage mistake already reported
        return exc.code if isinstance(exc.code, int) else 2
    try:
        if args.command == "release":
            from .release import release

            print(release(solutions=args.solutions, exercises=args.exercises,
                          force=args.force))
            return 0
        if args.command == "grade":
            from . import grading

            if args.out:
                grading.check_report_path(args.out)
            grades = grading.grade(args.paths, timeout=args.timeout,
                                   cell_timeout=args.cell_timeout, jobs=args.jobs)
            print(grading.format_table(grades))
            if args.out:
                print(f"report written to {grading.write_report(grades, Path(args.out))}")
            return 0
        if args.command == "doctor":
            from .doctor import doctor

            return doctor()
    except LabkitError as exc:
        print(f"labkit {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"labkit {args.command}: interrupted", file=sys.stderr)
        return 130
    parser.print_help()
    return 2
