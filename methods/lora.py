"""LoRA and its peft siblings (DoRA, IA3, LoHa, LoKr, OFT) on the unfused attention/MLP Linears.

Every method here is peft's `inject_adapter_in_model` applied to the CLIP module with the exact layer names
from methods/targets.py, so they differ only in the weight update. The Linears are the unfused q/k/v/out
projections (methods/attention.py), never nn.MultiheadAttention, whose peft path applies out_proj twice.
Not offered: VeRA (and other tuners with state shared across layers: peft refuses them in
`inject_adapter_in_model`) and BOFT (it tries to compile a CUDA extension at injection).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from methods.model import RISModel
from methods.registry import register_method
from methods.targets import check_selection, select_linears
from riscore.errors import UserError


@dataclass(frozen=True)
class TargetedConfig:
    towers: str = "both"  # image, text or both
    targets: tuple[str, ...] = ("q", "v")  # roles from methods/targets.ROLES: q k v out c_fc c_proj

    def __post_init__(self) -> None:
        check_selection(self.towers, self.targets)


@dataclass(frozen=True)
class RankConfig(TargetedConfig):
    rank: int = 8
    alpha: float = 16.0  # the update is scaled by alpha / rank

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        if self.alpha <= 0:
            raise ValueError(f"alpha must be positive, got {self.alpha}")


@dataclass(frozen=True)
class LoraMethodConfig(RankConfig):
    dropout: float = 0.0  # on the LoRA branch's input only

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class IA3MethodConfig(TargetedConfig):
    """(IA)^3's own default: rescale keys, values and the MLP hidden activations (input of c_proj)."""

    targets: tuple[str, ...] = ("k", "v", "c_proj")
    feedforward: tuple[str, ...] = ("c_proj",)  # roles whose input, not output, is rescaled

    def __post_init__(self) -> None:
        super().__post_init__()
        extra = set(self.feedforward) - set(self.targets)
        if extra:
            raise ValueError(f"feedforward {sorted(extra)} must also be in targets {list(self.targets)}")


@dataclass(frozen=True)
class OFTMethodConfig(TargetedConfig):
    block_size: int = 32  # must divide every targeted layer's in_features

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {self.block_size}")


def exactly(names: Iterable[str]) -> str:
    """A peft module pattern that matches these full names only.

    peft matches a *list* of names by suffix, so the text tower's `transformer.resblocks.0.attn.q_proj`
    also catches `visual.transformer.resblocks.0.attn.q_proj`; a string is matched with re.fullmatch.
    """
    return "|".join(re.escape(name) for name in names) or "(?!)"


ADAPTER_NAME = "risbench"  # the first peft adapter of a model; a later one (a combination A+B) gets ADAPTER_NAME2...


def inject_peft(model: RISModel, config: TargetedConfig, make: Callable[[Any, dict[str, str]], Any]) -> None:
    """Inject the peft config `make(peft, name -> role)` into the CLIP module; other trainable flags survive.

    peft is imported here, not with the registry: it loads transformers, which listing methods does not need.

    peft freezes everything but its adapters in the module it is given; a method applied earlier (a
    Bridger, trained position embeddings) must keep training, so its flags are restored afterwards.
    A second peft method (lora+loha) gets its own adapter name: peft keeps one config per name, so sharing
    one would leave the first adapter's layers without a config to save them by (benchmarks/saved_model.py).
    """
    clip = model.backbone.clip
    chosen = select_linears(clip, config.towers, config.targets)
    keep = [p for p in model.parameters() if p.requires_grad]
    present = len(getattr(clip, "peft_config", None) or {})
    name = ADAPTER_NAME if not present else f"{ADAPTER_NAME}{present + 1}"
    import peft

    try:
        with warnings.catch_warnings():  # several adapters in one module is what a combination asks for
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            peft.inject_adapter_in_model(make(peft, chosen), clip, adapter_name=name)
    except ValueError as exc:  # e.g. a block size that does not divide a layer's width
        raise UserError(f"peft cannot adapt {config.towers} x {','.join(config.targets)}: {exc}") from exc
    for param in keep:
        param.requires_grad_(True)


@register_method("lora", LoraMethodConfig, "peft LoRA (W + alpha/r BA) on the chosen Linears of both towers",
                 identity_at_init=True)
def apply_lora(model: RISModel, config: LoraMethodConfig) -> None:
    inject_peft(model, config, lambda peft, chosen: peft.LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=exactly(chosen)))


@register_method("dora", LoraMethodConfig, "peft DoRA: LoRA direction plus a learned per-row magnitude",
                 identity_at_init=True)
def apply_dora(model: RISModel, config: LoraMethodConfig) -> None:
    inject_peft(model, config, lambda peft, chosen: peft.LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout, target_modules=exactly(chosen),
        use_dora=True))


@register_method("ia3", IA3MethodConfig, "peft (IA)^3: learned rescaling of keys, values, MLP activations",
                 identity_at_init=True)
def apply_ia3(model: RISModel, config: IA3MethodConfig) -> None:
    inject_peft(model, config, lambda peft, chosen: peft.IA3Config(
        target_modules=exactly(chosen),
        feedforward_modules=exactly(name for name, role in chosen.items() if role in config.feedforward)))


@register_method("loha", RankConfig, "peft LoHa: Hadamard product of two low-rank updates",
                 identity_at_init=True)
def apply_loha(model: RISModel, config: RankConfig) -> None:
    inject_peft(model, config, lambda peft, chosen: peft.LoHaConfig(
        r=config.rank, alpha=config.alpha, target_modules=exactly(chosen)))


@register_method("lokr", RankConfig, "peft LoKr: Kronecker product of a small and a low-rank factor",
                 identity_at_init=True)
def apply_lokr(model: RISModel, config: RankConfig) -> None:
    inject_peft(model, config, lambda peft, chosen: peft.LoKrConfig(
        r=config.rank, alpha=config.alpha, target_modules=exactly(chosen)))


@register_method("oft", OFTMethodConfig, "peft OFT: block-diagonal orthogonal rotation of the weights",
                 identity_at_init=True)
def apply_oft(model: RISModel, config: OFTMethodConfig) -> None:
    # peft would silently shrink a block size that does not divide a layer to one that does
    clip = model.backbone.clip
    widths = {clip.get_submodule(name).in_features for name in select_linears(clip, config.towers, config.targets)}
    bad = sorted(w for w in widths if w % config.block_size)
    if bad:
        raise UserError(f"oft block_size {config.block_size} does not divide the targeted widths {bad}")
    inject_peft(model, config, lambda peft, chosen: peft.OFTConfig(
        r=0, oft_block_size=config.block_size, target_modules=exactly(chosen)))
