"""The two methods that bracket every PET method: `frozen` (decoder only) and `full` (everything)."""

from __future__ import annotations

from dataclasses import dataclass

from methods.model import RISModel
from methods.registry import register_method


@dataclass(frozen=True)
class FrozenConfig:
    """No options: the encoders stay exactly as pretrained; only the shared decoder learns."""


@register_method("frozen", FrozenConfig, "decoder only; encoders frozen (the floor)", identity_at_init=True)
def apply_frozen(model: RISModel, config: FrozenConfig) -> None:
    del model, config  # the harness already froze the backbone


@dataclass(frozen=True)
class FullConfig:
    train_batchnorm_stats: bool = True  # full fine-tuning as usually done: BN statistics update too


@register_method("full", FullConfig, "full fine-tuning of both encoders (the usual ceiling)",
                 identity_at_init=True)
def apply_full(model: RISModel, config: FullConfig) -> None:
    for param in model.backbone.encoder_parameters():
        param.requires_grad_(True)
    if config.train_batchnorm_stats:
        model.backbone.unfreeze_batchnorm()
