"""Which Linear layers of the two towers a weight-space PET method (LoRA and the peft family) adapts.

One selection shared by every such method, so `lora`, `dora`, `ia3`, ... differ only in the update they
apply, never in where. Roles name layers by function, not by open_clip attribute names: the ResNet
attention pool calls its output projection `c_proj`, the same name as a transformer MLP's second layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import nn

from riscore.errors import UserError

if TYPE_CHECKING:
    from methods.backbone import Backbone

TOWERS = ("image", "text", "both")
ROLES = ("q", "k", "v", "out", "c_fc", "c_proj")

# module-name suffix -> role; transformer blocks of either tower, then the ResNet attention pool
_SUFFIX_ROLE = {
    "attn.q_proj": "q",
    "attn.k_proj": "k",
    "attn.v_proj": "v",
    "attn.out_proj": "out",
    "mlp.c_fc": "c_fc",
    "mlp.c_proj": "c_proj",
    "attnpool.q_proj": "q",
    "attnpool.k_proj": "k",
    "attnpool.v_proj": "v",
    "attnpool.c_proj": "out",
}


def check_selection(towers: str, targets: Sequence[str]) -> None:
    """ValueError naming the bad field; called from the configs' __post_init__."""
    if towers not in TOWERS:
        raise ValueError(f"towers must be one of {', '.join(TOWERS)}, got {towers!r}")
    if not targets:
        raise ValueError(f"targets must name at least one of {', '.join(ROLES)}")
    bad = [t for t in targets if t not in ROLES]
    if bad:
        raise ValueError(f"targets {bad} unknown; choose from {', '.join(ROLES)}")
    if len(set(targets)) != len(targets):
        raise ValueError(f"targets {list(targets)} repeat a role")


WRAPPED = "inner"  # attribute under which a wrapping method (adapter, prompt) keeps the original module


def _role(name: str) -> str | None:
    while f".{WRAPPED}." in name:  # a wrapped block or attention keeps its layers' roles, however deep
        name = name.replace(f".{WRAPPED}.", ".")
    for suffix, role in _SUFFIX_ROLE.items():
        if name == suffix or name.endswith("." + suffix):
            return role
    return None


def select_linears(clip: nn.Module, towers: str, targets: Sequence[str]) -> dict[str, str]:
    """Module name (relative to `clip`) -> role, for every plain nn.Linear in the chosen towers and roles.

    The image tower is everything under `visual.`; a ResNet image tower offers only its attention pool's
    q/k/v/out. Layers already wrapped by a peft tuner are no longer plain Linears and are not offered again.
    """
    check_selection(towers, targets)
    chosen: dict[str, str] = {}
    for name, module in clip.named_modules():
        role = _role(name)
        if role is None or role not in targets or not isinstance(module, nn.Linear):
            continue
        tower = "image" if name.startswith("visual.") else "text"
        if towers in ("both", tower):
            chosen[name] = role
    if not chosen:
        raise UserError(f"no Linear layer matches towers={towers} targets={','.join(targets)} in this backbone")
    return chosen


def unwrapped(module: nn.Module) -> nn.Module:
    """The original module inside any wrappers (a prompted block, an adapter around a sublayer)."""
    while hasattr(module, WRAPPED):
        module = getattr(module, WRAPPED)
    return module


def tower_blocks(backbone: Backbone, towers: str) -> list[tuple[str, nn.Module]]:
    """(tower, block) for the transformer blocks of the chosen towers; a ResNet image tower has none.

    Blocks another method wrapped (VPT's prompted blocks) are returned unwrapped, so methods compose."""
    if towers not in TOWERS:
        raise ValueError(f"towers must be one of {', '.join(TOWERS)}, got {towers!r}")
    blocks: list[tuple[str, nn.Module]] = []
    if towers in ("image", "both") and backbone.kind == "vit":
        blocks += [("image", unwrapped(block)) for block in backbone.image_stages]
    if towers in ("text", "both"):
        blocks += [("text", unwrapped(block)) for block in backbone.text_blocks]
    if not blocks:
        raise UserError(f"towers={towers}: {backbone.config.arch} has no transformer blocks there "
                        "(a ResNet image tower is adapted through its text tower only)")
    return blocks
