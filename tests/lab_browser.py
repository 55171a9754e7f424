"""What every browser test shares: ``make lab`` on a free port, and Chromium driving it.

The browser tests open the course the way a learner does: ``make lab`` starts
JupyterLab with the repository as its root, and Debian's Chromium (headless, driven
by Playwright) opens notebooks, runs them from the Run menu and clicks widgets::

    from lab_browser import lab_server, open_notebook, run_all, ROOT

    with lab_server("my-test") as (base, token, folder):
        ...

Needs Debian's Chromium at /usr/bin/chromium (``.ci/run`` installs it). Without it a
browser test is skipped on a developer's machine and fails under CI.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from typing import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
QUIET = (" --LabApp.news_url= --LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate")


def require_chromium() -> None:
    """Skip the calling test module without Chromium; under CI, fail instead."""
    if os.path.exists(CHROMIUM):
        return
    if os.environ.get("CI"):
        pytest.fail("CI needs Debian's chromium at /usr/bin/chromium (see .ci/run)",
                    pytrace=False)
    pytest.skip("no /usr/bin/chromium here (apt-get install chromium)",
                allow_module_level=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def lab_server(label: str, *, quiet: bool = True) -> Iterator[tuple[str, str, pathlib.Path]]:
    """``make lab`` itself on a free port, with a known token and a fresh workspace.

    Yields ``(base_url, token, folder)``; ``folder`` is a scratch folder under
    ``build/`` (git-ignored) for notebook copies, removed afterwards with everything
    the lab started. ``quiet=False`` starts the lab exactly as a learner does (no
    flags that hide the news prompt), to test the course's own settings.
    """
    folder = ROOT / "build" / f"lab-{label}-{secrets.token_hex(4)}"
    folder.mkdir(parents=True)
    port, token = free_port(), secrets.token_hex(16)
    args = f"--no-browser --IdentityProvider.token={token}" + (QUIET if quiet else "")
    # a fresh workspace, so tabs saved by earlier runs cannot change what opens
    args += f" --LabApp.workspaces_dir={folder / 'workspaces'}"
    process = subprocess.Popen(
        ["make", "--no-print-directory", "lab", f"PORT={port}", f"LAB_ARGS={args}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("make lab did not serve JupyterLab within 90 s")
                time.sleep(0.2)
        yield base, token, folder
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # make, jupyter lab and its kernels
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        wait_for_group_exit(process.pid)
        shutil.rmtree(folder, ignore_errors=True)


def wait_for_group_exit(group: int, timeout: float = 20) -> None:
    """Wait until every process of ``group`` (jupyter lab, its kernels) is gone."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        alive = []
        for p in psutil.process_iter():
            try:
                if os.getpgid(p.pid) == group and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
            except (OSError, psutil.Error):
                pass
        if not alive:
            return
        if time.monotonic() > deadline:
            for p in alive:
                p.kill()
            return
        time.sleep(0.1)


def open_notebook(page, base: str, token: str, path: pathlib.Path, *,
                  reset: bool = False):
    """Open ``path`` in JupyterLab, accept the kernel dialog, wait until the kernel is idle.

    Returns the notebook panel's locator. ``reset`` opens it alone (no saved tabs).
    """
    query = f"?reset&token={token}" if reset else f"?token={token}"
    page.goto(f"{base}/lab/tree/{path.relative_to(ROOT).as_posix()}{query}")
    notebook = page.locator(".jp-NotebookPanel:visible")
    notebook.first.wait_for(timeout=90_000)
    accept = page.locator(".jp-Dialog button.jp-mod-accept")
    try:  # JupyterLab may ask which kernel to use first
        accept.wait_for(timeout=5_000)
        accept.click()
    except Exception:
        pass
    notebook.locator(".jp-Notebook-ExecutionIndicator[data-status='idle'],"
                     " .jp-Toolbar-kernelStatus").first.wait_for(timeout=60_000)
    return notebook


def run_all(page) -> None:
    """Run > Run All Cells, as a learner would."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
