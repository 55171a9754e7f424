"""``labkit release``: stubs, cleared outputs, determinism, edited files, bad markers."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from labkit.instructor.cli import main
from labkit.errors import ReleaseError
from labkit.instructor.release import MANIFEST, exercise_notebook, release, render_exercise

FUNCTION = '''def make_app():
    """Build the app."""
    ### BEGIN SOLUTION
    app = Flask("secret_solution")
    return app
    ### END SOLUTION'''


def _solution(folder, name="00_demo_exercises.ipynb", cells=None):
    folder.mkdir(exist_ok=True)
    if cells is None:
        answer = new_code_cell(FUNCTION, execution_count=2,
                               outputs=[new_output("stream", name="stdout", text="hi\n")],
                               metadata={"execution": {"iopub.status.busy": "2026-01-01"},
                                         "tags": ["keep-me"], "collapsed": True})
        cells = [new_markdown_cell("# 00 Demo"),
                 new_code_cell("import labkit as lk", execution_count=1),
                 answer,
                 new_code_cell("### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION\nprint(answer)",
                               execution_count=3)]
    notebook = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}, "widgets": {"state": {}},
        "toc": {"x": 1}})
    path = folder / name
    nbformat.write(notebook, path)
    return path


def _dirs(tmp_path):
    return {"solutions": tmp_path / "solutions", "exercises": tmp_path / "exercises"}


def test_regions_become_stubs_and_outputs_are_cleared(tmp_path):
    path = _solution(tmp_path / "solutions")
    notebook = exercise_notebook(path)
    nbformat.validate(notebook)
    sources = [cell.source for cell in notebook.cells]
    assert "secret_solution" not in "".join(sources) and "42" not in "".join(sources)
    assert sources[2] == ('def make_app():\n    """Build the app."""\n'
                          "    # YOUR CODE HERE\n"
                          '    raise NotImplementedError("Replace this line with your solution.")')
    assert sources[3] == ('# YOUR CODE HERE\n'
                          'raise NotImplementedError("Replace this line with your solution.")\n'
                          "print(answer)")
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert notebook.cells[2].metadata == {"tags": ["keep-me"]}
    assert set(notebook.metadata) == {"kernelspec", "language_info", "labkit"}
    assert notebook.metadata["labkit"]["chapter"] == "00"


def test_the_stub_really_fails_when_run(tmp_path):
    path = _solution(tmp_path / "solutions")
    namespace: dict = {}
    exec(exercise_notebook(path).cells[2].source, namespace)
    with pytest.raises(NotImplementedError):
        namespace["make_app"]()


def test_several_regions_in_one_cell_keep_the_code_between(tmp_path):
    source = ("x = 1\n    ### BEGIN SOLUTION\n    a\n    ### END SOLUTION\nmiddle()\n"
              "#BEGIN SOLUTION\nb\n# END SOLUTION")
    path = _solution(tmp_path / "solutions", cells=[new_code_cell(source)])
    out = exercise_notebook(path).cells[0].source.split("\n")
    assert out[0] == "x = 1" and out[1] == "    # YOUR CODE HERE" and out[3] == "middle()"
    assert out[4] == "# YOUR CODE HERE" and len(out) == 6


def test_round_trip_and_idempotence(tmp_path):
    _solution(tmp_path / "solutions")
    first = release(**_dirs(tmp_path))
    target = tmp_path / "exercises" / "00_demo_exercises.ipynb"
    assert first.written == [target]
    data, mtime = target.read_bytes(), target.stat().st_mtime_ns
    assert data.decode() == render_exercise(tmp_path / "solutions" / target.name)
    second = release(**_dirs(tmp_path))
    assert second.unchanged == [target] and second.written == []
    assert target.read_bytes() == data and target.stat().st_mtime_ns == mtime
    manifest = json.loads((tmp_path / "exercises" / MANIFEST).read_text())
    assert set(manifest["files"]) == {target.name}


def test_a_changed_solution_is_released_again(tmp_path):
    path = _solution(tmp_path / "solutions")
    release(**_dirs(tmp_path))
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.append(new_markdown_cell("A new paragraph."))
    nbformat.write(notebook, path)
    assert len(release(**_dirs(tmp_path)).written) == 1


def test_an_edited_exercise_is_not_overwritten_without_force(tmp_path):
    _solution(tmp_path / "solutions")
    release(**_dirs(tmp_path))
    target = tmp_path / "exercises" / "00_demo_exercises.ipynb"
    target.write_text(target.read_text().replace("YOUR CODE HERE", "my own notes"))
    edited = target.read_bytes()
    notebook = nbformat.read(tmp_path / "solutions" / target.name, as_version=4)
    notebook.cells.append(new_markdown_cell("More."))
    nbformat.write(notebook, tmp_path / "solutions" / target.name)
    with pytest.raises(ReleaseError, match="--force") as info:
        release(**_dirs(tmp_path))
    assert str(target) in str(info.value)
    assert target.read_bytes() == edited
    release(**_dirs(tmp_path), force=True)
    assert "my own notes" not in target.read_text()


def test_a_hand_made_exercise_counts_as_edited(tmp_path):
    _solution(tmp_path / "solutions")
    (tmp_path / "exercises").mkdir()
    (tmp_path / "exercises" / "00_demo_exercises.ipynb").write_text("{}")
    with pytest.raises(ReleaseError, match="00_demo_exercises.ipynb"):
        release(**_dirs(tmp_path))


@pytest.mark.parametrize("source, complaint", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "no '### BEGIN SOLUTION' before it"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "cannot nest"),
])
def test_malformed_markers_name_the_notebook_and_cell(tmp_path, source, complaint):
    cells = [new_markdown_cell("# 00 Demo"), new_code_cell("ok = 1"), new_code_cell(source)]
    _solution(tmp_path / "solutions", cells=cells)
    with pytest.raises(ReleaseError, match=complaint) as info:
        release(**_dirs(tmp_path))
    assert "00_demo_exercises.ipynb, cell 2" in str(info.value)
    assert not (tmp_path / "exercises").exists()  # nothing written


def test_markers_in_markdown_are_refused(tmp_path):
    cells = [new_markdown_cell("# 00 Demo\n### BEGIN SOLUTION\nthe answer\n### END SOLUTION")]
    _solution(tmp_path / "solutions", cells=cells)
    with pytest.raises(ReleaseError, match="only allowed in code cells"):
        release(**_dirs(tmp_path))


def test_cli_release_and_its_one_line_errors(tmp_path, capsys):
    _solution(tmp_path / "solutions")
    args = ["release", "--solutions", str(tmp_path / "solutions"),
            "--exercises", str(tmp_path / "exercises")]
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out
    target = tmp_path / "exercises" / "00_demo_exercises.ipynb"
    target.write_text(target.read_text() + " ")
    notebook = nbformat.read(tmp_path / "solutions" / target.name, as_version=4)
    notebook.cells.append(new_markdown_cell("More."))
    nbformat.write(notebook, tmp_path / "solutions" / target.name)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err and "Traceback" not in err
    assert main([*args, "--force"]) == 0
    assert main(["release", "--solutions", str(tmp_path / "nowhere")]) == 2
    assert "There is no folder" in capsys.readouterr().err
