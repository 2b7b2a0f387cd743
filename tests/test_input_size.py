"""Property: an image size a backbone cannot tile, or a text longer than its context, is refused in one line, exit
2, before any model is built or any progress line printed, whichever way the size came in (a suite's image_size,
profile's --image-size or any size of --sweep-image-size) and whatever the backbone (ViT or ResNet)."""

from __future__ import annotations

import random

import pytest

from benchmarks.cli import main

SEED = 3
STRIDES = {"risbench-tiny-vit": 8, "RN50": 32, "RN101": 32, "ViT-B-16": 16, "ViT-B-32": 32, "ViT-L-14": 14}
CONTEXT = {"risbench-tiny-vit": 40}


def bad_size(rng: random.Random, stride: int) -> int:
    """A positive size that is not a multiple of `stride`, small or huge."""
    return rng.choice([rng.randint(1, 8), rng.randint(1, 200), rng.randint(10**4, 10**6)]) * stride \
        + rng.randint(1, stride - 1)


def cases(rng: random.Random) -> list[tuple[list[str], str]]:
    out = []
    for arch, stride in STRIDES.items():
        for _ in range(4):
            size, good = bad_size(rng, stride), stride * rng.randint(1, 8)
            profile = ["profile", "--backbone", arch, "--method", "lora", "--flops-only", "--threads", "1"]
            out.append(([*profile, "--image-size", str(size)], f"image_size {size} must be a multiple of {stride}"))
            sweep = ",".join(map(str, rng.sample([good, size], 2)))
            out.append(([*profile, "--sweep-image-size", sweep], f"image_size {size} must be a multiple of {stride}"))
    for _ in range(6):  # bench and sweep read the size from their suite (the shapes dataset renders 32 to 1024 px)
        size = 8 * rng.randint(4, 127) + rng.randint(1, 7)
        command = rng.choice([["bench", "--method", "lora"], ["sweep", "--method", "lora"]])
        out.append(([*command, "--suite", "smoke", "--budget", f"image_size={size}", "--allow-budget-override",
                     "--threads", "1"], f"image_size {size} must be a multiple of 8"))
    for arch, context in CONTEXT.items():
        length = context + rng.randint(1, 100)
        out.append((["profile", "--backbone", arch, "--text-len", str(length), "--flops-only"],
                     f"text_len {length} exceeds the context length {context}"))
        out.append((["bench", "--method", "lora", "--suite", "smoke", "--budget", f"text_len={length}",
                     "--allow-budget-override"], f"text_len {length} exceeds the context length {context}"))
    return out


@pytest.mark.parametrize("argv,message", cases(random.Random(SEED)))
def test_untileable_sizes_are_refused_before_any_model(argv, message, tmp_path, monkeypatch, capsys, no_model_built):
    monkeypatch.chdir(tmp_path)
    if argv[0] in ("bench", "sweep"):
        argv = [*argv, "--out", str(tmp_path / "results"), "--checkpoint-dir", str(tmp_path / "ckpt")]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured
    assert message in captured.err
    assert not any(tmp_path.iterdir())
