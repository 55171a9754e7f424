"""Instructor tools: the ``labkit`` command line.

:mod:`.cli` parses the commands; :mod:`.release` turns solution notebooks into
exercises; :mod:`.grading` grades submissions, running each one with
:mod:`.runner` in a kernel started by :mod:`.kernel`, and :mod:`.reports` writes
the tables, reports, feedback pages and shard files; :mod:`.progress` shows a
learner what they have passed; :mod:`.doctor` says whether this machine has what
the course needs.
"""
