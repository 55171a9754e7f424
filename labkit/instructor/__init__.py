"""Instructor tools: the ``labkit`` command line.

:mod:`.cli` parses the commands; :mod:`.release` turns solution notebooks into
exercises, :mod:`.grading` runs submissions and reads back their checks, and
:mod:`.doctor` says whether this machine has what the course needs.
"""
