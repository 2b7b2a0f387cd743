"""A finished run's saved model in use: `evaluate` reproduces its record, `predict` draws what evaluation scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.cli import main
from benchmarks.data import build_dataset
from benchmarks.evaluate import evaluate
from benchmarks.saved_model import SavedModel
from benchmarks.suites import load_suite


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One smoke lora run through the CLI: (its record, its saved model folder)."""
    root = tmp_path_factory.mktemp("run")
    argv = ["bench", "--method", "lora", "--suite", "smoke", "--out", str(root / "results"), "--checkpoint-dir",
            str(root / "ckpt"), "--models-dir", str(root / "models"), "--threads", "1", "--no-progress"]
    assert main(argv) == 0
    record_path, = (root / "results").rglob("*.json")
    folder = root / "models" / record_path.relative_to(root / "results").with_suffix("")
    assert folder.is_dir() and not any((root / "ckpt").rglob("*.safetensors"))  # saved, then checkpoints gone
    return json.loads(record_path.read_text()), folder


def test_no_save_model_keeps_nothing(tmp_path):
    argv = ["bench", "--method", "frozen", "--suite", "smoke", "--out", str(tmp_path / "results"), "--checkpoint-dir",
            str(tmp_path / "ckpt"), "--models-dir", str(tmp_path / "models"), "--threads", "1", "--no-progress",
            "--no-save-model"]
    assert main(argv) == 0
    assert list((tmp_path / "results").rglob("*.json")) and not (tmp_path / "models").exists()


def test_evaluate_reproduces_the_record_exactly(trained, tmp_path, capsys):
    record, folder = trained
    out = tmp_path / "re.json"
    assert main(["evaluate", "--model", str(folder), "--threads", "1", "--record", str(out)]) == 0
    assert "val: reproduces the record exactly" in capsys.readouterr().out
    again = json.loads(out.read_text())
    assert again["run_info"]["reevaluation"] is True
    assert again["run_info"]["config_hash"] == record["run_info"]["config_hash"]
    for split, metrics in record["results"].items():
        for key in ("mIoU", "oIoU", "prec@0.5", "prec@0.9", "n", "per_kind"):
            assert again["results"][split][key] == metrics[key], (split, key)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_a_cuda_run_leaves_a_model_that_evaluate_reproduces_exactly(tmp_path, capsys, precision):
    """On a GPU: mixed-precision training, saving and re-evaluation in the same precision give the same scores."""
    argv = ["bench", "--method", "lora", "--suite", "smoke", "--device", "cuda", "--budget", f"precision={precision}",
            "--allow-budget-override", "--out", str(tmp_path / "results"), "--checkpoint-dir", str(tmp_path / "ckpt"),
            "--models-dir", str(tmp_path / "models"), "--no-progress"]
    assert main(argv) == 0
    record_path, = (tmp_path / "results").rglob("*.json")
    assert json.loads(record_path.read_text())["train_info"]["precision"] == precision
    folder = tmp_path / "models" / record_path.relative_to(tmp_path / "results").with_suffix("")
    capsys.readouterr()
    assert main(["evaluate", "--model", str(folder), "--device", "cuda"]) == 0
    assert "val: reproduces the record exactly" in capsys.readouterr().out


def test_evaluate_other_splits_and_the_whole_limit(trained, capsys):
    _, folder = trained
    assert main(["evaluate", "--model", str(folder), "--threads", "1", "--split", "testA,testB",
                 "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "first 5 expressions" in out and "testA" in out and "testB" in out and "reproduces" not in out


def test_predict_draws_the_mask_evaluation_scores(trained, tmp_path, capsys):
    """The probability map predict writes, thresholded as evaluation does, scores the IoU evaluate gives the item."""
    _, folder = trained
    suite = load_suite("shapes")
    index = 12
    probs_path, out = tmp_path / "p.npy", tmp_path / "overlay.png"
    assert main(["predict", "--model", str(folder), "--suite", "shapes", "--split", "val", "--index", str(index),
                 "--out", str(out), "--probabilities", str(probs_path), "--threads", "1"]) == 0
    item = build_dataset("shapes", "val", suite.image_size, suite.dataset_options)[index]
    assert item["text"] in capsys.readouterr().out
    probs = torch.from_numpy(np.load(probs_path))
    assert probs.shape == item["orig_mask"].shape
    pred, target = probs > suite.threshold, item["orig_mask"]
    iou = 1.0 if not (pred | target).any() else float((pred & target).sum() / (pred | target).sum())
    model = SavedModel.open(folder).build(torch.device("cpu"), suite)
    one = torch.utils.data.Subset(build_dataset("shapes", "val", suite.image_size, suite.dataset_options), [index])
    scored = evaluate(model, one, batch_size=1, threshold=suite.threshold, device=torch.device("cpu"))
    assert 100 * iou == pytest.approx(scored["mIoU"], abs=1e-9)
    with Image.open(out) as overlay:
        assert overlay.mode == "RGB" and overlay.width >= 256


def test_predict_on_an_image_file_answers_at_its_resolution(trained, tmp_path, capsys):
    _, folder = trained
    picture = np.zeros((50, 80, 3), dtype=np.uint8)
    picture[10:30, 40:60] = (220, 30, 30)
    Image.fromarray(picture).save(tmp_path / "scene.png")
    grey = tmp_path / "probs.png"
    assert main(["predict", "--model", str(folder), "--image", str(tmp_path / "scene.png"), "--text",
                 "the red square", "--out", str(tmp_path / "o.png"), "--probabilities", str(grey)]) == 0
    with Image.open(grey) as probs, Image.open(tmp_path / "o.png") as overlay:
        assert probs.mode == "L" and probs.size == (80, 50)
        assert overlay.width == 80 * 6  # enlarged pixel for pixel to at least 256 on the short side
    assert "the red square" in capsys.readouterr().out


def test_predict_notes_an_expression_longer_than_the_suite_reads(trained, tmp_path, capsys):
    """Expressions of many lengths around the smoke suite's text_len (16 tokens with start and end): a note on
    stderr names the cut iff the expression is longer; the mask is the truncated expression's."""
    import random

    from open_clip import SimpleTokenizer

    _, folder = trained
    text_len, words = load_suite("smoke").text_len, ["the", "red", "circle", "left", "of", "small", "blue", "big"]
    rng = random.Random(7)
    texts = [" ".join(rng.choices(words, k=k)) for k in (1, 13, 14, 15, 30)]  # 3, 15, 16, 17, 32 tokens
    for text in texts:
        length = len(SimpleTokenizer().encode(text)) + 2
        argv = ["predict", "--model", str(folder), "--index", "3", "--text", text, "--threads", "1",
                "--out", str(tmp_path / "o.png"), "--probabilities", str(tmp_path / f"{length}.npy")]
        assert main(argv) == 0
        err = capsys.readouterr().err
        if length > text_len:
            assert err.count("\n") == 1 and err.startswith("note: ") and f"has {length} tokens" in err
            assert f"truncated to {text_len} tokens" in err
        else:
            assert "note" not in err, (text, err)
    kept = " ".join(texts[-1].split()[:text_len - 2])  # the words the model reads of the longest expression
    assert main(["predict", "--model", str(folder), "--index", "3", "--text", kept, "--threads", "1",
                 "--out", str(tmp_path / "o.png"), "--probabilities", str(tmp_path / "kept.npy")]) == 0
    assert "note" not in capsys.readouterr().err
    np.testing.assert_array_equal(np.load(tmp_path / "32.npy"), np.load(tmp_path / "kept.npy"))


def other_backbone_suite(tmp: Path) -> str:
    path = tmp / "other.toml"
    path.write_text('backbone = "ViT-B-16"\nimage_size = 64\nlr_grid = [1e-4]\n')
    return str(path)


@pytest.mark.parametrize("args,message", [
    (["--image", "{tmp}/missing.png", "--text", "x"], "no such file"),
    (["--image", "{tmp}/text.png", "--text", "x"], "not an image Pillow can read"),
    (["--image", "{tmp}/ok.png", "--text", "  "], "--text is empty"),
    (["--image", "{tmp}/ok.png"], "--text is empty"),
    (["--index", "100000"], "--index 100000 is out of range"),
    (["--index", "-1"], "argument --index: must be an integer >= 0, got -1"),
    (["--index", "0", "--split", "vall"], "has no split 'vall'"),
    (["--index", "0", "--image", "{tmp}/ok.png"], "either --image"),
    ([], "either --image"),
    (["--index", "0", "--suite", "{other}"], "trained with backbone 'risbench-tiny-vit'"),
    (["--index", "0", "--out", "{tmp}/out.jpg"], "give a path ending in .png"),
    (["--index", "0", "--probabilities", "{tmp}/p.jpg"], "--probabilities"),
    (["--index", "0", "--model", "{tmp}/nowhere"], "no such folder"),
    (["--index", "0", "--model", "{tmp}"], "not a saved model"),
])
def test_predict_bad_input_is_one_line_exit_2(trained, tmp_path, capsys, args, message):
    _, folder = trained
    (tmp_path / "text.png").write_text("not a png")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    out = tmp_path / "out.png"
    argv = ["predict", "--model", str(folder), "--out", str(out)]
    argv += [arg.format(tmp=tmp_path, other=other_backbone_suite(tmp_path)) for arg in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert not any(tmp_path.glob("out.*")) and not (tmp_path / "p.jpg").exists()


@pytest.mark.parametrize("args,message", [
    (["--record", "{repo}/results/x.json"], "results/ holds training runs only"),
    (["--record", "{tmp}/x.txt"], "ending in .json"),
    (["--split", "vall"], "has no split 'vall'"),
    (["--limit", "-3"], "argument --limit: must be an integer >= 0, got -3"),
    (["--suite", "{other}"], "trained with backbone"),
])
def test_evaluate_bad_input_is_one_line_exit_2(trained, tmp_path, capsys, args, message):
    _, folder = trained
    repo = Path(__file__).resolve().parent.parent
    argv = ["evaluate", "--model", str(folder),
            *(a.format(tmp=tmp_path, repo=repo, other=other_backbone_suite(tmp_path)) for a in args)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert not (repo / "results" / "x.json").exists() and not (tmp_path / "x.txt").exists()


def test_a_mask_is_tinted_and_outlined_white_on_its_edge_and_black_just_outside():
    """One of the two outline colours reads on any shape colour (magenta alone vanished on purple shapes)."""
    from benchmarks.predict import TINT_ALPHA, TINT_RGB, tint

    picture = np.full((9, 9, 3), 120, np.uint8)
    mask = np.zeros((9, 9), bool)
    mask[2:7, 2:7] = True
    out = tint(picture, mask)
    edge = mask.copy()
    edge[3:6, 3:6] = False
    ring = np.zeros_like(mask)
    ring[1:8, 2:7] = ring[2:7, 1:8] = True
    ring &= ~mask
    assert (out[edge] == 255).all() and (out[ring] == 0).all()
    inside = ((1 - TINT_ALPHA) * 120 + TINT_ALPHA * TINT_RGB).round()
    assert (out[3:6, 3:6] == inside).all()
    assert (out[~(mask | ring)] == 120).all()  # the rest, diagonal corners too, untouched
    border = np.zeros((5, 5), bool)
    border[:2] = True  # a mask on the image's top edge is closed by the border
    assert (tint(np.zeros((5, 5, 3), np.uint8), border)[0] == 255).all()

