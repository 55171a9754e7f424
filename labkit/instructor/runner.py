"""Run one submitted notebook in a child process, with limits, and leave nothing behind.

``run_notebook`` is the only entry point the grader uses. Per submission it makes
four private folders (``tempfile.mkdtemp``, mode 0700):

* ``work``: the kernel's working folder, empty. A notebook may do what it likes
  there (even delete it); the grader needs nothing from it;
* ``control``: the copy of the submission, the executed notebook, ``status.json``,
  the kernel's PID and the runner's log. The kernel is never told where it is;
* ``seal``: the grading key file, which the kernel deletes before the first cell;
* ``config``: empty IPython and Jupyter configuration folders, so no startup file
  that an earlier notebook left in ``~/.ipython`` runs in this kernel.

The runner is a child process (``python -m labkit.instructor.runner``) that runs the
notebook with nbclient in a kernel of *this* Python (:mod:`labkit.instructor.kernel`).
It declares itself a *child subreaper* (Linux ``PR_SET_CHILD_SUBREAPER``), so every
process the notebook forks, even one that detaches with ``setsid``, comes back to it
when its parent dies; when the notebook ends it kills and reaps them all and says
how many there were. The notebook's output is capped (:data:`MAX_OUTPUT_BYTES`): a
notebook that floods it has its kernel stopped. A whole notebook that runs past its
``timeout`` is stopped by the grader (SIGTERM to the runner, which cleans up; SIGKILL
to the process groups if that does not happen in time).
"""

from __future__ import annotations

import ctypes
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

MAX_OUTPUT_BYTES = 10 * 1024 * 1024  # what all cells of one notebook may print
STOP_GRACE = 15.0  # seconds the runner gets to clean up after SIGTERM
_KIT_PARENT = str(Path(__file__).resolve().parents[2])  # the folder holding labkit/
_SEAL_VARIABLE = "LABKIT_GRADE_SEAL"  # the same name as labkit.checks.seal's


@dataclass
class RunOutcome:
    """What running a notebook gave: the executed notebook, an error, notes."""

    executed: nbformat.NotebookNode | None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    kernel_failed_to_start: bool = False  # before any cell ran: worth another try


def run_notebook(data: bytes, *, key: bytes, run: str, timeout: float,
                 cell_timeout: float, max_output: int = MAX_OUTPUT_BYTES) -> RunOutcome:
    """Execute the notebook ``data`` with grading key ``key`` and run id ``run``."""
    folders = {name: Path(tempfile.mkdtemp(prefix=f"labkit-grade-{name}-"))
               for name in ("work", "control", "seal", "config")}
    try:
        control = folders["control"]
        (control / "submission.ipynb").write_bytes(data)
        seal_file = folders["seal"] / "key.json"
        descriptor = os.open(seal_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump({"key": key.hex(), "run": run}, handle)
        return _supervise(control, folders["work"], seal_file, folders["config"],
                          timeout=timeout,
                          cell_timeout=cell_timeout, max_output=max_output)
    finally:
        for folder in folders.values():
            shutil.rmtree(folder, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _supervise(control: Path, work: Path, seal_file: Path, config: Path, *, timeout: float,
               cell_timeout: float, max_output: int) -> RunOutcome:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (_KIT_PARENT, env.get("PYTHONPATH")) if p)  # grade with this kit
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    env.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    env["MPLBACKEND"] = "agg"
    # Empty IPython and Jupyter config folders of its own: a notebook graded earlier
    # could have left a startup file in ~/.ipython that runs in every later kernel.
    env["IPYTHONDIR"] = str(config / "ipython")
    env["JUPYTER_CONFIG_DIR"] = str(config / "jupyter")
    env[_SEAL_VARIABLE] = str(seal_file)
    with open(control / "runner.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "labkit.instructor.runner", str(control), str(work),
             repr(cell_timeout), str(max_output)],
            cwd=work, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            process.send_signal(signal.SIGTERM)  # the runner kills and reaps its kernel
            try:
                process.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass
        finally:  # never leave the runner or its kernel behind
            if process.poll() is None:
                _kill_group(process.pid)
            process.wait()
            if timed_out or process.returncode != 0:
                # The kernel may outlive a runner that was killed (the notebook can
                # signal it). Find it, and whatever it started, by this run's key file
                # path in their environment, not by a PID file the notebook can rewrite.
                for pid in _processes_of_this_run(seal_file):
                    _kill(pid)
    if timed_out:
        return RunOutcome(None, f"timed out after {timeout:g} s (a cell kept running: an"
                                " endless loop, or waiting for something that never"
                                " comes?)")
    status_file = control / "status.json"
    # Only a runner that finished wrote status.json; if it was killed (the notebook
    # can signal it), a status.json there may be the notebook's own.
    if process.returncode != 0 or not status_file.is_file():
        lines = (control / "runner.log").read_text(errors="replace").strip().splitlines()
        return RunOutcome(None, "the notebook runner failed:"
                                f" {lines[-1][:200] if lines else 'no output'}")
    status = json.loads(status_file.read_text())
    notes = []
    if status.get("leftovers"):
        notes.append(f"left {status['leftovers']} process(es) running after the notebook"
                     " ended; the grader killed them")
    if status.get("kernel_failed_to_start"):
        return RunOutcome(None, status.get("error"), notes, kernel_failed_to_start=True)
    try:
        executed = nbformat.read(control / "executed.ipynb", as_version=4)
    except (OSError, ValueError) as exc:
        return RunOutcome(None, status.get("error")
                          or f"the executed notebook could not be read back: {exc}", notes)
    return RunOutcome(executed, status.get("error"), notes)


def _processes_of_this_run(seal_file: Path) -> list[int]:
    """The processes started with this run's environment (its key file's path)."""
    marker = f"{_SEAL_VARIABLE}={seal_file}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if marker in handle.read(1024 * 1024).split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _write_atomically(path: Path, text: str) -> None:
    """Write ``path`` through a new file and a rename: a symlink or FIFO that the
    notebook planted under that name is replaced, never followed."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def new_key() -> tuple[bytes, str]:
    """A fresh grading key and run id for one notebook run."""
    return secrets.token_bytes(32), secrets.token_hex(8)


# -- the runner: everything below runs inside the child process ----------------------

# Run after the notebook's last cell: the guard's sealed summary (attempts per
# question, tampering seen), which the grader requires as the run's last record.
CLOSING_CELL = ("import sys as _labkit_sys\n"
                "_labkit_sys.modules['labkit.checks.seal'].show_summary()")

class _Stopped(Exception):
    """The grader asked the runner to stop (SIGTERM): the notebook ran too long."""


def _become_subreaper() -> None:
    """Orphans of the notebook's processes become our children (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _children() -> dict[int, str]:
    """Our child processes and their states (from /proc), zombies included."""
    me, found = os.getpid(), {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(me):
            found[int(entry)] = fields[0]
    return found


def _reap_everything(kernel_pid: int | None) -> int:
    """Kill and reap every process left under us; return how many were alive."""
    alive: set[int] = set()
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        children = _children()
        if not children:
            break
        for pid, state in children.items():
            if state != "Z" and pid != kernel_pid:
                alive.add(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    return len(alive)


def _kernel_manager():  # noqa: ANN202 (jupyter_client types are heavy to import)
    """A kernel manager whose kernel is ``sys.executable -m labkit.instructor.kernel``.

    Asking for "python3" by name could find another Python's kernelspec; the grader
    wants the kernel of the Python that runs it, armed with the grading key.
    """
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str, *args: object, **kwargs: object
                            ) -> KernelSpec:
            return KernelSpec(
                argv=[sys.executable, "-m", "labkit.instructor.kernel", "-f",
                      "{connection_file}"],
                display_name="Python 3 (labkit grade)", language="python",
                resource_dir="")

    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=ThisPython())


def _client_class():  # noqa: ANN202
    from nbclient import NotebookClient

    class CappedClient(NotebookClient):
        """nbclient, but output beyond ``max_output`` bytes stops the kernel."""

        printed = 0
        flooded = False
        max_output = MAX_OUTPUT_BYTES

        def process_message(self, msg, cell, cell_index):  # noqa: ANN001, ANN201
            if msg.get("msg_type") in ("stream", "display_data", "execute_result",
                                       "update_display_data", "error"):
                self.printed += len(json.dumps(msg.get("content"), default=str))
                if self.printed > self.max_output:
                    if not self.flooded:
                        self.flooded = True
                        pid = getattr(self.km.provisioner, "pid", None)
                        if pid:
                            os.kill(pid, signal.SIGKILL)
                    return None  # drop it: the notebook is over
            return super().process_message(msg, cell, cell_index)

    return CappedClient


def _runner(control: Path, work: Path, cell_timeout: float, max_output: int) -> int:
    """Execute control/submission.ipynb with its kernel in ``work``."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    def stop(signum: int, frame: object) -> None:
        raise _Stopped

    signal.signal(signal.SIGTERM, stop)
    _become_subreaper()
    error: str | None = None
    notebook = nbformat.read(control / "submission.ipynb", as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell(CLOSING_CELL))
    client = _client_class()(
        notebook, km=_kernel_manager(), timeout=cell_timeout, allow_errors=True,
        shutdown_kernel="graceful", resources={"metadata": {"path": str(work)}})
    client.max_output = max_output
    kernel_pid: list[int] = []

    def started(notebook: object) -> None:
        kernel_pid.append(client.km.provisioner.pid)
        _write_atomically(control / "kernel.pid", str(kernel_pid[0]))

    cells_started: list[int] = []
    client.on_notebook_start = started
    client.on_cell_start = lambda cell, cell_index: cells_started.append(cell_index)
    try:
        client.execute()
    except _Stopped:
        error = "stopped by the grader"
    except CellTimeoutError:
        error = f"a cell ran longer than {cell_timeout:g} s"
    except DeadKernelError:
        error = "the kernel died (a cell crashed Python or called exit)"
    except Exception as exc:
        error = f"the notebook could not be run ({type(exc).__name__}: {exc})"
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if client.flooded:
        error = (f"the notebook printed more than {max_output // (1024 * 1024)} MB of"
                 " output; it was stopped there")
    leftovers = _reap_everything(kernel_pid[0] if kernel_pid else None)
    _write_atomically(control / "executed.ipynb", nbformat.writes(notebook))
    _write_atomically(control / "status.json", json.dumps({
        "error": error, "leftovers": leftovers,
        "kernel_failed_to_start": error is not None and not cells_started}))
    return 0


if __name__ == "__main__":
    sys.exit(_runner(Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]),
                     int(sys.argv[4])))
