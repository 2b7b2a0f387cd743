"""User-facing errors: the CLI prints them as one line and exits with code 2."""

from __future__ import annotations

import difflib


class UserError(Exception):
    """Bad input from the user (name, value, file): the message names the problem and the fix."""


def did_you_mean(name: str, known: list[str] | tuple[str, ...]) -> str:
    """' (did you mean X?)' naming the closest known names, case-insensitively; '' when none is close."""
    lower = {k.lower(): k for k in known}
    exact = [name.lower()] if name.lower() in lower else []  # only the case differs
    close = [lower[c] for c in exact or difflib.get_close_matches(name.lower(), list(lower), n=3)]
    if not close:
        return ""
    names = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
    return f" (did you mean {names}?)"
