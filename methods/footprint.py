"""What a method touches in a model, measured by applying it to a copy; two methods combine only if disjoint.

A footprint is measured, not declared, so a new method needs no bookkeeping to take part in combinations:
- `rebinds`: (module path, attribute) slots whose submodule or parameter the method replaced or added (a
  wrapped sublayer, a peft-wrapped Linear, a new bridge);
- `trained`: pre-existing parameters it made trainable (positional embeddings, every weight for `full`);
- `covered`: pre-existing parameters inside the modules it replaced (their computation now depends on it).
Two methods collide when they rebind the same slot or one trains what the other trains or covers. Each part
of a combination must also be parameter-efficient on its own: change something (not `frozen`) and leave part
of the encoders frozen (not `full`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from riscore.errors import UserError


@dataclass(frozen=True)
class Footprint:
    rebinds: frozenset[tuple[str, str]]
    trained: frozenset[str]
    covered: frozenset[str]
    leaves_frozen: bool  # some encoder parameter is still frozen afterwards

    @property
    def empty(self) -> bool:
        return not self.rebinds and not self.trained


def _slots(module: nn.Module) -> dict[str, object]:
    return {**module._modules, **{f"{name} (parameter)": p for name, p in module._parameters.items()}}


def measure(model: nn.Module, apply: Callable[[nn.Module], None]) -> Footprint:
    """Apply to a deep copy of `model` and compare; paths are those of `model` before the method."""
    clone = copy.deepcopy(model)
    modules = dict(clone.named_modules())
    before = {path: _slots(m) for path, m in modules.items()}
    params = dict(clone.named_parameters())
    frozen = {name for name, p in params.items() if not p.requires_grad}
    apply(clone)
    rebinds, covered = set(), set()
    for path, module in modules.items():
        after = _slots(module)
        for key in before[path].keys() | after.keys():
            old = before[path].get(key)
            if old is not after.get(key):
                rebinds.add((path, key))
                if isinstance(old, nn.Module):
                    prefix = f"{path}.{key}." if path else f"{key}."
                    covered |= {prefix + name for name, _ in old.named_parameters()}
    trained = {name for name in frozen if params[name].requires_grad}
    leaves_frozen = any(not p.requires_grad for p in clone.backbone.encoder_parameters())
    return Footprint(frozenset(rebinds), frozenset(trained), frozenset(covered), leaves_frozen)


def check_combinable(footprints: dict[str, Footprint]) -> None:
    """UserError naming the first problem: a part that is not parameter-efficient, or two parts that overlap."""
    for name, fp in footprints.items():
        if fp.empty:
            raise UserError(f"method '{name}' changes nothing in the encoders, so it adds nothing to a "
                            "combination; run it alone")
        if not fp.leaves_frozen:
            raise UserError(f"method '{name}' trains every encoder weight, so nothing is left for a combination "
                            "to be parameter-efficient about; run it alone")
    names = list(footprints)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            fa, fb = footprints[a], footprints[b]
            shared = sorted(f"{path}.{key}" for path, key in fa.rebinds & fb.rebinds)
            shared += sorted((fa.trained & (fb.trained | fb.covered)) | (fb.trained & fa.covered))
            if shared:
                more = f" (and {len(shared) - 1} more)" if len(shared) > 1 else ""
                raise UserError(f"methods '{a}' and '{b}' collide: both adapt {shared[0]}{more}; combine methods "
                                "whose parameters do not overlap (e.g. change one's targets or towers)")
