"""Turn command-line strings (`--set key=value`, `--budget key=value`) into a config field's annotated type.

Parsing by the annotation rather than by the default's value means `int | None = None` and
`tuple[int, ...] = ()` fields get ints like any other, and configs never see raw strings.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from riscore.errors import UserError

NONE_WORDS = ("none", "null")


def field_types(config_cls: type) -> dict[str, Any]:
    """The resolved annotation of every field of a dataclass (`from __future__ import annotations` safe);
    class variables are not fields."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def coerce(value: Any, annotation: Any, key: str) -> Any:
    """`value` converted to `annotation`; strings are parsed, other values (TOML, Python) must already have
    the type (see `conform`).

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
        return conform(value, annotation, key)
    try:
        if origin is tuple:
            return tuple(_parse(item, args[0] if args else str) for item in comma_items(value, key))
        return _parse(value, annotation)
    except ValueError:
        kind = _kind(args[0] if origin is tuple and args else annotation)
        expected = f"comma-separated {kind}s" if origin is tuple else f"{_article(kind)} {kind}"
        raise UserError(f"{key}={value!r}: expected {expected}") from None


def comma_items(text: str, key: str) -> list[str]:
    """The stripped items of a comma-separated list; text without any (blank, or only commas) is no items, for
    the caller to refuse or accept. An empty item beside others (`2,,4`, `2,4,`) is refused rather than
    dropped: it is usually a value that went missing."""
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        return []
    if "" in items:
        raise UserError(f"{key} {text!r}: an empty item between commas; list values like 2,4")
    return items


def conform(value: Any, annotation: Any, key: str) -> Any:
    """`value` if it has the annotated type, with lists made tuples where the field is a tuple; else a
    UserError. Strict: a bool is not a number, a string is not a list, an int is a float (TOML writes `1`),
    and values are never converted otherwise (the config hash covers them as given)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        annotation = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{key}={value!r}: expected a list of {_kind(args[0] if args else Any)} values")
        return tuple(conform(v, args[0], f"{key}[{i}]") if args and args[-1] is ... else v
                     for i, v in enumerate(value))
    target = origin or annotation
    fits = {bool: lambda v: isinstance(v, bool),
            int: lambda v: isinstance(v, int) and not isinstance(v, bool),
            float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
            str: lambda v: isinstance(v, str),
            dict: lambda v: isinstance(v, dict)}.get(target)
    if fits is not None and not fits(value):
        raise UserError(f"{key}={value!r}: expected {_article(_kind(target))} {_kind(target)}")
    return value


def _kind(annotation: Any) -> str:
    name = getattr(annotation, "__name__", str(annotation))
    return {"float": "finite float", "dict": "table"}.get(name, name)


def _article(kind: str) -> str:
    return "an" if kind[0] in "aeiou" else "a"


def _parse(text: str, kind: Any) -> Any:
    if kind in (int, float) and not (text.isascii() and "_" not in text):
        raise ValueError(text)  # Python would read "４" or "1_000"; a config should spell numbers plainly
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
