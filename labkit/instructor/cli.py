"""The ``labkit`` command line: ``release``, ``grade``, ``grade-merge``, ``progress``, ``doctor``.

Each subcommand is a thin layer over a module of :mod:`labkit.instructor`
(:mod:`.release`, :mod:`.grading` and :mod:`.reports`, :mod:`.progress`,
:mod:`.doctor`). Mistakes in the input end the program with one readable line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from ..errors import GradeError, LabkitError


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


def _chapter(text: str) -> str:
    if len(text) == 1 and text.isdigit():
        text = "0" + text
    if not (len(text) == 2 and text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a chapter number such as 03")
    return text


def _shard(text: str) -> tuple[int, int]:
    from .grading import parse_shard

    try:
        return parse_shard(text)
    except LabkitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
        description="Run each notebook in private scratch folders (every passed check"
                    " runs again as a hidden re-check) and score its sealed check records.")
    grade.add_argument("paths", nargs="+", metavar="NOTEBOOK_OR_FOLDER")
    grade.add_argument("--out", metavar="FILE", help="also write FILE.csv, .json or .html")
    grade.add_argument("--timeout", type=_positive, default=600.0, metavar="S",
                       help="seconds a whole notebook may run (default: 600)")
    grade.add_argument("--cell-timeout", type=_positive, default=None, metavar="S",
                       help="seconds one cell may run (default: the --timeout)")
    grade.add_argument("--jobs", type=_jobs, default=1, metavar="N",
                       help="notebooks graded at the same time (default: 1)")
    grade.add_argument("--chapter", type=_chapter, default=None, metavar="NN",
                       help="grade every notebook as chapter NN (default: from its name,"
                            " metadata or checks)")
    grade.add_argument("--feedback", metavar="DIR",
                       help="write one HTML feedback page per submission into DIR")
    grade.add_argument("--shard", type=_shard, default=None, metavar="I/N",
                       help="grade only shard I of N and write a partial --out PART.json"
                            " (merge the parts with grade-merge)")

    merge = commands.add_parser(
        "grade-merge", help="merge the partial results of `grade --shard`",
        description="Merge PART.json files from `labkit grade --shard I/N` into the"
                    " report one run would have written.")
    merge.add_argument("parts", nargs="+", metavar="PART.json")
    merge.add_argument("--out", required=True, metavar="FILE",
                       help="the report: FILE.csv, .json or .html")
    merge.add_argument("--feedback", metavar="DIR",
                       help="write one HTML feedback page per submission into DIR")

    progress = commands.add_parser(
        "progress", help="show which questions you have passed",
        description="Read the check results stored in your exercise notebooks (run"
                    " them and save first) and show what you have passed.")
    progress.add_argument("folder", nargs="?", default="exercises", metavar="DIR",
                          help="your exercise notebooks (default: exercises)")

    commands.add_parser("doctor", help="check that this machine has what the course needs")
    return parser


def _grade(args: argparse.Namespace) -> int:
    from . import reports
    from . import grading

    if args.shard is not None:
        if not args.out or Path(args.out).suffix.lower() != ".json":
            raise GradeError("With --shard I/N, name the partial result with --out"
                             " PART.json (then merge the parts with grade-merge).")
        if not Path(args.out).parent.is_dir():
            raise GradeError(f"Cannot write to {args.out}: its folder does not exist.")
    elif args.out:
        reports.check_report_path(args.out)
    submissions = grading.find_submissions(args.paths)
    positions = grading.shard_positions(len(submissions), args.shard)
    grades = grading.grade([submissions[i] for i in positions], timeout=args.timeout,
                           cell_timeout=args.cell_timeout, jobs=args.jobs,
                           chapter=args.chapter, progress=sys.stderr.isatty())
    if args.shard is None:
        _finish(grades, args)
        return 0
    print(reports.format_table(grades))
    out = Path(args.out)
    try:
        out.write_text(reports.part_json(
            grades, positions=positions, notebooks=[s.label for s in submissions],
            shard=args.shard), encoding="utf-8")
    except OSError as exc:
        raise GradeError(f"Cannot write {out}: {exc.strerror}.") from None
    index, total = args.shard
    print(f"shard {index}/{total}: {len(grades)} of {len(submissions)} notebooks graded,"
          f" partial result written to {out}")
    return 0


def _finish(grades: list, args: argparse.Namespace) -> None:
    """Print the table and the summary; write the report and the feedback pages."""
    from . import reports

    print(reports.format_table(grades))
    print()
    print(reports.format_summary(grades))
    if args.out:
        print(f"report written to {reports.write_report(grades, Path(args.out))}")
    if args.feedback:
        pages = reports.write_feedback(grades, args.feedback)
        print(f"{len(pages)} feedback page(s) written to {args.feedback}")


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
            return _grade(args)
        if args.command == "grade-merge":
            from . import reports

            reports.check_report_path(args.out)
            grades = reports.merge_parts(args.parts)
            _finish(grades, args)
            return 0
        if args.command == "progress":
            from .progress import format_progress, progress

            print(format_progress(progress(args.folder)))
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
