"""The contract's public surface: `import labkit as lk` and these names."""

from __future__ import annotations

import subprocess
import sys

import labkit as lk

CONTRACT = {"serve", "Server", "Cluster", "load_test", "check", "hint", "LabkitError"}


def test_the_contract_names_are_public():
    assert CONTRACT <= set(lk.__all__)
    for name in lk.__all__:
        assert getattr(lk, name) is not None


def test_the_surface_stays_small():
    # About fifteen classes and verbs, plus three namespaces a chapter reads whole
    # (lk.policies, lk.tokens, lk.replication) and the names wave 2 adds.
    assert len(lk.__all__) <= 24


def test_namespaces_are_the_kit_modules_a_chapter_reads():
    assert hasattr(lk.policies, "Sticky") and hasattr(lk.policies, "RequestInfo")
    assert callable(lk.tokens.issue) and callable(lk.tokens.verify)
    assert issubclass(lk.replication.WriteInvalidate, lk.replication.Replica)


def test_the_console_script_and_module_answer_help():
    for command in ([sys.executable, "-m", "labkit", "--help"],):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "release" in result.stdout and "grade" in result.stdout
