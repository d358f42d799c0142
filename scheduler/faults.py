"""Naming an unexpected error without quoting it.

An exception's text may quote the mail that caused it (a header, a line
with a CPR number), so what is shown to people and written to logs is its
class and a reference to the place it was raised: ``parse.py:123``.
"""

from __future__ import annotations

import os
import traceback


def error_ref(exc: BaseException) -> str:
    """``file:line`` of the innermost frame of our own code, else of the last frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f"{os.sep}scheduler{os.sep}" in f.filename] or frames
    if not ours:
        return "unknown"
    frame = ours[-1]
    return f"{os.path.basename(frame.filename)}:{frame.lineno}"


def describe(exc: BaseException) -> str:
    """``ValueError at parse.py:123``: never the exception's text."""
    return f"{type(exc).__name__} at {error_ref(exc)}"
