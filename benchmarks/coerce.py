"""Turn command-line strings (`--set key=value`) into the type a config field already has."""

from __future__ import annotations

from typing import Any

from benchmarks.errors import UserError


def coerce(value: Any, like: Any, key: str, optional: bool = False) -> Any:
    """`value` converted to the type of `like` (the field's current or default value).

    For an `optional` field (annotated `X | None`) the strings "none" and "null" mean None.
    """
    if isinstance(value, str) and (optional or like is None) and value.lower() in ("none", "null"):
        return None
    if not isinstance(value, str):
        return tuple(value) if isinstance(like, tuple) and isinstance(value, list) else value
    if like is None or isinstance(like, str):
        return value
    try:
        if isinstance(like, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if isinstance(like, int):
            return int(value)
        if isinstance(like, float):
            return float(value)
        if isinstance(like, tuple):
            kind = type(like[0]) if like else str
            return tuple(kind(v) for v in value.split(",") if v)
    except ValueError:
        kind = type(like).__name__
        raise UserError(f"{key}={value!r}: expected {'an' if kind[0] in 'aeiou' else 'a'} {kind}") from None
    return value
