import math

import pytest

from benchmarks.errors import UserError
from benchmarks.suites import Suite, list_suites, load_suite


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
    with pytest.raises(UserError, match="expected a int"):
        suite.replace({"steps": "many"})


def test_repo_relative_weights_resolve_without_entering_the_identity():
    suite = load_suite("shapes")
    assert not suite.to_dict()["pretrained"].startswith("/")
    assert suite.pretrained_source().startswith("/")


def test_none_clears_an_optional_field_from_the_command_line():
    assert load_suite("smoke").replace({"pretrained": "none"}).pretrained is None
    assert load_suite("smoke").replace({"dataset": "shapes"}).dataset == "shapes"
