"""The live lab in a real browser: start the load, kill s2, see it, revive it.

JupyterLab (started by ``make lab``) in headless Debian Chromium runs the "try it
yourself" section of chapter 00 (its imports, then the panel cell), then a person's
clicks: "start load", "kill s2", "revive s2". Screenshots of each step are kept under
``build/artifacts/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import pathlib

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

ARTIFACTS = ROOT / "build" / "artifacts"


def _panel_notebook(folder: pathlib.Path) -> str:
    """Chapter 00's imports and its live-lab cell, as a notebook in ``folder``."""
    chapter = nbformat.read(ROOT / "chapters/00_two_ways_to_serve.ipynb", as_version=4)
    code = [c for c in chapter.cells if c.cell_type == "code"]
    panel = next(c for c in code if "lab.panel(" in c.source)
    cells = [nbformat.v4.new_code_cell(code[0].source), nbformat.v4.new_code_cell(panel.source)]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), folder / "panel.ipynb")
    return "panel.ipynb"


@pytest.fixture
def lab():
    with lab_server("panel") as running:
        yield running


def test_the_panel_kills_and_revives_a_server_under_load(lab):
    from playwright.sync_api import sync_playwright

    base, token, folder = lab
    name = _panel_notebook(folder)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            open_notebook(page, base, token, folder / name)
            run_all(page)

            kill_s2 = page.get_by_role("button", name="kill s2")
            kill_s2.wait_for(timeout=120_000)
            page.get_by_role("button", name="start load").click()
            page.wait_for_function(
                "() => /ok\\s+[1-9]\\d*/.test(document.querySelector("
                "'.widget-html-content').innerText)", timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "panel-1-load.png"))

            kill_s2.click()
            revive = page.get_by_role("button", name="revive s2")
            revive.wait_for(timeout=30_000)
            assert "mod-danger" in (revive.get_attribute("class") or "")  # red: down
            page.wait_for_function(  # its users lose their sessions; requests fail
                "() => { const t = document.querySelector('.widget-html-content').innerText;"
                " const n = k => Number((t.match(new RegExp(k + '\\\\s+(\\\\d+)')) || [0, 0])[1]);"
                " return n('failed') + n('sessions lost') > 0; }", timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "panel-2-s2-down.png"))

            revive.click()
            back = page.get_by_role("button", name="kill s2")
            back.wait_for(timeout=30_000)
            assert "mod-success" in (back.get_attribute("class") or "")  # green: up again
            page.screenshot(path=str(ARTIFACTS / "panel-3-s2-back.png"))
            page.get_by_role("button", name="stop load").click()
            assert page.get_by_text("Traceback").count() == 0
        except BaseException:
            page.screenshot(path=str(ARTIFACTS / "panel-failed.png"))
            raise
        finally:
            browser.close()
