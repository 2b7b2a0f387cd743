"""Saved models: what trained is kept, reloads into exactly the model that was saved, in peft's format too."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from benchmarks.build import build_base_model, build_model
from benchmarks.saved_model import CONFIG_FILE, PEFT_DIR, WEIGHTS_FILE, SavedModel, save_model
from benchmarks.store import RunSpec
from benchmarks.suites import load_suite
from methods import get_method, list_methods
from riscore.errors import UserError


def trained_like(method: str, seed: int = 0, **options: str) -> tuple[RunSpec, torch.nn.Module]:
    """A model as training leaves it: every trainable parameter moved, BatchNorm statistics updated."""
    suite = load_suite("smoke")
    spec = RunSpec(suite=suite, method=method, method_config=get_method(method).make_config(options), lr=suite.lr,
                   seed=seed)
    torch.manual_seed(seed)
    model = build_model(suite, method, spec.method_config)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
        model.train()
        model(torch.rand(4, 3, suite.image_size, suite.image_size, generator=generator),
              model.backbone.tokenize(["the red circle", "a square", "the left one", "blue"]))
    return spec, model.eval()


def inputs(suite):
    generator = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, suite.image_size, suite.image_size, generator=generator)
    return images, ["the small red circle", "the square left of the cross"]


@pytest.mark.parametrize("method", list_methods())
def test_reload_gives_the_saved_model_exactly(tmp_path, method):
    spec, model = trained_like(method)
    folder = assert_reloads_exactly(tmp_path, spec, model, method)
    if method == "full":
        frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
        assert frozen <= {"backbone.clip.logit_scale"}  # CLIP's contrastive temperature: unused here
    peft_adapter = json.loads((folder / CONFIG_FILE).read_text())["peft_adapter"]
    assert (peft_adapter is not None) == (get_method(method).apply.__module__ == "methods.lora")
    if peft_adapter:
        assert_peft_loads_the_adapter(folder, model)


def assert_reloads_exactly(tmp_path, spec, model, method):
    """Save, reopen and rebuild: the same state and predictions, and model.json describes the run; the folder."""
    torch.manual_seed(123)  # the reload must not depend on the RNG: everything that differs is in the file
    folder = save_model(tmp_path / "m", model, spec, {"results": {}})
    saved = SavedModel.open(folder)
    assert saved.spec == spec
    reloaded = saved.build(torch.device("cpu"))
    expected, got = model.state_dict(), reloaded.state_dict()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected), method
    images, texts = inputs(spec.suite)
    tokens = model.backbone.tokenize(texts)
    assert torch.equal(model.predict(images, tokens), reloaded.predict(images, tokens))
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["method"] == method and config["config_hash"] == spec.config_hash
    assert len(config["backbone_sha256"]) == 64
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    kept = sum(v.numel() for k, v in expected.items() if k not in frozen)  # what trained, plus the (tiny) buffers
    assert config["parameters_saved"] == kept
    assert kept - sum(p.numel() for p in model.trainable_parameters()) < 4000
    return folder


def assert_peft_loads_the_adapter(folder, model):
    """PeftModel.from_pretrained on a fresh CLIP + the saved decoder computes what the saved model does."""
    import peft

    suite = load_suite("smoke")
    fresh = build_base_model(suite)
    peft.PeftModel.from_pretrained(fresh.backbone.clip, str(folder / PEFT_DIR))  # adapts the CLIP in place
    assert_computes_like(fresh, folder, model)


def assert_computes_like(fresh, folder, model):
    """`fresh` (a CLIP already adapted from peft/) with the saved decoder predicts what `model` does."""
    suite = load_suite("smoke")
    decoder = {k: v for k, v in load_file(str(folder / WEIGHTS_FILE)).items() if k.startswith("decoder.")}
    fresh.load_state_dict(decoder, strict=False)
    images, texts = inputs(suite)
    tokens = model.backbone.tokenize(texts)
    assert torch.allclose(fresh.predict(images, tokens), model.predict(images, tokens), atol=1e-5)


def test_a_combination_of_two_peft_methods_saves_each_adapter_in_peft_format(tmp_path):
    """lora+loha on disjoint Linears: two adapters, each under its own name, saved as peft/<name>/ in peft's
    format; peft's own injection and loading of each reproduces the model."""
    import warnings

    import peft

    spec, model = trained_like("lora+loha", **{"loha.targets": "k,out"})
    assert {n: type(c).__name__ for n, c in model.backbone.clip.peft_config.items()} == {
        "risbench": "LoraConfig", "risbench2": "LoHaConfig"}
    folder = assert_reloads_exactly(tmp_path, spec, model, "lora+loha")
    assert json.loads((folder / CONFIG_FILE).read_text())["peft_adapter"] == PEFT_DIR
    saved = sorted(p.name for p in (folder / PEFT_DIR).iterdir())
    assert saved == ["risbench", "risbench2"]
    fresh = build_base_model(load_suite("smoke"))
    for name in saved:
        adapter = folder / PEFT_DIR / name
        with warnings.catch_warnings():  # peft warns that the second adapter makes several: wanted here
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            peft.inject_adapter_in_model(peft.PeftConfig.from_pretrained(str(adapter)), fresh.backbone.clip,
                                         adapter_name=name)
        state = {k.removeprefix("base_model.model."): v
                 for k, v in load_file(str(adapter / "adapter_model.safetensors")).items()}
        loaded = peft.set_peft_model_state_dict(fresh.backbone.clip, state, adapter_name=name)
        assert not loaded.unexpected_keys
    assert_computes_like(fresh, folder, model)


@pytest.fixture(scope="module")
def frozen_run():
    return trained_like("frozen")


def test_saving_is_atomic_and_replaces_a_previous_model(tmp_path, monkeypatch, frozen_run):
    import benchmarks.saved_model as saved_model

    spec, model = frozen_run
    folder = save_model(tmp_path / "m", model, spec, {"results": {"val": {"mIoU": 1.0}}})
    save_model(folder, model, spec, {"results": {"val": {"mIoU": 2.0}}})
    assert json.loads((folder / CONFIG_FILE).read_text())["recorded_results"]["val"]["mIoU"] == 2.0

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(saved_model, "save_file", broken)
    with pytest.raises(OSError):
        save_model(tmp_path / "other", model, spec, {"results": {}})
    with pytest.raises(OSError):
        save_model(folder, model, spec, {"results": {}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no half-written folder, no leftovers
    assert json.loads((folder / CONFIG_FILE).read_text())["recorded_results"]["val"]["mIoU"] == 2.0


def test_a_model_for_other_backbone_weights_is_refused(tmp_path, frozen_run):
    spec, model = frozen_run
    folder = save_model(tmp_path / "m", model, spec, {"results": {}})
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["backbone_sha256"] = "0" * 64
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(UserError, match="not the backbone it was trained on"):
        SavedModel.open(folder).build(torch.device("cpu"))
    other = load_suite("smoke").replace({"backbone": "ViT-B-16", "pretrained": "none"})
    with pytest.raises(UserError, match="trained with backbone 'risbench-tiny-vit'"):
        SavedModel.open(folder).check_suite(other)
    for key, value in (("quick_gelu", "true"), ("gate", "attention")):  # same weights, another model
        with pytest.raises(UserError, match=f"trained with {key}"):
            SavedModel.open(folder).check_suite(load_suite("smoke").replace({key: value}))


@pytest.mark.parametrize("damage,message", [
    (lambda f: (f / CONFIG_FILE).unlink(), "not a saved model"),
    (lambda f: (f / CONFIG_FILE).write_text("{"), "model.json is not a readable JSON model config"),
    (lambda f: (f / CONFIG_FILE).write_text("{}"), "not a risbench-model/1 config"),
    (lambda f: (f / WEIGHTS_FILE).write_bytes(b"junk"), "cannot read model.safetensors"),
])
def test_damaged_model_folders_are_user_errors(tmp_path, damage, message, frozen_run):
    spec, model = frozen_run
    folder = save_model(tmp_path / "m", model, spec, {"results": {}})
    damage(folder)
    with pytest.raises(UserError, match=message):
        SavedModel.open(folder).build(torch.device("cpu"))


# model.json fields outside the hashed config -> malformed values (None: the field is left out)
GARBLED_FIELDS = {
    ("seed",): ["x", -1, 1.5, True, 2**40, None],
    ("off_budget",): ["no", 1],
    ("backbone_sha256",): [5, "00", "Z" * 64, ["a" * 64]],
    ("recorded_results",): ["x", [1], 3],
    ("selection",): ["x", [1], 3, True],
    ("selection", "weights"): [3, "../../etc", "", "last", None],
    ("selection", "split"): [3, None, ["val"]],
    ("selection", "step"): ["10", -1, 1.5, None],
    ("selection", "score"): ["x", float("nan"), -1, 101, None],
    ("selection", "recorded_results"): ["x", None, [1]],
    ("config",): [None, [1], "x"],
    ("config", "suite"): [[1], "smoke", None],
}


def test_every_garbled_model_json_field_is_one_error_line_before_any_work(tmp_path, frozen_run, capsys):
    """Generated: each field the config hash does not cover, set to each malformed value, makes predict and
    evaluate refuse the folder in one `error:` line naming the field (before, a bad seed or selection was
    used as given, and a bad suite table was a traceback)."""
    from benchmarks.cli import main

    spec, model = frozen_run
    good = save_model(tmp_path / "good", model, spec, {"results": {}})
    config = json.loads((good / CONFIG_FILE).read_text())
    config["selection"] = {"split": "val", "step": 2, "score": 10.0, "weights": ".", "recorded_results": {}}
    k = 0
    for path, values in GARBLED_FIELDS.items():
        for value in values:
            garbled = json.loads(json.dumps(config))
            holder = garbled
            for part in path[:-1]:
                holder = holder[part]
            if value is None and path[-1] not in ("config", "suite"):
                holder.pop(path[-1])
            else:
                holder[path[-1]] = value
            (good / CONFIG_FILE).write_text(json.dumps(garbled))
            command = (["predict", "--index", "0", "--out", str(tmp_path / "p.png")] if k % 2 else ["evaluate"])
            code = main([*command, "--model", str(good), "--weights", "selected", "--threads", "1"])
            err = capsys.readouterr().err
            assert code == 2, f"{path}={value!r}: exit {code}\n{err}"
            assert err.startswith("error: ") and err.count("\n") == 1, f"{path}={value!r}: {err}"
            assert path[-1] in err, f"{path}={value!r}: {err}"
            k += 1
    assert not (tmp_path / "p.png").exists()
