"""Chapter 08's sliders in a real browser: JupyterLab, headless Debian Chromium.

Runs ``make lab``, opens a copy of chapter 08 with its outputs cleared, runs every
cell, then types a new number of users into the first slider and waits for the
cost plots under the sliders to be redrawn (a different picture). Screenshots go to
``artefacts/`` (git-ignored); ``LABKIT_README_SHOT=1`` also writes the README's
``chapters/img/ch08_widgets.png``.

Needs Debian's Chromium at /usr/bin/chromium; skipped without it, failed under CI.
"""

from __future__ import annotations

import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request

import nbformat
import pytest

from test_lab_ui import CHROMIUM, FLAGS, ROOT, _free_port, _wait_for_group_exit

ARTEFACTS = ROOT / "artefacts"


@pytest.fixture
def lab_ch08():
    """``make lab`` on a free port, serving the repo, with a fresh copy of chapter 08."""
    folder = ROOT / "build" / f"lab-ch08-{secrets.token_hex(4)}"   # build/ is git-ignored
    folder.mkdir(parents=True)
    notebook = nbformat.read(ROOT / "chapters/08_choosing.ipynb", as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, folder / "choosing.ipynb")
    # The copy lives one folder deeper than chapters/; its links are not followed here.
    port, token = _free_port(), secrets.token_hex(16)
    process = subprocess.Popen(
        ["make", "--no-print-directory", "lab", f"PORT={port}",
         f"LAB_ARGS=--no-browser --IdentityProvider.token={token} --LabApp.news_url="
         " --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"
         f" --LabApp.workspaces_dir={folder / 'workspaces'}"],
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
        os.killpg(process.pid, signal.SIGTERM)     # make, jupyter lab and its kernels
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        _wait_for_group_exit(process.pid)
        shutil.rmtree(folder, ignore_errors=True)


def _plot_source(page) -> str:
    """The data URL of the picture the explorer's Output widget shows now."""
    image = page.locator(".widget-vbox .widget-output img").first
    image.wait_for(timeout=180_000)
    return image.get_attribute("src") or ""


def test_moving_a_slider_redraws_the_cost_plots(lab_ch08):
    from playwright.sync_api import sync_playwright

    base, token, lab_dir = lab_ch08
    ARTEFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"{base}/lab/tree/{lab_dir.relative_to(ROOT).as_posix()}/choosing.ipynb"
                      f"?token={token}")
            page.locator(".lm-TabBar-tab.lm-mod-current", has_text="choosing.ipynb").first.wait_for(
                timeout=90_000)
            # JupyterLab's "get notified about news?" toast would cover the picture.
            page.add_style_tag(content=".Toastify { display: none !important; }")
            panel = page.locator(".jp-NotebookPanel:visible")
            panel.first.wait_for(timeout=90_000)
            select = page.locator(".jp-Dialog button.jp-mod-accept")
            try:  # JupyterLab may ask which kernel to use first
                select.wait_for(timeout=10_000)
                select.click()
            except Exception:
                pass
            panel.locator(".jp-Notebook-ExecutionIndicator[data-status='idle'],"
                          " .jp-Toolbar-kernelStatus").first.wait_for(timeout=60_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

            before = _plot_source(page)
            sliders = page.locator(".widget-vbox .widget-slider")
            assert sliders.count() >= 6
            users = sliders.filter(has_text="users").first
            users.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTEFACTS / "ch08_before.png"))

            # Type a new value into the slider's readout (ipywidgets 8 makes it editable),
            # as a learner who wants exactly 200 users would.
            readout = users.locator(".widget-readout")
            readout.click()
            page.keyboard.press("Control+a")
            page.keyboard.type("200")
            page.keyboard.press("Enter")

            deadline = time.monotonic() + 60
            after = before
            while after == before and time.monotonic() < deadline:
                time.sleep(0.5)
                after = _plot_source(page)
            assert after.startswith("data:image/png") and after != before, \
                "the plots did not change after the slider moved"
            assert "200" in readout.inner_text()
            page.locator(".widget-vbox").first.screenshot(path=str(ARTEFACTS / "ch08_widgets.png"))
            if os.environ.get("LABKIT_README_SHOT"):
                shutil.copy(ARTEFACTS / "ch08_widgets.png", ROOT / "chapters/img/ch08_widgets.png")
            assert page.get_by_text("Traceback").count() == 0
        finally:
            browser.close()
