"""Combinations A+B: every pair of registered methods is refused exactly when it overlaps; others add up."""

import copy
import itertools
import pickle

import pytest
import torch
from model_helpers import adapted

from methods import get_method, list_methods
from methods.footprint import check_combinable, measure
from methods.registry import SEPARATOR
from riscore.errors import UserError

SINGLES = [name for name in list_methods() if SEPARATOR not in name]
PEFT_ON_QV = {"lora", "dora", "loha", "lokr", "oft", "ia3"}  # default targets all include v
ON_VIT_MLP = {"adapter", "adaptformer", "compacter", "convadapter"}  # each wraps every ViT block's MLP


def must_collide(a: str, b: str) -> bool:
    """Known overlaps at default options, stated independently of the footprint rule."""
    pair = {a, b}
    return bool(pair & {"frozen", "full"}) or pair <= PEFT_ON_QV or pair <= ON_VIT_MLP


@pytest.fixture(scope="module")
def footprints(tiny):
    def alone(name: str):
        spec = get_method(name)
        return measure(tiny, lambda model: spec.apply(model, spec.make_config()))

    return {name: alone(name) for name in SINGLES}


@pytest.mark.parametrize("a, b", list(itertools.combinations(SINGLES, 2)))
def test_every_pair_is_refused_exactly_when_it_overlaps(footprints, a, b):
    if must_collide(a, b):
        with pytest.raises(UserError) as refused:
            check_combinable({a: footprints[a], b: footprints[b]})
        assert "\n" not in str(refused.value) and (f"'{a}'" in str(refused.value) or f"'{b}'" in str(refused.value))
    else:
        check_combinable({a: footprints[a], b: footprints[b]})


# one pair per kind of composition: a bridge and a peft tuner, prompts wrapping blocks that adapters then
# enter, PHM adapters on peft-wrapped attention, conv adapters inside prompted blocks, disjoint peft targets
@pytest.mark.parametrize("a, b, options", [
    ("bridger", "lora", {}), ("prompt", "adapter", {}), ("lora", "compacter", {}),
    ("prompt", "convadapter", {}), ("lora", "ia3", {"lora.targets": "q", "ia3.targets": "k,v", "ia3.feedforward": ""}),
])
def test_a_combination_adds_exactly_its_parts(tiny, a, b, options):
    def part(name: str):
        return {k.split(".", 1)[1]: v for k, v in options.items() if k.startswith(name + ".")}

    first, second = adapted(tiny, a, **part(a)).parameter_counts(), adapted(tiny, b, **part(b)).parameter_counts()
    model = adapted(tiny, f"{a}{SEPARATOR}{b}", **options)
    counts = model.parameter_counts()
    assert counts.added == first.added + second.added
    assert counts.trainable == first.trainable + second.trainable - counts.decoder
    images, tokens = torch.rand(1, 3, 64, 64), tiny.backbone.tokenize(["the red circle"])
    assert model.predict(images, tokens).shape == tiny.predict(images, tokens).shape


def test_an_overlap_is_refused_before_anything_is_applied(tiny):
    model = copy.deepcopy(tiny)
    with pytest.raises(UserError, match=r"'lora' and 'ia3' collide: both adapt .*v_proj"):
        get_method("lora+ia3").apply(model, get_method("lora+ia3").make_config())
    assert model.parameter_counts() == tiny.parameter_counts()


def test_options_are_addressed_per_part_and_round_trip_through_records():
    spec = get_method("bridger+adapter")
    config = spec.make_config({"adapter.bottleneck": "8", "bridger.width": "32"})
    assert config.adapter.bottleneck == 8 and config.bridger.width == 32
    assert spec.make_config({"adapter": {"bottleneck": 8}, "bridger": {"width": 32}}) == config
    assert pickle.loads(pickle.dumps(config)) == config
    with pytest.raises(UserError, match="has no option 'bottleneck'; address a part's option as PART.OPTION"):
        spec.make_config({"bottleneck": "8"})
    with pytest.raises(UserError, match="method 'adapter' has no option 'rank'"):
        spec.make_config({"adapter.rank": "8"})


@pytest.mark.parametrize("name, message", [
    ("bridger+bridger", "repeats a method"),
    ("bridger+adaptr", "unknown method 'adaptr'. Did you mean 'adapter'"),
])
def test_bad_combination_names(name, message):
    with pytest.raises(UserError, match=message):
        get_method(name)


def test_listed_combinations_are_etris_table_2s():
    assert {n for n in list_methods() if SEPARATOR in n} == {"bridger+adapter", "bridger+convadapter"}
