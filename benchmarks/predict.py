"""`risbench predict`: what a saved model segments for one expression on one image (a file or a dataset item).

The image is letterboxed, scored and thresholded exactly as in evaluation (benchmarks/data/letterbox.py,
evaluate.batch_logits, metrics.logits_to_probabilities), so the mask drawn is the one evaluation would score.
"""

from __future__ import annotations

import io
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError

from benchmarks.data import build_dataset, check_split
from benchmarks.data.letterbox import Letterbox
from benchmarks.evaluate import batch_logits
from benchmarks.metrics import IoUMeter, logits_to_probabilities
from benchmarks.store import atomic_write_bytes
from benchmarks.suites import Suite
from methods.backbone import token_count
from methods.model import RISModel
from riscore.errors import UserError

TINT_RGB = np.array([255, 0, 255], dtype=np.float32)  # magenta, as `data preview`: absent from shapes, rare in photos
TINT_ALPHA = 0.45
# a two-tone outline, white on the mask's edge and black just outside it: one of the two reads on any colour
# (magenta alone was lost on the dataset's purple shapes, white alone would be on its white ones)
OUTLINE_IN_RGB = np.array([255, 255, 255], dtype=np.float32)
OUTLINE_OUT_RGB = np.array([0, 0, 0], dtype=np.float32)
MIN_SIDE = 256  # small images (shapes renders 64 px) are enlarged, pixel for pixel, to stay readable


@dataclass(frozen=True)
class Query:
    """One expression on one image: the model input, the picture to draw on, and the ground truth if known."""

    image: torch.Tensor  # float32 [3, S, S], letterboxed
    letterbox: Letterbox
    text: str
    picture: np.ndarray  # uint8 [H, W, 3] at the original resolution
    target: torch.Tensor | None = None  # bool [H, W]


def _checked_text(text: str | None) -> str:
    if text is None or not text.strip():
        raise UserError("--text is empty: give the expression to segment, e.g. --text \"the red circle\"")
    return text.strip()


def query_from_file(path: Path, text: str | None, image_size: int) -> Query:
    """An image file (any format Pillow reads), letterboxed to the model's input size."""
    text = _checked_text(text)
    if not path.is_file():
        raise UserError(f"--image {path}: no such file")
    try:
        with Image.open(path) as img:
            picture = np.array(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"--image {path}: not an image Pillow can read ({type(exc).__name__})") from None
    letterbox = Letterbox.fit(picture.shape[0], picture.shape[1], image_size)
    return Query(letterbox.apply_image(picture), letterbox, text, picture)


def query_from_dataset(suite: Suite, split: str, index: int, text: str | None = None) -> Query:
    """Item `index` of the suite's dataset split, with its own expression unless `text` replaces it."""
    check_split(suite.dataset, split, suite.dataset_options)
    dataset = build_dataset(suite.dataset, split, suite.image_size, suite.dataset_options)
    if not 0 <= index < len(dataset):
        raise UserError(f"--index {index} is out of range: {suite.dataset} {split} has items 0..{len(dataset) - 1}")
    return query_from_item(dataset[index], None if text is None else _checked_text(text))


def query_from_item(item: dict, text: str | None = None) -> Query:
    """A dataset item (the data contract) as a query, with its own expression unless `text` replaces it."""
    letterbox: Letterbox = item["letterbox"]
    # the item holds the letterboxed input; its content, resized back, is the picture (exact for shapes)
    picture = letterbox.undo(item["image"], mode="bilinear").clamp(0, 1).mul(255).round().byte()
    return Query(item["image"], letterbox, item["text"] if text is None else text,
                 picture.permute(1, 2, 0).numpy(), item["orig_mask"].bool())


def truncation_note(query: Query, suite: Suite) -> str | None:
    """A note when the expression is longer than the suite's text_len: the model reads its first tokens only, as
    training and evaluation (and ETRIS) cut every expression."""
    length = token_count(suite.backbone, query.text)
    if length <= suite.text_len:
        return None
    return (f"note: the expression has {length} tokens with its start and end; suite '{suite.name}' reads "
            f"{suite.text_len} (text_len), so it was truncated to {suite.text_len} tokens as in training")


def probabilities(model: RISModel, query: Query, device: torch.device,
                  autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """The referent's probability per pixel of the original image, float [H, W]."""
    was_training = model.training
    model.eval()
    try:
        logits = batch_logits(model, query.image[None], [query.text], device, autocast_dtype)
    finally:
        model.train(was_training)
    return logits_to_probabilities(logits, [query.letterbox])[0]


def _grow(mask: np.ndarray) -> np.ndarray:
    """The mask and its 4-neighbours."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def tint(picture: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3]: the picture with the mask tinted and outlined (predict's overlay, the report's masks)."""
    tinted = picture.astype(np.float32)
    tinted[mask] = (1 - TINT_ALPHA) * tinted[mask] + TINT_ALPHA * TINT_RGB
    edge = mask & _grow(~mask)
    edge[[0, -1], :] |= mask[[0, -1], :]  # the image border closes the outline
    edge[:, [0, -1]] |= mask[:, [0, -1]]
    tinted[edge] = OUTLINE_IN_RGB
    tinted[_grow(mask) & ~mask] = OUTLINE_OUT_RGB
    return tinted.round().astype(np.uint8)


def overlay(picture: np.ndarray, mask: np.ndarray, caption: str) -> Image.Image:
    """The picture with the mask tinted and outlined, enlarged if small, and the caption underneath."""
    image = Image.fromarray(tint(picture, mask))
    scale = max(1, math.ceil(MIN_SIDE / min(image.size)))
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    lines = textwrap.wrap(caption, width=max(20, image.width // 7))
    canvas = Image.new("RGB", (image.width, image.height + 4 + 12 * len(lines)), "white")
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for k, line in enumerate(lines):
        draw.text((3, image.height + 2 + 12 * k), line, fill="black")
    return canvas


def describe(query: Query, mask: np.ndarray) -> str:
    """The caption of a predicted mask: the expression, the mask's size, and its IoU when the truth is known."""
    caption = f"{query.text}  ({int(mask.sum())} px, {100 * mask.mean():.1f}% of the image)"
    if query.target is not None:
        caption += f"  IoU {100 * IoUMeter().update(torch.from_numpy(mask), query.target):.1f}"
    return caption


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_prediction(query: Query, probs: torch.Tensor, threshold: float, out: Path,
                     probabilities_out: Path | None = None) -> str:
    """Write the overlay (and the probability map: 8-bit grey PNG, or float32 .npy); returns a one-line summary."""
    mask = (probs > threshold).numpy()
    caption = describe(query, mask)
    atomic_write_bytes(out, _png(overlay(query.picture, mask, caption)))
    if probabilities_out is not None:
        if probabilities_out.suffix.lower() == ".npy":
            buffer = io.BytesIO()
            np.save(buffer, probs.numpy().astype(np.float32))
            atomic_write_bytes(probabilities_out, buffer.getvalue())
        else:
            grey = (probs.clamp(0, 1) * 255).round().byte().numpy()
            atomic_write_bytes(probabilities_out, _png(Image.fromarray(grey, mode="L")))
    return caption
