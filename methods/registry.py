"""Method registry: a PET method is a name, a config dataclass and a function that adapts a model.

Registering a method touches its own file plus one import line in methods/__init__.py; tests
parametrize over `list_methods()`, so a new method is tested without editing tests.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from riscore.coerce import coerce, field_types
from riscore.errors import UserError

if TYPE_CHECKING:
    from methods.model import RISModel


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


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(name: str, config_cls: type, description: str, identity_at_init: bool = False):
    """Decorator for `apply(model, config)`; the function adapts the model in place."""

    def decorator(apply: Callable[[RISModel, Any], None]) -> Callable[[RISModel, Any], None]:
        if name in _REGISTRY:
            raise ValueError(f"method '{name}' registered twice")
        _REGISTRY[name] = MethodSpec(name, config_cls, apply, description, identity_at_init)
        return apply

    return decorator


def list_methods() -> list[str]:
    return sorted(_REGISTRY)


def get_method(name: str) -> MethodSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UserError(f"unknown method '{name}'.{hint} Known methods: {', '.join(list_methods())}") from None
