"""Look at a dataset before training on it: a picture grid with the targets drawn in, and counts.

Both work on any dataset of the shared item contract (see shapes.py); a dataset may offer a cheap
`meta(i)` (kind, n_objects) so that statistics need not render or decode every image.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from torch.utils.data import Dataset

from benchmarks.store import atomic_write_bytes
from riscore.errors import UserError

_OVERLAY_RGB = (1.0, 0.0, 1.0)  # magenta: absent from the shapes palette, rare in photographs


def save_preview(dataset: Dataset, n: int, out_path: str | Path, columns: int = 4) -> Path:
    """PNG grid of the first n items: image, referent outlined in magenta, kind and expression as title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if n < 1:
        raise UserError(f"preview needs n >= 1 items, got {n}")
    n = min(n, len(dataset))
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.75 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        item: dict[str, Any] = dataset[k]
        image = item["image"].permute(1, 2, 0).numpy()
        mask = item["mask"].numpy() > 0.5
        ax.imshow(image.clip(0.0, 1.0), interpolation="nearest")
        if mask.any():  # an outline, not a tint, so the referent's own colour stays readable
            ax.contour(mask, levels=[0.5], colors=[_OVERLAY_RGB], linewidths=2.0)
        title = "\n".join(textwrap.wrap(f"[{item['kind']}] {item['text']}", width=30)[:4])
        ax.set_title(title, fontsize=7, loc="left")
    fig.tight_layout(h_pad=0.6, w_pad=0.4)
    out = Path(out_path)
    if not out.parent.is_dir():
        raise UserError(f"cannot write {out}: folder {out.parent} does not exist")
    png = io.BytesIO()
    try:
        fig.savefig(png, dpi=110, format="png")
    finally:
        plt.close(fig)
    atomic_write_bytes(out, png.getvalue())
    return out


def dataset_stats(dataset: Dataset) -> pd.DataFrame:
    """Long table (split, stat, value, count, fraction): expressions per kind, and objects per scene where
    the dataset can tell (shapes). Single-kind datasets are counted without reading a single item."""
    kinds: Counter[str] = Counter()
    objects: Counter[int] = Counter()
    meta = getattr(dataset, "meta", None)
    if len(dataset.kinds) == 1 and meta is None:
        kinds[dataset.kinds[0]] = len(dataset)
    else:
        for i in range(len(dataset)):
            facts = meta(i) if meta is not None else dataset[i]
            kinds[facts["kind"]] += 1
            if "n_objects" in facts:
                objects[facts["n_objects"]] += 1
    total = len(dataset)
    rows = [("kind", kind, kinds[kind]) for kind in dataset.kinds]
    rows += [("n_objects", str(n), c) for n, c in sorted(objects.items())]
    table = pd.DataFrame(rows, columns=["stat", "value", "count"])
    table["fraction"] = table["count"] / max(total, 1)
    table.insert(0, "split", getattr(dataset, "split", ""))
    return table
