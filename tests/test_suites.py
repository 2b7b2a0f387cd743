import math

import pytest

from benchmarks.suites import Suite, list_suites, load_suite
from riscore.errors import UserError


@pytest.mark.parametrize("name", list_suites())
def test_every_shipped_suite_loads_and_validates(name):
    suite = load_suite(name)
    assert suite.name == name
    assert suite.lr in suite.lr_grid or suite.lr > 0
    assert suite.steps > 0 and suite.batch_size > 0


def test_shipped_suites_include_the_designed_ones():
    assert {"smoke", "shapes", "paper-vitb16", "paper-rn50", "paper-rn101"} <= set(list_suites())


def test_paper_suites_carry_the_etris_settings():
    for name, arch in (("paper-vitb16", "ViT-B-16"), ("paper-rn50", "RN50"), ("paper-rn101", "RN101")):
        suite = load_suite(name)
        assert (suite.backbone, suite.image_size, suite.text_len, suite.batch_size) == (arch, 416, 17, 32)
        assert (suite.optimizer, suite.lr, suite.weight_decay, suite.lr_drop_at) == ("adam", 1e-4, 0.0, 0.7)
        resnet = arch.startswith("RN")  # ETRIS's model: its activation, neck gate, ResNet head and BatchNorm
        assert (suite.quick_gelu, suite.gate) == (True, "attention")
        assert (suite.attnpool, suite.train_batchnorm) == (("etris", True) if resnet else ("clip", False))


def test_unknown_suite_lists_known_ones():
    with pytest.raises(UserError, match="known suites: .*shapes"):
        load_suite("shapez")


@pytest.mark.parametrize("field,value", [("steps", -1), ("batch_size", 0), ("lr", math.nan),
                                         ("precision", "fp8"), ("threshold", 1.5)])
def test_bad_budget_values_are_rejected(field, value):
    with pytest.raises(UserError, match=field):
        Suite(name="x", **{field: value})


def test_replace_coerces_strings_and_rejects_unknown_keys():
    suite = load_suite("smoke").replace({"steps": "7", "eval_splits": "val,testA", "lr": "0.01"})
    assert suite.steps == 7 and suite.eval_splits == ("val", "testA") and suite.lr == 0.01
    with pytest.raises(UserError, match="unknown suite key 'stepz'"):
        suite.replace({"stepz": "1"})
    with pytest.raises(UserError, match="expected an int"):
        suite.replace({"steps": "many"})


def test_repo_relative_weights_resolve_without_entering_the_identity():
    suite = load_suite("shapes")
    assert not suite.to_dict()["pretrained"].startswith("/")
    assert suite.pretrained_source().startswith("/")


def test_none_clears_an_optional_field_from_the_command_line():
    assert load_suite("smoke").replace({"pretrained": "none"}).pretrained is None
    assert load_suite("smoke").replace({"dataset": "shapes"}).dataset == "shapes"


@pytest.mark.parametrize("changes,message", [
    ({"train_split": "trian"}, "train_split: shapes has no split 'trian' (did you mean train?); valid splits: "
                               "train, val, testA, testB"),
    ({"eval_splits": ("val", "testC")}, "eval_splits: shapes has no split 'testC'"),
    ({"lr_search_split": "vla"}, "lr_search_split: shapes has no split 'vla' (did you mean val?)"),
    ({"lr_search_split": "testA"}, "lr_search_split 'testA' must be one of eval_splits (val)"),
    ({"dataset": "refcoco", "eval_splits": ("val", "test")},
     "refcoco (unc) has no split 'test' (did you mean testB or testA?)"),
    ({"dataset": "refcocog", "eval_splits": ("val", "testA")},
     "refcocog (umd) has no split 'testA' (did you mean test?)"),
    ({"dataset": "refcocog", "dataset_options": {"split_by": "google"}, "eval_splits": ("val", "test")},
     "refcocog (google) has no split 'test'; valid splits: train, val"),
    ({"dataset": "refcocog", "dataset_options": {"split_by": "unc"}},
     "no split_by 'unc'; choose one of ['umd', 'google']"),
    ({"dataset_options": "min_objects=3"}, "dataset_options='min_objects=3': expected a table"),
])
def test_unknown_splits_name_the_field_and_the_dataset_splits(changes, message):
    with pytest.raises(UserError) as err:
        Suite(name="x", **changes)
    assert str(err.value).startswith("suite 'x': ") and message in str(err.value)


def test_refcocog_umd_test_split_is_accepted():
    suite = load_suite("smoke").replace({"dataset": "refcocog", "eval_splits": "val,test"})
    assert suite.eval_splits == ("val", "test")


def test_shipped_shapes_suites_pass_the_pre_run_check():
    for name in ("smoke", "shapes"):
        load_suite(name).check()  # raises on any problem


@pytest.mark.parametrize("name", ["paper-rn50", "paper-rn101", "paper-vitb16"])
def test_paper_suites_pass_the_check_once_their_data_is_there(name, tmp_path, monkeypatch):
    from refer_fixture import build_refer

    monkeypatch.delenv("RISBENCH_DATA", raising=False)
    with pytest.raises(UserError, match="needs its data root: set RISBENCH_DATA"):
        load_suite(name).check()
    monkeypatch.setenv("RISBENCH_DATA", str(tmp_path))
    with pytest.raises(UserError, match=r"missing refer annotation file .*refcoco/refs\(unc\)\.p"):
        load_suite(name).check()
    build_refer(tmp_path)
    with pytest.raises(UserError, match=r"batch_size 2 is larger than the train split \(1 items an epoch, one per "):
        load_suite(name).replace({"batch_size": 2}).check()  # the fixture's train split: two sentences, one referent
    with pytest.raises(UserError, match=r"batch_size 4 is larger than the train split \(2 items\)"):
        load_suite(name).replace({"batch_size": 4, "sampling": "expression"}).check()
    load_suite(name).replace({"batch_size": 1}).check()  # known arch, known pretrained tag, data in place


@pytest.mark.parametrize("changes,message", [
    ({"backbone": "RN5O"}, "unknown backbone 'RN5O' (did you mean RN50 or RN50x4?)"),
    ({"backbone": "vit-b-16"}, "unknown backbone 'vit-b-16' (did you mean ViT-B-16?)"),
    ({"backbone": "no-such-net"}, "unknown backbone 'no-such-net'; "),
    ({"pretrained": "methods/assets/missing.safetensors"}, "pretrained weights file not found: "),
    ({"pretrained": "missing.pt"}, "pretrained weights file not found: missing.pt"),
    ({"backbone": "RN50", "pretrained": "OpenAI"}, "'OpenAI' is neither a weights file nor an open_clip tag of RN50 "
                                                   "(did you mean openai?); its tags: openai, yfcc15m, cc12m"),
    ({"pretrained": "openai"}, "nor an open_clip tag of risbench-tiny-vit; it has none, give a weights file path"),
    ({"dataset_options": {"min_object": 3}}, "shapes dataset options: unknown 'min_object' (did you mean min_objects"),
    ({"dataset_options": {"max_objects": 9}}, "ShapesConfig.max_objects=9"),
])
def test_pre_run_check_refuses_what_only_open_clip_the_data_or_the_disk_know(changes, message):
    suite = load_suite("smoke").replace(changes)  # a valid suite as far as its own fields go
    with pytest.raises(UserError) as err:
        suite.check()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_project_model_config_counts_as_a_known_backbone():
    from methods.backbone import MODEL_CONFIG_DIR

    for config in MODEL_CONFIG_DIR.glob("*.json"):
        load_suite("smoke").replace({"backbone": config.stem, "pretrained": "none"}).check()


def test_dataset_options_take_a_toml_inline_table_from_the_command_line():
    suite = load_suite("smoke").replace({"dataset_options": "{min_objects = 3, margin = 0.1}"})
    assert suite.dataset_options == {"min_objects": 3, "margin": 0.1}
    for bad in ("min_objects = 3", "{min_objects", "3"):
        with pytest.raises(UserError, match="expected a TOML inline table"):
            suite.replace({"dataset_options": bad})


def test_decoder_options_switch_components_off_and_leave_the_default_identity_alone():
    from benchmarks.build import build_base_model

    base = load_suite("smoke")
    ablated = base.replace({"decoder_options": "{global_alignment = false}"})
    assert "decoder_options" not in base.identity() and ablated.identity()["decoder_options"] == {
        "global_alignment": False}
    assert build_base_model(ablated).decoder.global_alignment is None
    with pytest.raises(UserError, match="decoder_options unknown decoder component 'neck'"):
        base.replace({"decoder_options": "{neck = false}"})


def test_any_damaged_suite_file_loads_or_is_one_user_error(tmp_path, capsys):
    """Generated: truncations of a shipped suite, byte flips and non-UTF-8 or binary files (a suite saved in
    another encoding, a file picked by mistake) give a suite or a UserError, never another exception; the CLI
    prints one line (before, a non-UTF-8 suite file was a UnicodeDecodeError traceback)."""
    import random

    from benchmarks.cli import main
    from benchmarks.suites import SUITE_DIR

    rng = random.Random(3)
    text = (SUITE_DIR / "smoke.toml").read_bytes()
    contents = [text[:rng.randint(0, len(text))] for _ in range(40)]
    contents += [bytes(b ^ (0x80 if rng.random() < 0.02 else 0) for b in text) for _ in range(20)]
    contents += [b"\xff\xfe" + text.decode().encode("utf-16-le"), rng.randbytes(200), b"\x00" * 10,
                 "name = \"caf\xe9\"\n".encode("latin-1")]
    refused = 0
    for k, content in enumerate(contents):
        path = tmp_path / f"s{k}.toml"
        path.write_bytes(content)
        try:
            load_suite(str(path))
        except UserError:
            refused += 1
            assert main(["data", "stats", "--suite", str(path)]) == 2
            err = capsys.readouterr().err
            assert err.startswith("error: ") and err.count("\n") == 1, err
    assert refused >= 20
