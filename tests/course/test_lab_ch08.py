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
import shutil
import time

import nbformat
import pytest
from lab_browser import (
    CHROMIUM,
    FLAGS,
    ROOT,
    lab_server,
    open_notebook,
    require_chromium,
    run_all,
)

require_chromium()

ARTEFACTS = ROOT / "artefacts"


@pytest.fixture
def lab_ch08():
    """``make lab`` on a free port, serving the repo, with a fresh copy of chapter 08."""
    with lab_server("ch08") as (base, token, folder):
        notebook = nbformat.read(ROOT / "chapters/08_choosing.ipynb", as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        # The copy lives one folder deeper than chapters/; its links are not followed here.
        nbformat.write(notebook, folder / "choosing.ipynb")
        yield base, token, folder


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
            # JupyterLab's "get notified about news?" toast would cover the picture.
            page.add_init_script("document.addEventListener('DOMContentLoaded', () => {"
                                 " const s = document.createElement('style');"
                                 " s.textContent = '.Toastify { display: none !important; }';"
                                 " document.head.appendChild(s); });")
            open_notebook(page, base, token, lab_dir / "choosing.ipynb")
            run_all(page)

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
