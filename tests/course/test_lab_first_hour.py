"""A learner's first hour, in JupyterLab in a real (headless) browser.

``make lab`` as a learner runs it (no test-only flags about news or updates), then:

* no "official Jupyter news" prompt: the course's lab settings (``.jupyter/overrides.json``,
  copied into the environment by ``make setup``) are what the lab serves;
* every released exercise notebook, untouched (stubs and all), runs to the end with
  *Run All* and shows no error output: each check shows a verdict, each "try it"
  cell says in one line which question to solve first;
* exercise 03 with one wrong answer and one right one: the wrong answer's try-it
  cell shows its real error, its check fails, and the checks after it still run;
* the pictures the README shows (a topology drawing, a load-test plot with a fault,
  a check verdict) are taken from the page. With ``LABKIT_SCREENSHOTS=1`` they are
  written to ``chapters/img/`` (commit them); otherwise to ``build/artifacts/``.

Needs Debian's Chromium at /usr/bin/chromium (see tests/course/test_lab_ui.py).
"""

from __future__ import annotations

import json
import os
import pathlib
import time
import urllib.request

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

EXERCISES = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))
CHECK_MIME = "application/vnd.labkit.check+json"
PICTURES = ROOT / ("chapters/img" if os.environ.get("LABKIT_SCREENSHOTS") == "1"
                   else "build/artifacts")


@pytest.fixture
def lab():
    """``make lab`` exactly as a learner starts it (no flags hiding the news prompt)."""
    with lab_server("first-hour", quiet=False) as running:
        yield running


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def _api(base: str, token: str, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{base}{path}", method=method,
                                     headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


def _copy(notebook: nbformat.NotebookNode, folder: pathlib.Path, name: str) -> pathlib.Path:
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(notebook, folder / name)
    return folder / name


def _run_all(page, lab, path: pathlib.Path, timeout: float = 420) -> nbformat.NotebookNode:
    """Open ``path`` alone (?reset), Run All, and return it as saved once every cell ran."""
    base, token, _ = lab
    open_notebook(page, base, token, path, reset=True)
    run_all(page)
    # JupyterLab renders only what is on screen: read what ran from the saved file.
    deadline = time.monotonic() + timeout
    while True:
        page.keyboard.press("Control+s")
        try:
            saved = nbformat.read(path, as_version=4)
            code = [c for c in saved.cells if c.cell_type == "code"]
            if all(c.execution_count is not None for c in code):
                return saved
        except Exception:
            pass  # caught mid-write
        if time.monotonic() > deadline:
            waiting = [i for i, c in enumerate(code) if c.execution_count is None]
            raise AssertionError(f"{path.name}: Run All did not reach code cells {waiting}")
        time.sleep(1)


def _stop_kernels(lab) -> None:
    base, token, _ = lab
    for session in _api(base, token, "/api/sessions"):
        _api(base, token, f"/api/sessions/{session['id']}", method="DELETE")


def _errors(notebook: nbformat.NotebookNode) -> list[tuple[int, str]]:
    return [(i, o.get("ename") or o.get("text", "")[:200])
            for i, c in enumerate(notebook.cells) if c.cell_type == "code"
            for o in c.outputs
            if o.output_type == "error" or (o.output_type == "stream" and o.name == "stderr")]


def _verdicts(notebook: nbformat.NotebookNode) -> dict[str, dict]:
    return {o.data[CHECK_MIME]["id"]: o.data[CHECK_MIME]
            for c in notebook.cells if c.cell_type == "code"
            for o in c.outputs if CHECK_MIME in o.get("data", {})}


def _checked_ids(notebook: nbformat.NotebookNode) -> list[str]:
    import re

    return [m for c in notebook.cells if c.cell_type == "code"
            for m in re.findall(r'lk\.check\("([^"]+)"', c.source)]


def test_the_lab_opens_without_the_news_prompt(lab, browser):
    base, token, _ = lab
    settings = _api(base, token, "/lab/api/settings/@jupyterlab/apputils-extension:notification")
    # overrides.json becomes the defaults of the settings' schema (was "none": ask)
    defaults = {key: value["default"] for key, value in settings["schema"]["properties"].items()}
    assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{base}/?token={token}")  # where make lab's browser lands: chapter 00
        page.locator(".lm-TabBar-tabLabel", has_text="00_two_ways_to_serve.ipynb").first.wait_for(
            timeout=90_000)
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
        # The course index is one click away, and opens rendered at the chapter table.
        page.get_by_role("link", name="Course index").first.click()
        page.locator(".jp-RenderedMarkdown h3", has_text="Chapters").first.wait_for(
            timeout=60_000)
        assert page.get_by_text("official Jupyter news").count() == 0
    finally:
        page.close()
        _stop_kernels(lab)


def test_run_all_reaches_every_check_of_every_released_exercise(lab, browser):
    _, _, folder = lab
    problems = {}
    for exercise in EXERCISES:
        path = _copy(nbformat.read(exercise, as_version=4), folder, exercise.name)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            saved = _run_all(page, lab, path)
            verdicts = _verdicts(saved)
            said = [o.text for c in saved.cells
                    if c.cell_type == "code" and "lk.trying(" in c.source for o in c.outputs]
            wrong = {
                "error outputs": _errors(saved),
                "checks without a verdict": sorted(set(_checked_ids(saved)) - set(verdicts)),
                "stubs that passed": [k for k, v in verdicts.items() if v["passed"]],
                "try-it cells not saying one line": [
                    t for t in said if not (t.startswith("solve ") and t.count("\n") == 1)],
                "news prompt": page.get_by_text("official Jupyter news").count(),
            }
            if any(wrong.values()):
                problems[exercise.name] = {k: v for k, v in wrong.items() if v}
        except AssertionError as exc:
            problems[exercise.name] = str(exc)
        finally:
            page.close()
            _stop_kernels(lab)
    assert problems == {}


def _with_answers(exercise: str, answers: dict[str, str]) -> nbformat.NotebookNode:
    """The released ``exercise`` with the stub cells defining ``answers`` replaced."""
    notebook = nbformat.read(ROOT / "exercises" / exercise, as_version=4)
    for name, source in answers.items():
        cell = next(c for c in notebook.cells
                    if c.cell_type == "code"
                    and (f"def {name}(" in c.source or f"class {name}:" in c.source))
        cell.source = source
    return notebook


def _solution_cell(exercise: str, needle: str) -> str:
    solution = nbformat.read(ROOT / "solutions" / exercise, as_version=4)
    return next(c.source for c in solution.cells if c.cell_type == "code" and needle in c.source)


def test_a_wrong_answer_fails_and_the_checks_after_it_still_run(lab, browser):
    exercise = "03_stateful_cluster_exercises.ipynb"
    wrong = ('class MySticky:\n    cookie = "MYPIN"\n\n    def choose(self, request, servers):\n'
             '        return servers[0]   # forgets the pin: not sticky\n')
    notebook = _with_answers(exercise, {
        "MySticky": wrong, "latency": _solution_cell(exercise, "def latency(")})
    _, _, folder = lab
    path = _copy(notebook, folder, "wrong_answer.ipynb")
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    try:
        saved = _run_all(page, lab, path)
        verdicts = _verdicts(saved)
        assert verdicts["03.sticky_policy"]["passed"] is False  # the wrong answer fails
        assert verdicts["03.capacity_model"]["passed"] is True  # a later check ran, and passed
        assert verdicts["03.predict_logouts"]["passed"] is False  # still a stub
        # The try-it cell showed the learner's real error, not "solve ... first".
        errors = _errors(saved)
        assert [name for _, name in errors] == ["AssertionError"], errors
        # The verdict as the learner sees it, for the README.
        PICTURES.mkdir(parents=True, exist_ok=True)
        verdict = page.locator(".jp-OutputArea-output", has_text="03.sticky_policy failed")
        verdict.first.scroll_into_view_if_needed()
        verdict.first.screenshot(path=str(PICTURES / "check_verdict.png"))
    finally:
        page.close()
        _stop_kernels(lab)


def _picture_notebook() -> nbformat.NotebookNode:
    """Chapter 00's cells that draw a topology after a crash and plot a load test."""
    chapter = nbformat.read(ROOT / "chapters/00_two_ways_to_serve.ipynb", as_version=4)
    code = [c.source for c in chapter.cells if c.cell_type == "code"]

    def first(needle: str) -> str:
        return next(source for source in code if needle in source)

    stateless_app = first("def make_stateless_host(").split("\nplain = ", 1)[0]
    sources = [code[0], first("def introduce_and_greet("), first("def make_host("),
               stateless_app, first('balancer="sticky"'), first('sticky.kill("s1")'),
               "sticky.draw()", first("lk.load_test(stateless"), "report.plot()",
               "for thing in (sticky, stateless):\n    thing.close()"]
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


def test_what_the_readme_shows_is_what_the_lab_shows(lab, browser):
    _, _, folder = lab
    path = _copy(_picture_notebook(), folder, "pictures.ipynb")
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    try:
        saved = _run_all(page, lab, path)
        assert _errors(saved) == []
        PICTURES.mkdir(parents=True, exist_ok=True)
        cells = page.locator(".jp-Notebook .jp-Cell.jp-CodeCell")
        for index, name in ((6, "topology.png"), (8, "load_test_fault.png")):
            image = cells.nth(index).locator(".jp-OutputArea-output img").first
            image.scroll_into_view_if_needed()
            image.wait_for(timeout=30_000)
            image.screenshot(path=str(PICTURES / name))
    finally:
        page.close()
        _stop_kernels(lab)
