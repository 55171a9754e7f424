"""The Binder/conda environment installs what pyproject.toml declares."""

from __future__ import annotations

import pathlib
import tomllib

ROOT = pathlib.Path(__file__).resolve().parents[2]


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


# -- what Binder (repo2docker) needs from the file, as its conda build pack reads it ----

def test_binder_reads_this_environment_yml():
    # repo2docker looks in binder/ (or .binder/) first; a folder there would hide this file.
    assert not (ROOT / "binder").exists() and not (ROOT / ".binder").exists()
    text = (ROOT / "environment.yml").read_text()
    assert "\t" not in text                      # YAML forbids tabs for indentation
    lines = text.splitlines()
    dependencies = lines.index("dependencies:")
    top = [line.strip()[2:] for line in lines[dependencies + 1:] if line.startswith("  - ")]
    # An exact "python=3.x" pin is how repo2docker picks the Python version.
    pins = [item for item in top if item.startswith("python=")]
    assert len(pins) == 1 and tuple(map(int, pins[0][len("python="):].split("."))) >= (3, 11)
    assert "pip" in top and "conda-forge" in text


def test_the_course_is_a_local_pip_requirement_installed_after_the_copy():
    # repo2docker installs environment.yml before copying the repository, unless the pip
    # list holds a local requirement such as "-e .": then it copies first, so the course
    # itself (labkit, its console script) can be installed. Keep it the last item, so
    # every dependency is resolved from the index before it.
    assert _pip_list_of_environment_yml()[-1] == "-e ."


def test_binder_installs_haproxy_for_chapter_06b():
    # repo2docker installs the packages named in apt.txt (one per line, # comments).
    packages = [line.strip() for line in (ROOT / "apt.txt").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert packages == ["haproxy"]
