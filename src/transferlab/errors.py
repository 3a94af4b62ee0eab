"""User-facing errors: one line that names the problem and the fix.

The CLI turns a ``UserError`` into that line on stderr and exit status 2;
anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user. ``str(err)`` is the whole message shown."""

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}. {fix}" if fix else problem)


def closest(word: str, choices: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' or '' when nothing is close."""
    choices = list(choices)
    hits = difflib.get_close_matches(word, choices, n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(hits)}?)" if hits else ""
