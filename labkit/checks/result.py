"""What a check says: one result, rendered as text, HTML and JSON from the same data.

The JSON form travels in the notebook as the custom MIME type
``application/vnd.labkit.check+json``; ``labkit grade`` reads it back from the
executed notebook. The text form is what nbval compares, so it must come out the
same on every run: messages are scrubbed of ports and memory addresses.
"""

from __future__ import annotations

import html
import re
from dataclasses import asdict, dataclass

MIME_TYPE = "application/vnd.labkit.check+json"

# Things that change from run to run and must never reach a cell's text output.
_UNSTABLE = [
    (re.compile(r"((?:127\.0\.0\.1|localhost|0\.0\.0\.0)):\d+"), r"\1:<port>"),
    (re.compile(r"\b0x[0-9a-fA-F]{6,}\b"), "0x…"),
    (re.compile(r"\bport=\d+"), "port=<port>"),
]


def stable_text(text: str) -> str:
    """Replace ports and memory addresses in ``text`` with placeholders."""
    for pattern, replacement in _UNSTABLE:
        text = pattern.sub(replacement, text)
    return text


@dataclass(frozen=True)
class CheckResult:
    """The outcome of ``lk.check``: ``passed``, ``points`` of ``max_points``, why.

    >>> CheckResult("00.remember", True, 2, 2, "The guest is remembered.")
    <CheckResult 00.remember passed 2/2>
    """

    id: str
    passed: bool
    points: int
    max_points: int
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", stable_text(self.message))

    def __repr__(self) -> str:
        verdict = "passed" if self.passed else "failed"
        return f"<CheckResult {self.id} {verdict} {self.points}/{self.max_points}>"

    def _ipython_display_(self) -> None:
        """Show the bundle, unless ``check`` already showed it in this very cell."""
        from IPython import get_ipython
        from IPython.display import display

        shell = get_ipython()
        shown_in = getattr(self, "_shown_in", None)
        if shell is not None and shown_in is not None and shown_in == shell.execution_count:
            return  # `lk.check(...)` as a cell's last line: one output, not two
        display(self.to_bundle(), raw=True)

    def to_json(self) -> dict:
        """The result as the dict stored under :data:`MIME_TYPE`."""
        return asdict(self)

    def to_text(self) -> str:
        """Plain text, stable from run to run (nbval compares it)."""
        if self.passed:
            head = f"✔ {self.id} passed ({self.points}/{self.max_points} points)"
        else:
            head = f"✘ {self.id} failed ({self.points}/{self.max_points} points)"
        lines = [head, *("  " + line for line in self.message.splitlines())]
        if not self.passed:
            lines.append(f'  Stuck? lk.hint("{self.id}") gives a hint.')
        return "\n".join(lines)

    def to_html(self) -> str:
        """A small coloured box with the same content as :meth:`to_text`."""
        colour, mark, verdict = (("#1a7f37", "✔", "passed") if self.passed
                                 else ("#cf222e", "✘", "failed"))
        message = html.escape(self.message).replace("\n", "<br>")
        hint = ("" if self.passed else
                f'<div style="opacity:.75">Stuck? <code>lk.hint("{html.escape(self.id)}")'
                "</code> gives a hint.</div>")
        return (
            f'<div style="border-left:4px solid {colour};padding:4px 10px;margin:2px 0">'
            f'<b style="color:{colour}">{mark} {html.escape(self.id)} {verdict}</b>'
            f" ({self.points}/{self.max_points} points)"
            f"<div>{message}</div>{hint}</div>")

    def to_bundle(self) -> dict:
        """The MIME bundle displayed in the notebook: JSON, text and HTML.

        Under ``labkit grade`` the JSON is the sealed record of this check
        (:mod:`labkit.checks.seal`), so showing the result again stays valid.
        """
        return {MIME_TYPE: getattr(self, "_record", None) or self.to_json(), "text/plain": self.to_text(),
                "text/html": self.to_html()}

    @classmethod
    def from_json(cls, data: object) -> CheckResult | None:
        """Rebuild a result from its JSON form; None when ``data`` is not one."""
        if not isinstance(data, dict):
            return None
        try:
            ok = (isinstance(data["id"], str) and isinstance(data["passed"], bool)
                  and isinstance(data["points"], (int, float))
                  and isinstance(data["max_points"], (int, float))
                  and isinstance(data["message"], str))
        except KeyError:
            return None
        if not ok:
            return None
        return cls(data["id"], data["passed"], data["points"], data["max_points"],
                   data["message"])
