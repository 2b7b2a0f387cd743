"""Pretrain the offline default backbone: CLIP-style contrastive learning on shapes captions.

The benchmark must run with no model hub, so the project ships its own small CLIP. It is an ordinary
open_clip architecture (methods/model_configs/risbench-tiny-vit.json) trained with open_clip's own
ClipLoss; the weights are stored as fp16 safetensors with a JSON card holding the recipe and quality.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader
from tqdm import tqdm

from benchmarks.data.shapes import ShapesCaptions, ShapesConfig
from benchmarks.environment import torch_threads
from benchmarks.store import atomic_write_bytes, atomic_write_text
from methods.backbone import register_model_configs

ARCH = "risbench-tiny-vit"
WEIGHTS_NAME = f"{ARCH}.safetensors"
CARD_NAME = f"{ARCH}.json"


@dataclass(frozen=True)
class PretrainConfig:
    steps: int = 1500
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 100
    seed: int = 0
    image_size: int = 64
    eval_pairs: int = 500

    def __post_init__(self) -> None:
        for key in ("steps", "batch_size", "image_size", "eval_pairs"):
            if getattr(self, key) <= 0:
                raise ValueError(f"pretrain {key} must be positive, got {getattr(self, key)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"pretrain lr must be a positive number, got {self.lr}")


def create_tiny_clip(seed: int) -> torch.nn.Module:
    register_model_configs()
    torch.manual_seed(seed)
    return open_clip.create_model(ARCH)


def _batches(split: str, config: PretrainConfig, batch_size: int, shuffle_seed: int | None):
    dataset = ShapesCaptions(split, ShapesConfig(image_size=config.image_size))
    generator = torch.Generator().manual_seed(shuffle_seed) if shuffle_seed is not None else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle_seed is not None, generator=generator,
                      drop_last=shuffle_seed is not None, num_workers=1 if shuffle_seed is not None else 0)


def _normalize(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(model.visual.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(model.visual.image_std).view(1, 3, 1, 1)
    return (images - mean) / std


@torch.no_grad()
def retrieval_accuracy(model: torch.nn.Module, pairs: int = 500, split: str = "val") -> dict[str, float]:
    """Zero-shot top-1 retrieval among `pairs` held-out scenes (image->caption and caption->image), %.

    Chance is 100/pairs. Deterministic: the first `pairs` items of the split, in order.
    """
    was_training = model.training
    model.eval()
    tokenizer = open_clip.get_tokenizer(ARCH)
    image_features, text_features = [], []
    seen = 0
    for batch in _batches(split, PretrainConfig(eval_pairs=pairs), 100, None):
        take = min(len(batch["text"]), pairs - seen)
        image_features.append(model.encode_image(_normalize(model, batch["image"][:take]), normalize=True))
        text_features.append(model.encode_text(tokenizer(batch["text"][:take]), normalize=True))
        seen += take
        if seen >= pairs:
            break
    model.train(was_training)
    similarity = torch.cat(image_features) @ torch.cat(text_features).T
    target = torch.arange(similarity.shape[0])
    return {
        "image_to_text_top1": 100 * (similarity.argmax(1) == target).float().mean().item(),
        "text_to_image_top1": 100 * (similarity.argmax(0) == target).float().mean().item(),
        "pairs": similarity.shape[0],
        "chance_top1": 100 / similarity.shape[0],
    }


def pretrain(config: PretrainConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    """Train, evaluate against the untrained model, and write weights + card atomically into `out`."""
    model = create_tiny_clip(config.seed)
    untrained = retrieval_accuracy(model, config.eval_pairs)
    tokenizer = open_clip.get_tokenizer(ARCH)
    loss_fn = open_clip.ClipLoss()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, fused=True)

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - config.warmup_steps) / (config.steps - config.warmup_steps)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    model.train()
    losses, step, started = [], 0, time.perf_counter()
    bar = tqdm(total=config.steps, desc="pretrain", disable=not progress)
    while step < config.steps:
        for batch in _batches("train", config, config.batch_size, config.seed + step):
            image_features, text_features, logit_scale = model(_normalize(model, batch["image"]),
                                                               tokenizer(batch["text"]))[:3]
            loss = loss_fn(image_features, text_features, logit_scale)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            losses.append(loss.item())
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
            if step >= config.steps:
                break
    bar.close()
    seconds = time.perf_counter() - started
    # Score the weights exactly as committed (fp16), so loading them reproduces the recorded accuracy.
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.float() for k, v in state.items()})
    trained = retrieval_accuracy(model, config.eval_pairs)

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{WEIGHTS_NAME}.staging"
    save_file(state, str(tmp))
    atomic_write_bytes(out / WEIGHTS_NAME, tmp.read_bytes())
    tmp.unlink()
    card = {
        "arch": ARCH,
        "weights": WEIGHTS_NAME,
        "dtype": "float16",
        "parameters": sum(p.numel() for p in model.parameters()),
        "recipe": dataclasses.asdict(config),
        "data": "shapes captions, train split (ShapesConfig defaults)",
        "loss": "open_clip.ClipLoss",
        "train_seconds": round(seconds, 1),
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "retrieval_val": {"trained": trained, "untrained_same_arch": untrained},
        "command": "nox -s pretrain",
        "device": f"cpu, {torch_threads()}",
    }
    atomic_write_text(out / CARD_NAME, json.dumps(card, indent=2) + "\n")
    print(json.dumps(card["retrieval_val"], indent=2))
    return card
