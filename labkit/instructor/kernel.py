"""The Jupyter kernel that ``labkit grade`` starts for each submission.

It is ``python -m ipykernel_launcher`` with one step first: take the grading key out
of the environment (:func:`labkit.checks.seal.arm_from_environment` reads the key
file, deletes it and drops the variable) and arm the guard
(:mod:`labkit.checks.guard`) before the kernel runs any cell of the learner's
notebook, or any IPython startup file.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    if sys.path and sys.path[0] in ("", "."):  # as ipykernel_launcher does
        del sys.path[0]
    from ipykernel import kernelapp

    try:  # its import calls sys.settrace, which the armed guard refuses
        import debugpy.server  # noqa: F401
    except Exception:  # noqa: BLE001 (no debugger: nothing to import early)
        pass
    from labkit.checks.seal import arm_from_environment

    arm_from_environment(guard=True)  # the key into the guard's sealer, before any cell

    kernelapp.launch_new_instance()
