"""The grading kernel's guard: keep the sealing key out of reach, notice a patched kit.

:mod:`labkit.checks.seal` explains why records are sealed. This module makes the
seal harder to fake from inside the notebook, where the learner's code runs in the
same process as the kit. It is armed only in the kernel that ``labkit grade`` starts
(:mod:`labkit.instructor.kernel`), never in a learner's own Jupyter or in tests,
because an audit hook cannot be removed once added.

* **The key lives in a suspended generator** (:func:`_sealer`), not in a closure or
  a module attribute: ``sealed_run.__closure__`` or ``vars(seal)`` no longer hold it.
  The generator's frame is reachable only through ``gen.gi_frame`` or ``gc``, and an
  audit hook (:pep:`578`, which Python code cannot remove) refuses both.
* **Only the kit's own sealed runner gets a seal.** The generator looks at the frame
  that asks: its code must be the sealed runner's, with the closure it was armed
  with. Calling ``signer.send(...)`` from a cell, or from a copy of the runner with
  other questions, gets nothing.
* **A patched kit is written into the record.** When it seals, the generator
  compares the kit's modules (``labkit.*``, and the public names of ``requests``,
  ``flask``, ``werkzeug``, ``urllib3``, ``http``, ``socket``, ``json``, ``hmac``,
  ``hashlib``, ``secrets``, ``random``, ``time``), the kit's classes, a few builtins
  and the captured questions with what they were when the kernel started. Any
  difference, and any refused operation (``gc.get_objects``, ``sys._current_frames``,
  replacing a function's ``__code__``, ``sys.settrace``, reading memory with
  ``ctypes``) is listed in the record's ``tampered`` field, under the seal, and the
  grader counts that question as 0 and says why.

What it does not stop (the README says it too): code that patches something *during*
a check and puts it back before the check ends, an answer that walks the stack from
inside a check and edits the runner's local results (a race, and writable locals on
Python 3.13), and native code. The sandbox is the machine or container the grader
runs in.
"""

from __future__ import annotations

import builtins
import sys
import types
from typing import Any, Callable, Generator

# Modules whose public names a check relies on (the kit's own: every name).
_WATCHED_PACKAGES = ("requests", "flask", "werkzeug", "urllib3", "http", "socket", "json",
                     "hmac", "hashlib", "secrets", "random", "time")
_WATCHED_BUILTINS = (
    "isinstance", "issubclass", "type", "len", "str", "int", "float", "bool", "dict",
    "list", "tuple", "set", "frozenset", "getattr", "hasattr", "setattr", "repr", "sorted",
    "min", "max", "sum", "any", "all", "iter", "next", "range", "enumerate", "zip", "map",
    "filter", "abs", "round", "hash", "id", "object", "super", "callable", "Exception",
    "BaseException", "NotImplementedError", "SystemExit", "KeyboardInterrupt")
# Audit events refused while grading: each one is a way to reach the key or rewrite
# the kit without leaving a trace in a module's namespace.
_REFUSED = {
    "gc.get_objects": "gc.get_objects()", "gc.get_referrers": "gc.get_referrers()",
    "gc.get_referents": "gc.get_referents()",
    "sys._current_frames": "sys._current_frames()",
    "sys.settrace": "sys.settrace()", "sys.setprofile": "sys.setprofile()",
    "sys.monitoring.register_callback": "sys.monitoring",
    "ctypes.string_at": "ctypes.string_at()", "ctypes.wstring_at": "ctypes.wstring_at()",
    "ctypes.cdata": "ctypes from_address()", "ctypes.cdata/buffer": "ctypes from_buffer()",
    "ctypes.addressof": "ctypes.addressof()",
}


class GradingGuardError(RuntimeError):
    """An operation the grading kernel refuses (it could forge a sealed record)."""


def snapshot() -> dict[str, object]:
    """What the kit and the libraries its checks use look like now: name -> object."""
    seen: dict[str, object] = {}
    for name, module in list(sys.modules.items()):
        if not isinstance(module, types.ModuleType):
            continue
        ours = name == "labkit" or name.startswith("labkit.")
        if not ours and name.split(".")[0] not in _WATCHED_PACKAGES:
            continue
        for attr, value in list(vars(module).items()):
            if attr.startswith("__") or (not ours and attr.startswith("_")):
                continue
            seen[f"{name}.{attr}"] = value
            # type(), not isinstance(): a proxy (flask.request) would answer for its target
            if ours and issubclass(type(value), type) and value.__module__ == name:
                for member, inner in list(vars(value).items()):
                    if member not in ("__dict__", "__weakref__", "__doc__"):
                        seen[f"{name}.{attr}.{member}"] = inner
    for attr in _WATCHED_BUILTINS:
        seen[f"builtins.{attr}"] = getattr(builtins, attr)
    return seen


def changes(before: dict[str, object]) -> list[str]:
    """The names in ``before`` that now hold another object (or are gone).

    A library may rebind its own names once (urllib3 picks ``wait_for_socket`` on
    first use): outside the kit, a function replaced by another function of the same
    module is not a change.
    """
    now = snapshot()
    missing = object()
    changed = []
    for name, value in before.items():
        new = now.get(name, missing)
        if new is value:
            continue
        if not name.startswith("labkit") and _same_library_function(value, new):
            continue
        changed.append(name)
    return sorted(changed)


def _same_library_function(old: object, new: object) -> bool:
    kinds = (types.FunctionType, types.BuiltinFunctionType)
    if type(old) not in kinds or type(new) not in kinds:
        return False
    module = getattr(old, "__module__", None)
    return bool(module) and module == getattr(new, "__module__", None) \
        and module.split(".")[0] in _WATCHED_PACKAGES


def _sealer(key: bytes, run: str, trusted: types.CodeType, expected: dict[str, object],
            questions: dict[str, tuple], before: dict[str, object],
            sign: Callable[..., dict]) -> Generator[dict | None, tuple, None]:
    """Hold the key in this frame; seal records for the trusted runner only."""
    seq = 0
    attempts: dict[str, int] = {}
    taints: list[str] = []
    reply: dict | None = None
    while True:
        kind, payload = yield reply
        reply = None
        if kind == "taint":
            if isinstance(payload, str) and payload not in taints:
                taints.append(payload)
            continue
        tampered = list(taints)
        for qid, (question, func, points) in questions.items():
            if question.func is not func or question.points != points or question.id != qid:
                tampered.append(f"question {qid}")
        tampered.extend(changes(before))
        if kind == "summary":  # the truth about this run so far: anyone may ask
            seq += 1
            reply = sign({"id": "_summary", "summary": True, "attempts": dict(attempts),
                          "tampered": sorted(set(tampered))}, key=key, run=run, seq=seq)
            continue
        if kind != "seal" or type(payload) is not dict:
            continue
        caller = sys._getframe(1)
        if caller.f_code is not trusted:
            taints.append("a seal asked for outside lk.check")
            continue
        found = caller.f_locals
        if any(found.get(name) is not value for name, value in expected.items()):
            tampered.append("the sealed runner's closure")
        qid = payload.get("id")
        if type(qid) is not str:
            continue
        attempts[qid] = attempts.get(qid, 0) + 1
        seq += 1
        record = {**payload, "attempt": attempts[qid], "tampered": sorted(set(tampered))}
        reply = sign(record, key=key, run=run, seq=seq)


def install(key: bytes, run: str, *, sealed_run: Callable[..., Any],
            questions: dict[str, tuple], sign: Callable[..., dict]) -> Any:
    """Start the sealer for ``sealed_run`` and add the audit hook; return the sealer.

    ``sealed_run`` must be a closure whose free variables are exactly what it was
    armed with (``questions``, ``signer``...); the sealer checks them on every seal.
    """
    code = sealed_run.__code__
    expected = {name: cell.cell_contents for name, cell in
                zip(code.co_freevars, sealed_run.__closure__ or ()) if name != "signer"}
    before = snapshot()
    # The functions whose code may not be replaced: the kit's, the watched libraries',
    # the questions'. (Python itself does it to others: ``types.coroutine``.)
    protected = {id(value) for value in (*before.values(), sealed_run,
                                         *(func for _q, func, _p in questions.values()))
                 if type(value) is types.FunctionType}
    for value in before.values():
        if type(value) in (staticmethod, classmethod) and \
                type(value.__func__) is types.FunctionType:
            protected.add(id(value.__func__))
    signer = _sealer(key, run, code, expected, questions, before, sign)
    next(signer)
    pending: list[str] = []

    def hook(event: str, args: tuple) -> None:
        refused = _REFUSED.get(event)
        if refused is None and event == "object.__setattr__" and len(args) > 1 \
                and args[1] == "__code__" and id(args[0]) in protected:
            refused = f"replacing the __code__ of {getattr(args[0], '__qualname__', '?')}"
        if refused is None and event == "object.__getattr__" and len(args) > 1 \
                and args[0] is signer:
            refused = f"reading the sealer's {args[1]}"
        if refused is None:
            return
        pending.append(refused)
        try:
            while pending:
                signer.send(("taint", pending[0]))
                pending.pop(0)
        except ValueError:  # the sealer is running in another thread: next time
            pass
        raise GradingGuardError(
            f"{refused} is not allowed while labkit grades this notebook: it could"
            " forge a check's record. The grader has noted it.")

    sys.addaudithook(hook)
    return signer
