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
    assert len(lk.__all__) <= 16


def test_the_console_script_and_module_answer_help():
    for command in ([sys.executable, "-m", "labkit", "--help"],):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0 and "release" in result.stdout and "grade" in result.stdout
