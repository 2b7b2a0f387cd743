"""A generated dataset in the refer-toolkit layout (refs(<split_by>).p, instances.json, COCO-named JPEGs).

Coloured boxes on noisy backgrounds at a chosen image size (COCO's are about 640x480), each annotated with a
polygon and referred to by two sentences. It exists to time training and evaluation on real-sized inputs where
the RefCOCO data cannot be had (the GPU check, benchmarks/gpu_check.py): it measures speed, not segmentation.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
OBJECTS_PER_IMAGE = 2
TEST_SPLITS = ("val", "testA", "testB")  # each gets a tenth of the images (at least one), train the rest


def _splits(images: int) -> list[str]:
    """The split of each image: refer splits by image, so no image is seen in two splits."""
    held_out = max(1, round(0.1 * images))
    if images < 1 + held_out * len(TEST_SPLITS):
        raise ValueError(f"{images} images cannot fill train and {len(TEST_SPLITS)} test splits")
    return ["train"] * (images - held_out * len(TEST_SPLITS)) + [s for s in TEST_SPLITS for _ in range(held_out)]


def write_synthetic_refer(root: Path, images: int, height: int = 480, width: int = 640, seed: int = 0,
                          name: str = "refcoco", split_by: str = "unc") -> dict[str, int]:
    """Write the dataset under `root` (RISBENCH_DATA layout); returns the number of expressions per split."""
    rng = np.random.default_rng(seed)
    image_dir = root / "images" / "train2014"
    image_dir.mkdir(parents=True, exist_ok=True)
    (root / name).mkdir(parents=True, exist_ok=True)
    infos, anns, refs = [], [], []
    counts: dict[str, int] = {}
    for image_id, split in enumerate(_splits(images), start=1):
        background = rng.integers(60, 200, size=3)
        pixels = np.clip(background + rng.normal(0, 20, size=(height, width, 3)), 0, 255).astype(np.uint8)
        for _ in range(OBJECTS_PER_IMAGE):
            colour = str(rng.choice(list(COLOURS)))
            box_h, box_w = (int(rng.integers(s // 6, s // 3 + 1)) for s in (height, width))
            top, left = int(rng.integers(0, height - box_h + 1)), int(rng.integers(0, width - box_w + 1))
            pixels[top:top + box_h, left:left + box_w] = COLOURS[colour]
            ann_id = len(anns) + 1
            right, bottom = left + box_w, top + box_h
            anns.append({"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                         "area": box_h * box_w, "bbox": [left, top, box_w, box_h],
                         "segmentation": [[left, top, right, top, right, bottom, left, bottom]]})
            side = "left" if left + box_w / 2 < width / 2 else "right"
            texts = [f"the {colour} box on the {side}", f"{colour} rectangle {side}"]
            sentences = [{"sent": t, "raw": t, "tokens": t.split(), "sent_id": 2 * ann_id + k}
                         for k, t in enumerate(texts)]
            refs.append({"ref_id": ann_id, "ann_id": ann_id, "image_id": image_id, "split": split,
                         "category_id": 1, "sentences": sentences, "sent_ids": [s["sent_id"] for s in sentences]})
            counts[split] = counts.get(split, 0) + len(sentences)
        file_name = f"COCO_train2014_{image_id:012d}.jpg"
        Image.fromarray(pixels).save(image_dir / file_name, quality=90)
        infos.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
    instances = {"images": infos, "annotations": anns, "categories": [{"id": 1, "name": "box"}]}
    (root / name / "instances.json").write_text(json.dumps(instances))
    with (root / name / f"refs({split_by}).p").open("wb") as f:
        pickle.dump(refs, f, protocol=2)
    return counts
