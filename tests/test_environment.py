"""The Binder/conda environment installs what pyproject.toml declares."""

from __future__ import annotations

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _pip_list_of_environment_yml() -> list[str]:
    # A tiny reader for this file's shape (the kit does not depend on PyYAML):
    # the items indented under "- pip:".
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    items = []
    for line in lines[start + 1:]:
        if not line.strip() or line.strip().startswith("#"):
            continue
        if not line.startswith("      - "):
            break
        items.append(line.strip()[2:].strip())
    return items


def test_environment_yml_matches_pyproject():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = [item for item in _pip_list_of_environment_yml() if item != "-e ."]
    assert sorted(listed) == sorted(declared)


def test_environment_yml_installs_the_course_itself():
    assert "-e ." in _pip_list_of_environment_yml()
