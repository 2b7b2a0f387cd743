"""The open_clip image and text towers run block by block, so methods can act between blocks.

ETRIS interleaves the two towers (Bridger after visual stage k and text block k); open_clip's own
forward runs each tower in one call. Backbone exposes the stems, the blocks and the heads separately and
`encode` steps both towers in lock step, calling an optional `bridge` at declared stage pairs and taking
the three decoder taps after it. Attention is unfused (methods/attention.py) so PET methods see q/k/v.
"""

from __future__ import annotations

import copy
import logging
import math
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import LongTensor, Tensor, nn

from methods.attention import unfuse_attention
from riscore.choices import ATTNPOOLS
from riscore.errors import UserError, did_you_mean

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
_configs_registered = False


def register_model_configs() -> None:
    """Make the project's open_clip configs (e.g. risbench-tiny-vit) known to open_clip, once."""
    import open_clip  # here, not at import: open_clip pulls in torchvision, and listing methods needs neither

    global _configs_registered
    if not _configs_registered:
        open_clip.add_model_config(MODEL_CONFIG_DIR)
        _configs_registered = True


def check_arch(arch: str) -> None:
    """An unknown architecture is a one-line error with the near names, not open_clip's whole list."""
    import open_clip

    register_model_configs()
    known = open_clip.list_models()
    if arch not in known:
        ours = ", ".join(sorted(p.stem for p in MODEL_CONFIG_DIR.glob("*.json")))
        raise UserError(f"unknown backbone '{arch}'{did_you_mean(arch, known)}; {len(known)} are known: this "
                        f"project's {ours} and open_clip's (e.g. RN50, ViT-B-16), listed by "
                        "python -c 'import open_clip; print(open_clip.list_models())'")


def check_input_size(arch: str, image_size: int, text_len: int) -> None:
    """Refuse an image size the towers cannot tile or a text longer than their context, from open_clip's config
    of `arch` alone: before any tower is built (at a wrong size a tower may take minutes or all memory to build,
    only to be refused)."""
    import open_clip
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    register_model_configs()
    config = open_clip.get_model_config(arch)
    vision, text = CLIPVisionCfg(**config["vision_cfg"]), CLIPTextCfg(**config["text_cfg"])
    if vision.timm_model_name:  # open_clip builds a timm tower: neither its ViT nor its ModifiedResNet
        raise UserError(f"{arch}: unsupported image tower (timm {vision.timm_model_name}); use an open_clip ViT "
                        "or ResNet architecture such as ViT-B-16 or RN50")
    resnet = isinstance(vision.layers, (list, tuple))
    stride = 32 if resnet else (vision.patch_size if isinstance(vision.patch_size, int) else vision.patch_size[0])
    if image_size % stride:
        below = image_size // stride * stride
        sizes = f"{below} or {below + stride}" if below else f"{stride}"
        raise UserError(f"image_size {image_size} must be a multiple of {stride} ({arch}'s stride), e.g. {sizes}")
    if text_len > text.context_length:
        raise UserError(f"text_len {text_len} exceeds the context length {text.context_length} of {arch}; "
                        f"use at most {text.context_length}")


def token_count(arch: str, text: str) -> int:
    """Tokens of `text` with its start and end tokens, uncut: a text_len below it truncates the expression."""
    import open_clip

    register_model_configs()
    longest = len(text.encode()) + 2  # byte-level BPE: at most one token per UTF-8 byte
    tokens = open_clip.get_tokenizer(arch)([text], context_length=longest)
    return int(tokens[0].argmax()) + 1  # the end token has the highest id (CLIP reads the sentence there too)


@dataclass(frozen=True)
class BackboneConfig:
    arch: str = "risbench-tiny-vit"
    pretrained: str | None = None  # open_clip pretrained tag, or a local .safetensors/.pt/.bin path
    image_size: int = 64
    text_len: int = 16
    # QuickGELU whatever the weights' source. An open_clip tag sets it itself (openai's tags do), a weights
    # file cannot say which activation it was trained with: openai weights from a file need True.
    quick_gelu: bool = False
    attnpool: str = "clip"  # ResNet head: "clip" (pretrained CLIP's) or "etris" (see etris_attnpool)

    def __post_init__(self) -> None:
        check_arch(self.arch)
        if self.pretrained is not None and not (isinstance(self.pretrained, str) and self.pretrained):
            raise ValueError("pretrained must be None, an open_clip tag or a weights file path")
        if self.attnpool not in ATTNPOOLS:
            raise ValueError(f"attnpool must be one of {', '.join(ATTNPOOLS)}, got {self.attnpool!r}")
        if self.image_size <= 0:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if self.text_len < 2:
            raise ValueError(f"text_len must be >= 2 (start and end tokens), got {self.text_len}")
        check_input_size(self.arch, self.image_size, self.text_len)


@dataclass
class BackboneFeatures:
    visual: list[Tensor]  # 3 decoder taps [B, C_i, H_i, W_i]
    words: Tensor  # [B, L, text_width] after ln_final, not projected
    pad_mask: Tensor  # [B, L] bool, True at padding (token id 0)
    sentence: Tensor  # [B, embed_dim]: the EOT word projected by text_projection


def resize_grid(pos: Tensor, size: tuple[int, int], antialias: bool = True) -> Tensor:
    """Bicubic resize of a square grid of position embeddings [N, C] to [h*w, C].

    antialias=True is open_clip's resize of checkpoints; ETRIS's per-forward resize uses plain bicubic (which
    differs even when upsampling: torch's antialiased kernel is PIL's cubic, a = -0.5, the plain one a = -0.75).
    """
    side = math.isqrt(pos.shape[0])
    if side * side != pos.shape[0]:
        raise ValueError(f"position embedding of {pos.shape[0]} rows is not a square grid")
    if (side, side) == size:
        return pos
    grid = pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=size, mode="bicubic", antialias=antialias, align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(size[0] * size[1], -1)


def _checkpoint_path(config: BackboneConfig) -> tuple[Path, dict] | None:
    """Resolve config.pretrained to a file (downloading a tag if open_clip can) and its tag config."""
    from open_clip import pretrained as oc_pretrained

    tag = config.pretrained
    if tag is None:
        return None
    tag_cfg = oc_pretrained.get_pretrained_cfg(config.arch, tag)
    if tag_cfg:
        try:
            return Path(oc_pretrained.download_pretrained(tag_cfg)), tag_cfg
        except Exception as exc:  # network, hub and cache errors all mean the same to the user
            raise UserError(
                f"cannot load pretrained weights '{tag}' for {config.arch}: no network or cache; download "
                "them and pass --pretrained /path/to/open_clip_model.safetensors"
            ) from exc
    path = Path(tag)
    if path.suffix in _WEIGHT_SUFFIXES or path.exists():
        if not path.is_file():
            raise UserError(f"pretrained weights file not found: {path}")
        return path, {}
    tags = oc_pretrained.list_pretrained_tags_by_model(config.arch)
    raise UserError(f"unknown pretrained tag '{tag}' for {config.arch}; use one of {tags} or a weights file")


def pretrained_file(config: BackboneConfig) -> Path | None:
    """The file the backbone's pretrained weights are read from (None: random initialisation)."""
    resolved = _checkpoint_path(config)
    return resolved[0] if resolved else None


def _load_weights(clip: nn.Module, path: Path) -> None:
    """open_clip's checkpoint loading plus the ResNet attnpool grid resize it lacks; weights become fp32."""
    from open_clip.convert import convert_state_dict
    from open_clip.factory import load_state_dict
    from open_clip.model import resize_pos_embed
    from open_clip.modified_resnet import ModifiedResNet

    try:
        state = load_state_dict(str(path))
    except Exception as exc:
        raise UserError(f"cannot read pretrained weights file {path}: {exc}") from exc
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    state = convert_state_dict(clip, state)
    resize_pos_embed(state, clip)
    # ETRIS's connect branch is not part of CLIP: it keeps its fixed initialisation (see etris_attnpool)
    state.update({k: v for k, v in clip.state_dict().items() if ".attnpool.connect." in k and k not in state})
    key = "visual.attnpool.positional_embedding"
    if isinstance(clip.visual, ModifiedResNet) and key in state:
        side = math.isqrt(clip.visual.attnpool.positional_embedding.shape[0] - 1)
        state[key] = torch.cat([state[key][:1], resize_grid(state[key][1:], (side, side))])
    try:
        clip.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first_line = str(exc).splitlines()[0]
        raise UserError(f"weights in {path} do not fit this architecture: {first_line}") from exc


@contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def etris_attnpool(visual: nn.Module, pretrain_size: int) -> None:
    """Make open_clip's ResNet attention pool ETRIS's: ETRIS's own head, not pretrained CLIP's behaviour.

    ETRIS stores the positional grid at CLIP's pretraining resolution (7x7 for 224 px) and resizes it
    (plain bicubic) to the feature map at every forward, instead of storing it at the input's grid; and it
    returns ReLU(attention + BatchNorm(Conv1x1(x))), its `connect` branch. The branch is not in CLIP's
    weights: it keeps torch's default initialisation and is frozen with the rest of CLIP (ETRIS trains only
    the positional embeddings), so only its BatchNorm statistics can change, in train-mode BatchNorm. Being
    in no weights file and never trained, the conv is drawn from a fixed generator: every build (a saved
    model read back, a resumed run, every process) has the same one.
    """
    from open_clip.modified_resnet import ModifiedResNet

    if not isinstance(visual, ModifiedResNet):
        raise UserError(f"attnpool 'etris' is ETRIS's ResNet head; this image tower is {type(visual).__name__}: "
                        "use attnpool = \"clip\"")
    pool = visual.attnpool
    side, width = pretrain_size // 32, pool.positional_embedding.shape[1]
    pool.positional_embedding = nn.Parameter(torch.randn(side * side + 1, width) / width**0.5)  # open_clip's init
    conv = nn.Conv2d(width, visual.output_dim, 1, bias=False)
    nn.init.kaiming_uniform_(conv.weight, a=math.sqrt(5), generator=torch.Generator().manual_seed(0))  # torch's
    pool.connect = nn.Sequential(conv, nn.BatchNorm2d(visual.output_dim))


def _activation_warning(config: BackboneConfig, resolved: tuple[Path, dict] | None) -> None:
    """A weights file for an architecture whose openai weights need QuickGELU, built without it: say so."""
    from open_clip import pretrained as oc_pretrained

    if resolved is None or resolved[1] or config.quick_gelu:
        return
    if oc_pretrained.get_pretrained_cfg(config.arch, "openai").get("quick_gelu"):
        warnings.warn(f"{config.arch} weights from the file {resolved[0]} are run with GELU; if they are "
                      "openai's, set quick_gelu = true (suite key), as the paper suites do", stacklevel=3)


def _build_clip(config: BackboneConfig) -> nn.Module:
    import open_clip

    resolved = _checkpoint_path(config)
    tag_cfg = resolved[1] if resolved else {}
    _activation_warning(config, resolved)
    with _quiet_root_logger():  # open_clip warns "no pretrained weights": we load them ourselves below
        clip = open_clip.create_model(
            config.arch,
            pretrained=None,
            force_image_size=config.image_size,
            force_quick_gelu=config.quick_gelu or bool(tag_cfg.get("quick_gelu", False)),
            force_preprocess_cfg={k: tag_cfg[k] for k in ("mean", "std") if k in tag_cfg},
        )
    if config.attnpool == "etris":
        etris_attnpool(clip.visual, open_clip.get_model_config(config.arch)["vision_cfg"]["image_size"])
    if resolved:
        _load_weights(clip, resolved[0])
    return clip.float()


class Backbone(nn.Module):
    def __init__(self, config: BackboneConfig) -> None:
        import open_clip
        from open_clip.modified_resnet import ModifiedResNet
        from open_clip.transformer import VisionTransformer

        super().__init__()
        self.config = config
        self.clip = _build_clip(config)
        visual = self.clip.visual
        if isinstance(visual, VisionTransformer):
            self.kind = "vit"
            layers = len(visual.transformer.resblocks)
            if layers < 3:
                raise UserError(f"{config.arch}: the ViT needs at least 3 blocks for 3 taps, has {layers}")
            self.stage_widths = [visual.transformer.width] * layers
            self.tap_stages = (layers // 3 - 1, 2 * layers // 3 - 1, layers - 1)
            stride = visual.patch_size[0]
            self.tap_strides = (stride, stride, stride)
        elif isinstance(visual, ModifiedResNet):
            self.kind = "resnet"
            self.stage_widths = [layer[-1].conv3.out_channels for layer in self._resnet_layers()]
            self.tap_stages = (1, 2, 3)
            self.tap_strides = (8, 16, 32)
            stride = 32
        else:
            raise UserError(f"{config.arch}: unsupported image tower {type(visual).__name__}")
        if not hasattr(self.clip, "token_embedding"):
            raise UserError(f"{config.arch}: unsupported text tower (needs open_clip's built-in CLIP text)")
        self.grid = config.image_size // stride
        self.text_width = self.clip.transformer.width
        self.embed_dim = visual.output_dim
        self.tap_widths = [
            self.stage_widths[self.tap_stages[0]],
            self.stage_widths[self.tap_stages[1]],
            self.embed_dim,
        ]
        self.bridge: nn.Module | None = None
        self.text_prompt: nn.Module | None = None  # called as text_prompt(backbone, tokens), see embed_text
        self._bn_frozen = False
        unfuse_attention(self.clip)
        pre = visual.preprocess_cfg
        self.register_buffer("pixel_mean", torch.tensor(pre["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pre["std"]).view(1, 3, 1, 1), persistent=False)
        self._tokenizer = open_clip.get_tokenizer(config.arch)

    def __deepcopy__(self, memo: dict) -> Backbone:
        """Copies share the tokenizer: it holds no weights, only vocabulary tables that took most of the time of
        copying a small model (methods measure their footprint on a copy; tests copy models all the time)."""
        memo.setdefault(id(self._tokenizer), self._tokenizer)
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        clone.__setstate__(copy.deepcopy(self.__dict__, memo))  # what copy.deepcopy does for any nn.Module
        return clone

    # Stages are properties, not submodules: registering them again would duplicate state_dict keys.
    def _resnet_layers(self) -> list[nn.Module]:
        v = self.clip.visual
        return [v.layer1, v.layer2, v.layer3, v.layer4]

    @property
    def image_stages(self) -> nn.ModuleList:
        if self.kind == "vit":
            return self.clip.visual.transformer.resblocks
        return nn.ModuleList(self._resnet_layers())

    @property
    def text_blocks(self) -> nn.ModuleList:
        return self.clip.transformer.resblocks

    def encoder_parameters(self) -> list[nn.Parameter]:
        """CLIP parameters the segmentation forward uses (the contrastive logit scale/bias are not)."""
        return [p for n, p in self.clip.named_parameters() if not n.startswith("logit_")]

    def image_tower_parameters(self, image_size: int) -> int:
        """Parameters of CLIP's image tower built for `image_size` px: the positional grid is the only part that
        depends on the size; ETRIS's connect branch is not CLIP's and not counted."""
        visual = self.clip.visual
        if self.kind == "vit":
            pos, side = visual.positional_embedding, image_size // self.tap_strides[0]
        else:
            pos, side = visual.attnpool.positional_embedding, image_size // 32
        total = sum(p.numel() for n, p in visual.named_parameters() if not n.startswith("attnpool.connect."))
        return total - pos.numel() + (side * side + 1) * pos.shape[1]

    def freeze_batchnorm(self) -> None:
        """Frozen BatchNorm must not update running stats, so it stays in eval mode across train()."""
        self._bn_frozen = True
        self.train(self.training)

    def unfreeze_batchnorm(self) -> None:
        """Let CLIP's BatchNorm statistics update in training again (full fine-tuning, ETRIS's drift)."""
        self._bn_frozen = False
        self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if self._bn_frozen:  # only CLIP's own BatchNorms: modules methods add (a bridge) train normally
            for m in self.clip.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def tokenize(self, texts: list[str]) -> LongTensor:
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise UserError(f"referring expression must be a non-empty string, got {t!r}")
        return self._tokenizer(texts, context_length=self.config.text_len)

    def image_stem(self, images: Tensor) -> Tensor:
        x = (images - self.pixel_mean) / self.pixel_std
        v = self.clip.visual
        if self.kind == "resnet":
            return v.stem(x)
        x = v.conv1(x).flatten(2).transpose(1, 2)
        cls = v.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1)
        x = torch.cat([cls.to(x.dtype), x], dim=1) + v.positional_embedding
        return v.ln_pre(x)

    def text_stem(self, tokens: Tensor) -> Tensor:
        return self.clip.token_embedding(tokens) + self.clip.positional_embedding[: tokens.shape[1]]

    def embed_text(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """Token ids as the text tower sees them and their embeddings; a text prompt changes both.

        Learned context tokens (methods/prompt.py) shift the expression right, so the end-of-text position
        and the padding mask must come from the shifted ids, not the tokenizer's.
        """
        if self.text_prompt is None:
            return tokens, self.text_stem(tokens)
        return self.text_prompt(self, tokens)

    def run_text_block(self, i: int, x: Tensor) -> Tensor:
        n = x.shape[1]
        return self.text_blocks[i](x, attn_mask=self.clip.attn_mask[:n, :n])

    def _patches_to_map(self, x: Tensor) -> Tensor:
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], self.grid, self.grid)

    def tokens_to_map(self, x: Tensor) -> Tensor:
        return x if self.kind == "resnet" else self._patches_to_map(x[:, 1:])

    def map_to_tokens(self, v: Tensor, like: Tensor) -> Tensor:
        if self.kind == "resnet":
            return v
        return torch.cat([like[:, :1], v.flatten(2).transpose(1, 2)], dim=1)

    def image_head(self, x: Tensor) -> Tensor:
        if self.kind == "vit":
            v = self.clip.visual
            return self._patches_to_map(v.ln_post(x[:, 1:]) @ v.proj)
        return self._spatial_attnpool(x)

    def _spatial_attnpool(self, x: Tensor) -> Tensor:
        """CLIP's attention pool queried at every position (CRIS/ETRIS), via its Linears so PET sees them;
        in ETRIS mode with its per-forward grid resize and `connect` branch (see etris_attnpool)."""
        pool = self.clip.visual.attnpool
        etris = self.config.attnpool == "etris"
        b, _, h, w = x.shape
        pos = resize_grid(pool.positional_embedding[1:], (h, w), antialias=not etris)
        t = x.flatten(2).transpose(1, 2) + pos
        heads = pool.num_heads

        def split(y: Tensor) -> Tensor:
            return y.view(b, h * w, heads, -1).transpose(1, 2)

        q, k, v = split(pool.q_proj(t)), split(pool.k_proj(t)), split(pool.v_proj(t))
        out = F.scaled_dot_product_attention(q, k, v)
        out = pool.c_proj(out.transpose(1, 2).reshape(b, h * w, -1))
        out = out.transpose(1, 2).reshape(b, -1, h, w)
        return F.relu(out + pool.connect(x)) if etris else out

    def text_head(self, x: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        words = self.clip.ln_final(x)
        eot = words[torch.arange(words.shape[0], device=words.device), tokens.argmax(dim=-1)]
        proj = self.clip.text_projection
        sentence = proj(eot) if isinstance(proj, nn.Linear) else eot @ proj
        return words, tokens == 0, sentence

    def _bridge_pairs(self) -> dict[int, tuple[int, int]]:
        """image stage -> (pair index, text block), after checking the bridge's pairs."""
        if self.bridge is None:
            return {}
        pairs = list(self.bridge.pairs)
        for (i0, t0), (i1, t1) in zip(pairs, pairs[1:], strict=False):
            if not (i1 > i0 and t1 > t0):
                raise ValueError(f"bridge pairs must increase in both stage and block, got {pairs}")
        for i, t in pairs:
            if not (0 <= i < len(self.stage_widths) and 0 <= t < len(self.text_blocks)):
                raise ValueError(f"bridge pair {(i, t)} out of range for {self.config.arch}")
        return {i: (k, t) for k, (i, t) in enumerate(pairs)}

    def encode(self, images: Tensor, tokens: Tensor) -> BackboneFeatures:
        pairs = self._bridge_pairs()
        tokens, txt = self.embed_text(tokens)
        pad_mask = tokens == 0
        img = self.image_stem(images)
        text_done = 0
        taps: list[Tensor] = []
        for s, stage in enumerate(self.image_stages):
            img = stage(img)
            if s in pairs:
                k, t = pairs[s]
                for j in range(text_done, t + 1):
                    txt = self.run_text_block(j, txt)
                text_done = t + 1
                img, txt = self.bridge(k, img, txt, pad_mask)
            if s in self.tap_stages:
                taps.append(self.image_head(img) if s == self.tap_stages[-1] else self.tokens_to_map(img))
        for j in range(text_done, len(self.text_blocks)):
            txt = self.run_text_block(j, txt)
        words, pad_mask, sentence = self.text_head(txt, tokens)
        return BackboneFeatures(visual=taps, words=words, pad_mask=pad_mask, sentence=sentence)
