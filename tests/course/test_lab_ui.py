"""The course as a learner meets it: JupyterLab in a real (headless) browser.

Runs ``make lab`` itself, opens a copy of chapter 00 with its
outputs cleared, runs every cell from the Run menu, and waits for the live outputs:
the last cell's repr, the drawings, and no traceback anywhere.

Needs Debian's Chromium at /usr/bin/chromium (``.ci/run`` installs it). Without it
the test is skipped on a developer's machine, and fails under CI.
"""

from __future__ import annotations

import pathlib
import time

import nbformat
import pytest
from lab_browser import CHROMIUM, FLAGS, ROOT, lab_server, require_chromium

require_chromium()


@pytest.fixture
def lab():
    """``make lab`` itself, with an output-less copy of chapter 00 to run."""
    with lab_server("ui") as (base, token, folder):
        notebook = nbformat.read(ROOT / "chapters/00_two_ways_to_serve.ipynb", as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(notebook, folder / "tour.ipynb")
        yield base, token, folder


def _wait_for_saved_outputs(page, folder: pathlib.Path, timeout: float = 90
                            ) -> nbformat.NotebookNode:
    """Save (again and again) until the file holds the last code cell's output."""
    deadline = time.monotonic() + timeout
    while True:
        page.keyboard.press("Control+s")
        try:
            notebook = nbformat.read(folder / "tour.ipynb", as_version=4)
            last = [c for c in notebook.cells if c.cell_type == "code"][-1]
            if last.outputs:
                return notebook
        except Exception:
            pass  # caught mid-write
        if time.monotonic() > deadline:
            raise AssertionError("JupyterLab did not save the executed notebook")
        time.sleep(0.5)


def test_chapter_00_runs_in_jupyterlab_in_a_browser(lab):
    from playwright.sync_api import sync_playwright

    base, token, lab_dir = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/?token={token}")  # where make lab's browser lands: chapter 00
            page.locator(".lm-TabBar-tabLabel", has_text="00_two_ways_to_serve.ipynb").first.wait_for(
                timeout=90_000)
            page.goto(f"{base}/lab/tree/{lab_dir.relative_to(ROOT).as_posix()}/tour.ipynb?token={token}")

            page.locator(".lm-TabBar-tab.lm-mod-current", has_text="tour.ipynb").first.wait_for(
                timeout=90_000)
            tour = page.locator(".jp-NotebookPanel:visible")  # not chapter 00's own tab
            tour.first.wait_for(timeout=90_000)
            select = page.locator(".jp-Dialog button.jp-mod-accept")
            try:  # JupyterLab may ask which kernel to use first
                select.wait_for(timeout=10_000)
                select.click()
            except Exception:
                pass
            tour.locator(".jp-Notebook-ExecutionIndicator[data-status='idle'],"
                         " .jp-Toolbar-kernelStatus").first.wait_for(timeout=60_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            tour.get_by_text("(<Server host closed>, <Cluster cluster round_robin closed>)").wait_for(
                timeout=180_000)
            # JupyterLab only renders the cells on screen, so read what ran from the
            # saved file rather than from the page.
            saved = _wait_for_saved_outputs(page, lab_dir)
            kinds = [o.output_type for c in saved.cells if c.cell_type == "code" for o in c.outputs]
            images = [o for c in saved.cells if c.cell_type == "code" for o in c.outputs
                      if "image/png" in o.get("data", {})]
            assert "error" not in kinds
            assert len(images) >= 3  # two topology drawings and one latency plot
            assert page.get_by_text("Traceback").count() == 0
        finally:
            browser.close()
