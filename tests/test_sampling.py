"""The order of training items: every expression once per epoch, or one random sentence per referent (ETRIS);
either way a pure function of (seed, step), so a resumed sampler yields what an uninterrupted one would."""

from __future__ import annotations

import random
from collections import Counter

import pytest
import torch

from benchmarks.data import build_dataset
from benchmarks.sampling import ExpressionOrder, ReferentOrder, StepBatches, epoch_order
from riscore.errors import UserError


def random_referents(rng: random.Random) -> list[int]:
    """Item -> ref_id for 2-12 referents of 1-4 sentences each, in a shuffled item order, with sparse ids."""
    ids = [ref for ref in rng.sample(range(1000), rng.randint(2, 12)) for _ in range(rng.randint(1, 4))]
    rng.shuffle(ids)
    return ids


@pytest.mark.parametrize("case", range(40))
def test_a_referent_epoch_takes_each_referent_once_as_one_of_its_sentences(case):
    rng = random.Random(case)
    ids = random_referents(rng)
    order = ReferentOrder(ids)
    assert order.size == len(set(ids))
    for epoch in range(3):
        items = order.order(seed=case, epoch=epoch).tolist()
        assert len(items) == order.size and len(set(items)) == order.size
        assert sorted(ids[i] for i in items) == sorted(set(ids))  # each referent exactly once
    assert order.order(case, 1).tolist() == order.order(case, 1).tolist()  # a pure function of (seed, epoch)


@pytest.mark.parametrize("case", range(20))
def test_a_resumed_or_split_sampler_yields_the_uninterrupted_batches(case):
    rng = random.Random(100 + case)
    ids = random_referents(rng)
    order = ReferentOrder(ids)
    batch = rng.choice([b for b in (1, 2, 4) if b <= order.size])
    steps = 3 * (order.size // batch) + 2  # across epoch boundaries
    whole = list(StepBatches(order, batch, case, 0, steps))
    assert all(len(b) == batch for b in whole)
    for start in range(steps):
        assert list(StepBatches(ReferentOrder(ids), batch, case, start, steps)) == whole[start:]
    if batch % 2 == 0:
        parts = [list(StepBatches(order, batch, case, 0, steps, rank, 2)) for rank in range(2)]
        assert [a + b for a, b in zip(*parts, strict=True)] == whole


def test_every_sentence_of_a_referent_is_drawn_about_equally_often():
    ids = [7, 7, 7, 3, 3, 9]
    order = ReferentOrder(ids)
    drawn = Counter(i for epoch in range(600) for i in order.order(0, epoch).tolist())
    for item, ref in enumerate(ids):
        share = ids.count(ref)
        assert abs(drawn[item] - 600 / share) < 0.2 * 600 / share, drawn
    firsts = [order.order(0, epoch)[0].item() for epoch in range(50)]
    assert len(set(firsts)) > 3  # the referent order changes between epochs too


def test_the_expression_epoch_is_the_permutation_earlier_runs_trained_on():
    """Committed records were trained on this order: it must never change."""
    for seed, epoch, size in [(0, 0, 10), (3, 2, 17), (1234, 7, 5)]:
        expected = torch.randperm(size, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        assert ExpressionOrder(size).order(seed, epoch).tolist() == expected.tolist()


def test_datasets_say_which_referent_each_item_belongs_to(tmp_path):
    from refer_fixture import build_refer

    shapes = build_dataset("shapes", "val", 64)
    assert [shapes[i]["ref_id"] for i in range(5)] == list(shapes.ref_ids())[:5]
    build_refer(tmp_path, splits=("train",))  # 4 referents, 6 sentences
    refer = build_dataset("refcoco", "train", 32, {"root": str(tmp_path)})
    assert list(refer.ref_ids()) == [refer[i]["ref_id"] for i in range(len(refer))]
    assert epoch_order("referent", refer).size == 4 and epoch_order("expression", refer).size == 6


def test_referent_sampling_refuses_a_dataset_that_cannot_say_its_referents():
    class Anonymous(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

    with pytest.raises(UserError, match="Anonymous has no ref_ids"):
        epoch_order("referent", Anonymous())
    assert epoch_order("expression", Anonymous()).size == 4
