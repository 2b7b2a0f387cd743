import pickle
import warnings

import numpy as np
import pytest
import torch
from refer_fixture import ANNS, IMAGES, OBJECT_RGB, build_refer, rect_mask

from benchmarks.cli import main
from benchmarks.data import build_dataset, check_dataset
from benchmarks.data.letterbox import Letterbox
from benchmarks.data.refcoco import RefCOCODataset
from riscore.errors import UserError

SIZE = 32


@pytest.fixture
def refcoco(tmp_path):
    return build_refer(tmp_path)


def _items(dataset):
    return [dataset[i] for i in range(len(dataset))]


@pytest.mark.parametrize("split", ["train", "val", "testA", "testB"])
def test_every_sentence_of_the_split_is_an_item(refcoco, split):
    items = _items(RefCOCODataset("refcoco", split, refcoco.root, SIZE))
    got = sorted((item["ref_id"], item["text"]) for item in items)
    assert got == sorted(refcoco.expressions(split))
    assert got, "each split holds at least one ref in the fixture"


def test_masks_have_the_annotated_area(refcoco):
    # Areas of the drawn rectangles, by hand: polygon 12x20, uncompressed RLE 21x10, compressed RLE 16x20.
    areas = {1: 12 * 20, 2: 21 * 10, 3: 16 * 20}
    ann_of_ref = {r["ref_id"]: r["ann_id"] for r in refcoco.refs}
    seen = set()
    for split in ("train", "val", "testA", "testB"):
        for item in _items(RefCOCODataset("refcoco", split, refcoco.root, SIZE)):
            ann_id = ann_of_ref[item["ref_id"]]
            image_id, _, rect = ANNS[ann_id]
            assert int(item["orig_mask"].sum()) == areas[ann_id]
            assert torch.equal(item["orig_mask"], torch.from_numpy(rect_mask(image_id, rect)))
            seen.add(ann_id)
    assert seen == {1, 2, 3}  # polygon, uncompressed RLE and compressed RLE all decoded


def test_item_follows_the_data_contract(refcoco):
    item = RefCOCODataset("refcoco", "val", refcoco.root, SIZE)[0]  # image 202: 50 high, 30 wide
    h, w = IMAGES[202]
    lb = item["letterbox"]
    assert lb == Letterbox.fit(h, w, SIZE)
    assert item["kind"] == "ref" and isinstance(item["text"], str)
    assert item["image"].shape == (3, SIZE, SIZE) and item["image"].dtype == torch.float32
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    assert item["orig_mask"].shape == (h, w) and item["orig_mask"].dtype == torch.bool
    assert item["mask"].dtype == torch.float32
    assert torch.equal(item["mask"], lb.apply_mask(item["orig_mask"].numpy()))
    # The object's colour sits at the centre of its letterboxed mask (JPEG and resampling blur the edges).
    rows, cols = torch.nonzero(item["mask"], as_tuple=True)
    centre = item["image"][:, (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2]
    assert torch.allclose(centre, torch.tensor(OBJECT_RGB) / 255.0, atol=0.04)


def test_refer_toolkit_image_layout_is_accepted(tmp_path):
    fixture = build_refer(tmp_path, image_dir="images/mscoco/images/train2014")
    item = RefCOCODataset("refcoco", "train", fixture.root, SIZE)[0]
    assert item["orig_mask"].shape == IMAGES[101]


def test_refcocog_umd_and_google_partitions(tmp_path):
    umd = build_refer(tmp_path, name="refcocog", split_by="umd", splits=("train", "val", "test"))
    test = RefCOCODataset("refcocog", "test", umd.root, SIZE)  # umd is the default partition
    assert sorted((i["ref_id"], i["text"]) for i in _items(test)) == sorted(umd.expressions("test"))
    google = build_refer(tmp_path, name="refcocog", split_by="google", splits=("train", "val"))
    val = RefCOCODataset("refcocog", "val", google.root, SIZE, split_by="google")
    assert len(val) == len(google.expressions("val"))
    with pytest.raises(UserError, match=r"refcocog \(google\) has no split 'test'; valid splits: train, val$"):
        RefCOCODataset("refcocog", "test", google.root, SIZE, split_by="google")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("refcoco", "testC"), "valid splits: train, val, testA, testB"),
        (("refcocox", "val"), "unknown RefCOCO-family dataset"),
        (("refcocox", "val", "unc"), "unknown RefCOCO-family dataset"),
    ],
)
def test_bad_names_raise_user_error(refcoco, args, message):
    with pytest.raises(UserError, match=message):
        RefCOCODataset(*args[:2], root=refcoco.root, image_size=SIZE, split_by=(args[2:] or [None])[0])
    with pytest.raises(UserError, match="no split_by 'google'"):
        RefCOCODataset("refcoco", "val", refcoco.root, SIZE, split_by="google")


@pytest.mark.parametrize("missing", ["refcoco/refs(unc).p", "refcoco/instances.json"])
def test_missing_annotation_file_names_it_and_says_what_to_download(refcoco, missing):
    (refcoco.root / missing).unlink()
    with pytest.raises(UserError) as err:
        RefCOCODataset("refcoco", "val", refcoco.root, SIZE)
    assert str(refcoco.root / missing) in str(err.value)
    assert "lichengunc/refer" in str(err.value) and "train2014" in str(err.value)


def test_missing_image_folder_and_image(refcoco):
    image = refcoco.root / "images/train2014/COCO_train2014_000000000202.jpg"
    image.unlink()
    dataset = RefCOCODataset("refcoco", "val", refcoco.root, SIZE)  # folder still there
    with pytest.raises(UserError, match=f"missing image {image}"):
        dataset[0]
    for path in sorted((refcoco.root / "images/train2014").iterdir()):
        path.unlink()
    (refcoco.root / "images/train2014").rmdir()
    with pytest.raises(UserError, match="no COCO train2014 image folder"):
        RefCOCODataset("refcoco", "val", refcoco.root, SIZE)


@pytest.mark.parametrize(
    ("target", "content"),
    [("refcoco/refs(unc).p", b"not a pickle"), ("refcoco/instances.json", b"{broken")],
)
def test_corrupt_annotation_file_names_it(refcoco, target, content):
    (refcoco.root / target).write_bytes(content)
    with pytest.raises(UserError, match="corrupt") as err:
        RefCOCODataset("refcoco", "val", refcoco.root, SIZE)
    assert str(refcoco.root / target) in str(err.value)


BLANKS = ["", " ", "   ", "\t", "\n \t", "\u3000", "\xa0 "]


@pytest.mark.parametrize("seed", range(8))
def test_empty_or_blank_sentences_are_left_out_counted_and_warned(refcoco, seed):
    """Random sentences blanked (whole refs too): the split keeps every other item and counts the rest."""
    rng = np.random.default_rng(seed)
    blanked = []
    for ref in refcoco.refs:
        for sent in ref["sentences"]:
            if rng.random() < 0.4:
                sent["sent"] = str(rng.choice(BLANKS))
                blanked.append((ref["split"], ref["ref_id"]))
    if seed == 0:
        refcoco.refs[2]["sentences"] = []  # a ref without sentences: no item, no error
    refcoco.write_refs()
    for split in ("train", "val", "testA", "testB"):
        expected = sorted((r, t) for r, t in refcoco.expressions(split) if t.strip())
        left_out = sorted(r for s, r in blanked if s == split)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = RefCOCODataset("refcoco", split, refcoco.root, SIZE)
        assert sorted((item["ref_id"], item["text"]) for item in _items(dataset)) == expected
        assert sorted(dataset.left_out.empty_sentences) == left_out
        messages = [str(w.message) for w in caught]
        if left_out:
            assert any(f"refcoco {split}" in m and f"{len(left_out)} empty or blank sentences left out" in m
                       for m in messages), messages
        else:
            assert not messages


@pytest.mark.parametrize("bad", [None, 7, ["a", "list"], {"nested": "dict"}])
def test_non_text_sentence_names_the_ref(refcoco, bad):
    refcoco.refs[1]["sentences"][0]["sent"] = bad
    refcoco.write_refs()
    with pytest.raises(UserError, match=f"ref_id {refcoco.refs[1]['ref_id']}") as err:
        RefCOCODataset("refcoco", refcoco.refs[1]["split"], refcoco.root, SIZE)
    assert str(refcoco.refs_path) in str(err.value) and "non-text sentence" in str(err.value)


def test_python2_byte_strings_are_read_as_utf8_and_latin1_only_as_a_counted_fallback(refcoco):
    """The published pickles hold Python 2 byte strings (keys, splits and sentences): UTF-8 text decodes as
    itself, and a byte string that is not UTF-8 falls back to latin-1 with a count."""
    texts = ["the café on the left", "niño in red", "男人 on the right", "plain ascii words"]
    sentences = [s for ref in refcoco.refs for s in ref["sentences"]]
    for sent, text in zip(sentences, texts, strict=False):
        sent["sent"] = text
    sentences[len(texts)]["sent"] = "naïve latin-1 bytes".encode("latin-1")  # not valid UTF-8
    refcoco.write_refs(python2=True)
    with open(refcoco.refs_path, "rb") as f:  # the file really holds byte strings: latin-1 gives mojibake
        assert pickle.load(f, encoding="latin1")[0]["sentences"][0]["sent"] == "the cafÃ© on the left"
    got, latin1 = {}, []
    for split in ("train", "val", "testA", "testB"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = RefCOCODataset("refcoco", split, refcoco.root, SIZE)
        got.update((item["text"], item["ref_id"]) for item in _items(dataset))
        latin1 += dataset.left_out.latin1_sentences
        if dataset.left_out.latin1_sentences:
            assert any("1 sentences not valid UTF-8, read as latin-1" in str(w.message) for w in caught)
    assert set(texts) | {"naïve latin-1 bytes"} <= set(got)
    assert latin1 == [got["naïve latin-1 bytes"]]
    assert len(got) == len(sentences)


def test_image_that_disagrees_with_annotations_is_rejected(refcoco):
    from PIL import Image

    Image.fromarray(np.zeros((10, 10, 3), dtype=np.uint8)).save(
        refcoco.root / "images/train2014/COCO_train2014_000000000202.jpg")
    with pytest.raises(UserError, match="do not match the annotations"):
        RefCOCODataset("refcoco", "val", refcoco.root, SIZE)[0]


def test_options_are_checked_before_the_annotations_are_read(refcoco, monkeypatch):
    monkeypatch.setenv("RISBENCH_DATA", str(refcoco.root))
    check_dataset("refcoco", SIZE)  # root from the environment, files in place
    with pytest.raises(UserError, match=r"refcoco dataset options: unknown 'splitby' \(did you mean split_by\?\)"):
        check_dataset("refcoco", SIZE, {"splitby": "unc"})
    with pytest.raises(UserError, match="no split_by 'umd'"):
        check_dataset("refcoco", SIZE, {"split_by": "umd"})
    with pytest.raises(UserError, match=f"missing refer annotation file {refcoco.root / 'refcoco+'}"):
        check_dataset("refcoco+", SIZE)
    with pytest.raises(UserError, match=r"refcoco \(unc\) has no split 'test' .*; valid splits: train, val, testA"):
        build_dataset("refcoco", "test", SIZE)


def _cli(argv, capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def test_cli_refuses_missing_refcoco_data_before_any_training(refcoco, tmp_path, monkeypatch, capsys):
    """bench and sweep: one line, exit 2, no record and no checkpoint."""
    monkeypatch.setenv("RISBENCH_DATA", str(refcoco.root))
    (refcoco.root / "refcoco/instances.json").unlink()
    out, checkpoints = tmp_path / "results", tmp_path / "checkpoints"
    common = ["--suite", "smoke", "--budget", "dataset=refcoco", "--allow-budget-override", "--out", str(out),
              "--checkpoint-dir", str(checkpoints)]
    for argv in (["bench", "--method", "frozen", *common], ["sweep", *common]):
        code, err = _cli(argv, capsys)
        assert code == 2 and "\n" not in err
        assert err.startswith(f"error: missing refer annotation file {refcoco.root / 'refcoco/instances.json'}")
    assert not out.exists() and not checkpoints.exists()


def test_cli_names_the_annotation_of_a_malformed_polygon_before_any_training(refcoco, tmp_path, monkeypatch,
                                                                            capsys):
    """pycocotools' box form (a first part of 4 numbers) was a raw TypeError; now one line, exit 2, no record."""
    refcoco.instances["annotations"][0]["segmentation"] = [[1, 2, 30, 2], [5, 5, 20, 5, 20, 20]]
    refcoco.write_instances()
    monkeypatch.setenv("RISBENCH_DATA", str(refcoco.root))
    out = tmp_path / "results"
    code, err = _cli(["bench", "--method", "frozen", "--suite", "smoke", "--budget", "dataset=refcoco",
                      "--allow-budget-override", "--out", str(out), "--checkpoint-dir", str(tmp_path / "ck"),
                      "--no-save-model"], capsys)
    assert code == 2 and "\n" not in err
    assert err.startswith(f"error: annotation 1 in {refcoco.root / 'refcoco/instances.json'} has a malformed polygon: "
                          "part 0 has 4 numbers")
    assert "Fix or remove that annotation" in err
    assert not out.exists()
