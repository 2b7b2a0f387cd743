"""Method registry: a PET method is a name, a config dataclass and a function that adapts a model.

Registering a method touches its own file plus one import line in methods/__init__.py; tests
parametrize over `list_methods()`, so a new method is tested without editing tests.

Any two or more registered methods combine as `A+B`: A is applied, then B, provided their parameters do
not collide (methods/footprint.py); options are addressed as `B.option`. `register_combination` lists a
combination (ETRIS's Table 2 has two) with the single methods, so sweeps and tests include it.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from methods.footprint import check_combinable, measure
from riscore.coerce import coerce, field_types
from riscore.errors import UserError

if TYPE_CHECKING:
    from methods.model import RISModel

SEPARATOR = "+"


@dataclass(frozen=True)
class MethodSpec:
    name: str
    config_cls: type
    apply: Callable[[RISModel, Any], None]
    description: str
    identity_at_init: bool  # the adapted model computes exactly what the frozen one does at step 0

    def make_config(self, overrides: dict[str, Any] | None = None) -> Any:
        """The method's config with `overrides` (strings from the CLI are coerced to field types)."""
        types = field_types(self.config_cls)
        values: dict[str, Any] = {}
        for key, value in (overrides or {}).items():
            if key not in types:
                known = ", ".join(sorted(types)) or "none"
                raise UserError(f"method '{self.name}' has no option '{key}'; its options: {known}")
            values[key] = coerce(value, types[key], f"{self.name}.{key}")
        try:
            return self.config_cls(**values)
        except (TypeError, ValueError) as exc:
            raise UserError(f"method '{self.name}': {exc}") from None

    def option_defaults(self) -> dict[str, Any]:
        """Option name -> default value, in declaration order (the names `--set` takes)."""
        config = self.make_config()
        return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


class CombinedConfig:
    """Base of every combination's config: one field per part, named after it, holding that part's config."""

    method = ""  # the combination's name, set on each generated class

    def __reduce__(self):  # generated classes are not importable: rebuild through the registry
        return _combined_config, (self.method, dataclasses.asdict(self))


def _combined_config(method: str, values: dict[str, Any]) -> Any:
    return get_method(method).make_config(values)


@dataclass(frozen=True)
class CombinedSpec(MethodSpec):
    parts: tuple[MethodSpec, ...] = ()

    def make_config(self, overrides: dict[str, Any] | None = None) -> Any:
        """Options as `part.option` (the CLI) or `part` -> {option: value} (a record's nested config)."""
        grouped: dict[str, dict[str, Any]] = {part.name: {} for part in self.parts}
        for key, value in (overrides or {}).items():
            part, dot, option = key.partition(".")
            if part in grouped and dot and option:
                grouped[part][option] = value
            elif part in grouped and not dot and isinstance(value, dict):
                grouped[part].update(value)
            else:
                raise UserError(f"method '{self.name}' has no option '{key}'; address a part's option as "
                                f"PART.OPTION with PART one of {', '.join(grouped)}")
        return self.config_cls(**{part.name: part.make_config(grouped[part.name]) for part in self.parts})

    def option_defaults(self) -> dict[str, Any]:
        return {f"{part.name}.{key}": value for part in self.parts for key, value in part.option_defaults().items()}


def _combine(name: str, parts: tuple[MethodSpec, ...]) -> CombinedSpec:
    config_cls = dataclasses.make_dataclass(
        "Combined_" + "_".join(part.name for part in parts) + "_Config",
        [(part.name, part.config_cls, dataclasses.field(default_factory=part.config_cls)) for part in parts],
        bases=(CombinedConfig,), frozen=True, namespace={"method": name, "__module__": __name__})

    def apply(model: RISModel, config: Any) -> None:
        configs = {part.name: getattr(config, part.name) for part in parts}
        check_combinable({part.name: measure(model, lambda m, p=part: p.apply(m, configs[p.name]))
                          for part in parts})
        for part in parts:
            part.apply(model, configs[part.name])

    description = f"{' then '.join(p.name for p in parts)}, combined (options as PART.OPTION)"
    return CombinedSpec(name, config_cls, apply, description, all(p.identity_at_init for p in parts), parts)


_REGISTRY: dict[str, MethodSpec] = {}
_LISTED_COMBINATIONS: list[str] = []
_COMBINED: dict[str, CombinedSpec] = {}  # one spec (and config class) per combination name


def register_method(name: str, config_cls: type, description: str, identity_at_init: bool = False):
    """Decorator for `apply(model, config)`; the function adapts the model in place."""

    def decorator(apply: Callable[[RISModel, Any], None]) -> Callable[[RISModel, Any], None]:
        if name in _REGISTRY or SEPARATOR in name:
            raise ValueError(f"method '{name}' registered twice or contains '{SEPARATOR}'")
        _REGISTRY[name] = MethodSpec(name, config_cls, apply, description, identity_at_init)
        return apply

    return decorator


def register_combination(name: str) -> None:
    """List a combination with the single methods (its parts must be registered already)."""
    get_method(name)
    if name in _LISTED_COMBINATIONS:
        raise ValueError(f"combination '{name}' registered twice")
    _LISTED_COMBINATIONS.append(name)


def list_methods() -> list[str]:
    """The single methods and the listed combinations (every other non-colliding A+B works by name too)."""
    return sorted([*_REGISTRY, *_LISTED_COMBINATIONS])


def _single(name: str) -> MethodSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UserError(f"unknown method '{name}'.{hint} Known methods: {', '.join(sorted(_REGISTRY))} "
                        f"(combine them as A{SEPARATOR}B)") from None


def get_method(name: str) -> MethodSpec:
    if SEPARATOR not in name:
        return _single(name)
    if name not in _COMBINED:
        parts = tuple(_single(part) for part in name.split(SEPARATOR))
        if len({p.name for p in parts}) != len(parts):
            raise UserError(f"method '{name}' repeats a method; a combination applies each method once")
        _COMBINED[name] = _combine(name, parts)
    return _COMBINED[name]
