"""Turn command-line strings (`--set key=value`, `--budget key=value`) into a config field's annotated type.

Parsing by the annotation rather than by the default's value means `int | None = None` and
`tuple[int, ...] = ()` fields get ints like any other, and configs never see raw strings.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any

from benchmarks.errors import UserError

NONE_WORDS = ("none", "null")


def field_types(config_cls: type) -> dict[str, Any]:
    """The resolved annotation of every field of a dataclass (`from __future__ import annotations` safe)."""
    return typing.get_type_hints(config_cls)


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """`value` converted to `annotation`; strings are parsed, other values (TOML, Python) pass unchanged
    except lists, which become tuples where the field is a tuple.

    `X | None` accepts "none"/"null" for None; floats must be finite (an `inf` option would only surface
    later as a diverged run).
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if isinstance(value, str) and type(None) in args and value.lower() in NONE_WORDS:
            return None
        if value is None:
            return None
        annotation = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if not isinstance(value, str):
        return tuple(value) if origin is tuple and isinstance(value, list) else value
    try:
        if origin is tuple:
            return tuple(_parse(v.strip(), args[0] if args else str) for v in value.split(",") if v.strip())
        return _parse(value, annotation)
    except ValueError:
        kind = getattr(args[0] if origin is tuple and args else annotation, "__name__", str(annotation))
        kind = "finite float" if kind == "float" else kind
        article = "an" if kind[0] in "aeiou" else "a"
        expected = f"comma-separated {kind}s" if origin is tuple else f"{article} {kind}"
        raise UserError(f"{key}={value!r}: expected {expected}") from None


def _parse(text: str, kind: Any) -> Any:
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(text)
        return text.lower() in ("true", "1")
    if kind is int:
        return int(text)
    if kind is float:
        number = float(text)
        if not math.isfinite(number):
            raise ValueError(text)
        return number
    return text  # str, Any, and anything parsed later by its config
