"""The model every method adapts: an open_clip backbone, the shared decoder, and the parameter ledger."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from methods.backbone import Backbone, BackboneConfig
from methods.decoder import DecoderConfig, RISDecoder

PAPER_RATIO_IMAGE_SIZE = 224  # the ETRIS paper's denominators are image towers at CLIP's pretraining size


@dataclass(frozen=True)
class ParameterCounts:
    """Parameter accounting recorded with every run, each ratio named as what it is.

    `ratio_paper` is the ETRIS paper's ratio: parameters the method adds / CLIP's image tower at 224 px
    (`image_tower_224`; the paper divides by the image encoder of the method it compares with: 86.19M for
    CLIP ViT-B/16). `ratio_added` is added / the whole backbone; `ratio_trainable` is trainable / total,
    which also counts the shared decoder.
    """

    total: int
    trainable: int
    backbone: int
    decoder: int
    added: int
    image_tower_224: int

    @property
    def ratio_trainable(self) -> float:
        return self.trainable / self.total

    @property
    def ratio_added(self) -> float:
        return self.added / self.backbone

    @property
    def ratio_paper(self) -> float:
        return self.added / self.image_tower_224

    def to_dict(self) -> dict[str, float]:
        return {**self.__dict__, "ratio_trainable": self.ratio_trainable, "ratio_added": self.ratio_added,
                "ratio_paper": self.ratio_paper}


class RISModel(nn.Module):
    """Backbone + decoder. Methods add modules or wrap layers; the decoder and loss never change.

    The backbone starts frozen (BatchNorm statistics included) and the decoder trainable; a method
    then unfreezes or adds what it trains. Parameters present at construction are the 'base'; anything
    a method adds afterwards counts as 'added' (methods add or wrap, never remove, parameters).
    """

    def __init__(self, backbone: Backbone, decoder: RISDecoder):
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder
        self.backbone.requires_grad_(False)
        self.backbone.freeze_batchnorm()
        # Sizes, not identities: they survive deepcopy and methods that wrap (rename) base layers.
        self.base_total = sum(p.numel() for p in self.parameters())
        self.backbone_total = sum(p.numel() for p in self.backbone.parameters())
        self.image_tower_224 = backbone.image_tower_parameters(PAPER_RATIO_IMAGE_SIZE)

    @classmethod
    def build(cls, backbone_config: BackboneConfig, decoder_scale: str, gate: str = "linear",
              decoder_components: dict[str, bool] | None = None) -> RISModel:
        backbone = Backbone(backbone_config)
        decoder_config = DecoderConfig.for_backbone(
            backbone.tap_widths, backbone.text_width, backbone.embed_dim, scale=decoder_scale,
            tap_strides=backbone.tap_strides, gate=gate, components=decoder_components,
        )
        return cls(backbone, RISDecoder(decoder_config))

    def forward(self, images: Tensor, tokens: Tensor) -> Tensor:
        features = self.backbone.encode(images, tokens)
        return self.decoder(features.visual, features.words, features.pad_mask, features.sentence)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_counts(self) -> ParameterCounts:
        total = sum(p.numel() for p in self.parameters())
        return ParameterCounts(
            total=total,
            trainable=sum(p.numel() for p in self.parameters() if p.requires_grad),
            backbone=self.backbone_total,
            decoder=sum(p.numel() for p in self.decoder.parameters()),
            added=total - self.base_total,
            image_tower_224=self.image_tower_224,
        )

    @torch.no_grad()
    def predict(self, images: Tensor, tokens: Tensor) -> Tensor:
        """Logits (4x the stride-16 grid; 1/4 of the input for patch-16 ViTs and ResNets) in eval mode."""
        was_training = self.training
        self.eval()
        try:
            return self(images, tokens)
        finally:
            self.train(was_training)
