"""Backbone: unfused attention is exact, lock-step encode matches open_clip, bridge hook and taps, loading."""

from __future__ import annotations

import copy
import math

import open_clip
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from methods.attention import UnfusedAttention, unfuse_attention
from methods.backbone import Backbone, BackboneConfig, register_model_configs
from riscore.errors import UserError

TINY = "risbench-tiny-vit"
EXPRS = ["the red car on the left", "man", "a small dog sitting next to the tall lamp by the window"]


def make_backbone(arch: str = TINY, image_size: int = 64, text_len: int = 16, **kw) -> Backbone:
    torch.manual_seed(0)
    return Backbone(BackboneConfig(arch=arch, image_size=image_size, text_len=text_len, **kw)).eval()


@pytest.fixture(scope="module")
def tiny() -> Backbone:
    return make_backbone()


@pytest.fixture(scope="module")
def rn50() -> Backbone:
    return make_backbone("RN50", image_size=64)


def images(n: int = 3, size: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


# --- unfused attention -------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [True, False])
def test_unfused_attention_matches_mha_with_masks(batch_first: bool) -> None:
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(32, 4, batch_first=batch_first).eval()
    un = UnfusedAttention.from_mha(mha)
    x = torch.randn(3, 7, 32) if batch_first else torch.randn(7, 3, 32)
    causal = torch.ones(7, 7, dtype=torch.bool).triu(1)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[0, 5:] = True
    for kw in (
        {"attn_mask": causal},
        {"attn_mask": causal.float().masked_fill(causal, float("-inf"))},
        {"key_padding_mask": pad},
    ):
        expected = mha(x, x, x, need_weights=False, **kw)[0]
        torch.testing.assert_close(un(x, x, x, need_weights=False, **kw)[0], expected, atol=1e-6, rtol=0)


def test_unfused_attention_cross_dims_and_module_swap() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.MultiheadAttention(32, 4, kdim=16, vdim=16, batch_first=True))
    q, kv = torch.randn(2, 5, 32), torch.randn(2, 9, 16)
    expected = model[0](q, kv, kv, need_weights=False)[0]
    assert unfuse_attention(model) == 1
    assert isinstance(model[0], UnfusedAttention)
    torch.testing.assert_close(model[0](q, kv, kv)[0], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", [TINY, "RN50"])
def test_unfused_clip_equals_open_clip(arch: str) -> None:
    register_model_configs()
    built = []
    for _ in range(2):
        torch.manual_seed(0)
        built.append(open_clip.create_model(arch, force_image_size=64).eval())
    original, unfused = built
    n_mha = sum(isinstance(m, nn.MultiheadAttention) for m in original.modules())
    assert unfuse_attention(unfused) == n_mha > 0
    assert not any(isinstance(m, nn.MultiheadAttention) for m in unfused.modules())
    x, tokens = images(), open_clip.get_tokenizer(arch)(EXPRS)
    with torch.no_grad():
        for encode in ("encode_image", "encode_text"):
            arg = x if encode == "encode_image" else tokens
            expected = getattr(original, encode)(arg)
            torch.testing.assert_close(getattr(unfused, encode)(arg), expected, atol=1e-5, rtol=0)


# --- lock-step encode ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "size", "stages", "widths", "grids"),
    [
        (TINY, 64, (1, 3, 5), [128, 128, 128], [8, 8, 8]),
        ("RN50", 64, (1, 2, 3), [512, 1024, 1024], [8, 4, 2]),
        ("ViT-B-16", 96, (3, 7, 11), [768, 768, 512], [6, 6, 6]),
    ],
)
def test_tap_layout(arch: str, size: int, stages: tuple, widths: list, grids: list) -> None:
    bb = make_backbone(arch, image_size=size)
    assert bb.tap_stages == stages and bb.tap_widths == widths
    with torch.no_grad():
        feats = bb.encode(images(2, size), bb.tokenize(EXPRS[:2]))
    expected = [(2, w, g, g) for w, g in zip(widths, grids, strict=True)]
    assert [tuple(t.shape) for t in feats.visual] == expected
    assert feats.words.shape == (2, 16, bb.text_width) and feats.sentence.shape == (2, bb.embed_dim)


@pytest.mark.parametrize("which", ["tiny", "rn50"])
def test_stages_reproduce_open_clip_image_embedding(which: str, request: pytest.FixtureRequest) -> None:
    bb: Backbone = request.getfixturevalue(which)
    x = images()
    v = bb.clip.visual
    with torch.no_grad():
        h = bb.image_stem(x)
        for stage in bb.image_stages:
            h = stage(h)
        pooled = v.ln_post(h[:, 0]) @ v.proj if bb.kind == "vit" else v.attnpool(h)
        expected = bb.clip.encode_image((x - bb.pixel_mean) / bb.pixel_std)
    torch.testing.assert_close(pooled, expected, atol=1e-5, rtol=0)


def test_resnet_head_is_attention_pool_at_every_position(rn50: Backbone) -> None:
    pool = rn50.clip.visual.attnpool
    x = torch.randn(2, 2048, 2, 2)
    seq = (x.flatten(2).permute(2, 0, 1) + pool.positional_embedding[1:, None]).detach()
    expected, _ = F.multi_head_attention_forward(
        seq,
        seq,
        seq,
        2048,
        pool.num_heads,
        None,
        torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]),
        None,
        None,
        False,
        0.0,
        pool.c_proj.weight,
        pool.c_proj.bias,
        training=False,
        need_weights=False,
        use_separate_proj_weight=True,
        q_proj_weight=pool.q_proj.weight,
        k_proj_weight=pool.k_proj.weight,
        v_proj_weight=pool.v_proj.weight,
    )
    with torch.no_grad():
        got = rn50.image_head(x)
    torch.testing.assert_close(got, expected.permute(1, 2, 0).reshape(2, -1, 2, 2), atol=1e-5, rtol=0)


def test_sentence_and_pad_mask_match_open_clip() -> None:
    bb = make_backbone(text_len=40)  # the tiny config's full context length
    tokens = bb.tokenize(EXPRS)
    with torch.no_grad():
        feats = bb.encode(images(), tokens)
        expected = bb.clip.encode_text(tokens)
    torch.testing.assert_close(feats.sentence, expected, atol=1e-5, rtol=0)
    assert torch.equal(feats.pad_mask, tokens == 0)
    assert feats.pad_mask[1].tolist() == [False] * 3 + [True] * 37  # "man": start, word, end


def test_text_len_crop_keeps_causal_features() -> None:
    short, full = make_backbone(text_len=8), make_backbone(text_len=40)
    with torch.no_grad():
        a = short.encode(images(2), short.tokenize(EXPRS[:2]))
        b = full.encode(images(2), full.tokenize(EXPRS[:2]))
    torch.testing.assert_close(a.words, b.words[:, :8], atol=1e-5, rtol=0)
    torch.testing.assert_close(a.sentence, b.sentence, atol=1e-5, rtol=0)
    with pytest.raises(UserError, match="context length 40"):
        make_backbone(text_len=41)


def test_tokenize_truncates_but_keeps_eot(tiny: Backbone) -> None:
    tokens = tiny.tokenize([EXPRS[2] * 3, "man"])
    eot = tiny._tokenizer.eot_token_id
    assert tokens.shape == (2, 16)
    assert tokens[0, -1].item() == eot and tokens[0].argmax().item() == 15
    assert tokens[1, 2].item() == eot and tokens[1, 3:].eq(0).all()
    for bad in ["", "   ", None]:
        with pytest.raises(UserError, match="non-empty string"):
            tiny.tokenize(["fine", bad])


# --- bridge hook -------------------------------------------------------------------------------------


class RecordingBridge(nn.Module):
    def __init__(self, pairs: list[tuple[int, int]], shift: float = 0.0) -> None:
        super().__init__()
        self.pairs, self.shift, self.calls = pairs, shift, []

    def forward(self, k, img, txt, pad_mask):
        self.calls.append((k, img.clone(), txt.clone(), pad_mask))
        return (img + self.shift, txt + self.shift) if k == 0 else (img, txt)


@pytest.mark.parametrize("which", ["tiny", "rn50"])
def test_bridge_hook_position_and_effect(which: str, request: pytest.FixtureRequest) -> None:
    bb: Backbone = request.getfixturevalue(which)
    x, tokens = images(2), bb.tokenize(EXPRS[:2])
    pairs = [(2, 1), (3, 3)]  # image stage 2 with text block 1, then stage 3 with block 3
    with torch.no_grad():
        plain = bb.encode(x, tokens)
        try:
            bb.bridge = RecordingBridge(pairs)
            same = bb.encode(x, tokens)
            calls = bb.bridge.calls
            bb.bridge = RecordingBridge(pairs, shift=0.5)
            shifted = bb.encode(x, tokens)
        finally:
            bb.bridge = None
        txt = bb.text_stem(tokens)
        for j in range(2):
            txt = bb.run_text_block(j, txt)
        img = bb.image_stem(x)
        for stage in list(bb.image_stages)[:3]:
            img = stage(img)
    for a, b in zip(
        [*same.visual, same.words, same.sentence], [*plain.visual, plain.words, plain.sentence], strict=True
    ):
        assert torch.equal(a, b)
    assert [c[0] for c in calls] == [0, 1]
    torch.testing.assert_close(calls[0][1], img)  # native layout, after image stages 0..2
    torch.testing.assert_close(calls[0][2], txt)  # after text blocks 0..1
    assert torch.equal(calls[0][3], tokens == 0)
    first_tap_before_hook = bb.tap_stages[0] < 2
    assert torch.equal(shifted.visual[0], plain.visual[0]) == first_tap_before_hook
    assert not torch.allclose(shifted.visual[2], plain.visual[2])
    assert not torch.allclose(shifted.words, plain.words)


def test_bridge_pairs_are_validated(tiny: Backbone) -> None:
    try:
        tiny.bridge = RecordingBridge([(3, 1), (2, 2)])
        with pytest.raises(ValueError, match="increase"):
            tiny.encode(images(1), tiny.tokenize(["a"]))
        tiny.bridge = RecordingBridge([(9, 1)])
        with pytest.raises(ValueError, match="out of range"):
            tiny.encode(images(1), tiny.tokenize(["a"]))
    finally:
        tiny.bridge = None


def test_a_deep_copy_shares_only_the_tokenizer(tiny: Backbone) -> None:
    """Copies are cheap (the tokenizer's tables are shared) yet independent: changing one leaves the other alone."""
    clone = copy.deepcopy(tiny)
    assert clone._tokenizer is tiny._tokenizer and type(clone) is Backbone
    assert torch.equal(clone.tokenize(["the red circle"]), tiny.tokenize(["the red circle"]))
    pairs = list(zip(tiny.state_dict(keep_vars=True).items(), clone.state_dict(keep_vars=True).items(), strict=True))
    assert all(k == c and torch.equal(a, b) and a.data_ptr() != b.data_ptr() for (k, a), (c, b) in pairs)
    with torch.no_grad():
        next(clone.parameters()).add_(1.0)
    assert not torch.equal(next(clone.parameters()), next(tiny.parameters()))


# --- BatchNorm, config and weights ---------------------------------------------------------------------


def test_frozen_batchnorm_stays_in_eval(rn50: Backbone) -> None:
    bns = [m for m in rn50.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns
    rn50.train()
    assert all(m.training for m in bns)
    rn50.freeze_batchnorm()
    rn50.train()
    assert rn50.clip.visual.layer1.training and not any(m.training for m in bns)
    rn50.eval()


def test_config_errors() -> None:
    with pytest.raises(UserError, match="RN50"):
        BackboneConfig(arch="no-such-net")
    with pytest.raises(ValueError, match="text_len"):
        BackboneConfig(text_len=1)
    with pytest.raises(UserError, match="multiple of 8"):
        Backbone(BackboneConfig(image_size=60))


def test_pretrained_errors(tmp_path, monkeypatch) -> None:
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(UserError, match="nope.safetensors"):
        Backbone(BackboneConfig(pretrained=str(missing)))
    corrupt = tmp_path / "bad.safetensors"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="bad.safetensors"):
        Backbone(BackboneConfig(pretrained=str(corrupt)))

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr("open_clip.pretrained.download_pretrained", offline)
    with pytest.raises(UserError, match="no network or cache.*--pretrained"):
        Backbone(BackboneConfig(arch="ViT-B-16", pretrained="openai", image_size=96))


@pytest.mark.parametrize(("arch", "saved_size", "size"), [(TINY, 64, 64), (TINY, 64, 96), ("RN50", 96, 64)])
def test_fp16_safetensors_round_trip(tmp_path, arch: str, saved_size: int, size: int) -> None:
    register_model_configs()
    torch.manual_seed(3)
    source = open_clip.create_model(arch, force_image_size=saved_size)
    path = tmp_path / "open_clip_model.safetensors"
    save_file({k: v.half().contiguous() for k, v in source.state_dict().items()}, str(path))
    bb = make_backbone(arch, image_size=size, pretrained=str(path))
    assert all(p.dtype == torch.float32 for p in bb.parameters())
    ref = {k: v.half().float() for k, v in source.state_dict().items()}
    got = bb.clip.state_dict()
    in_proj = ref["transformer.resblocks.0.attn.in_proj_weight"].chunk(3)
    assert torch.equal(got["transformer.resblocks.0.attn.k_proj.weight"], in_proj[1])
    assert torch.equal(got["token_embedding.weight"], ref["token_embedding.weight"])
    pos_key = "visual.positional_embedding" if bb.kind == "vit" else "visual.attnpool.positional_embedding"
    grid = size // (8 if bb.kind == "vit" else 32)
    assert got[pos_key].shape[0] == grid * grid + 1
    assert torch.equal(got[pos_key][0], ref[pos_key][0])  # class position kept, grid part resized
    if saved_size == size:
        assert torch.equal(got[pos_key], ref[pos_key])


# --- ETRIS switches: activation of file weights, ETRIS's ResNet head ------------------------------------


def _features(bb: Backbone, size: int = 64):
    with torch.no_grad():
        return bb.encode(images(2, size), bb.tokenize(EXPRS[:2]))


@pytest.fixture(scope="module")
def rn50_file(tmp_path_factory: pytest.TempPathFactory):
    """Random RN50 weights saved as open_clip saves a 224 px checkpoint (7x7 attnpool grid, fused attention)."""
    register_model_configs()
    torch.manual_seed(5)
    source = open_clip.create_model("RN50")
    path = tmp_path_factory.mktemp("weights") / "rn50-openai.safetensors"
    save_file(source.state_dict(), str(path))
    return path, source.state_dict()


def test_openai_weights_from_a_file_build_the_tag_model_with_quick_gelu(rn50_file, monkeypatch) -> None:
    """The `openai` tag builds with QuickGELU; the same weights from a file need quick_gelu=True to give the same
    model (open_clip cannot tell a file's activation). Without it they run with GELU, and a warning says so."""
    path = rn50_file[0]
    monkeypatch.setattr("open_clip.pretrained.download_pretrained", lambda *a, **k: str(path))  # no network
    tag = make_backbone("RN50", pretrained="openai")
    from_file = make_backbone("RN50", pretrained=str(path), quick_gelu=True)
    with pytest.warns(UserWarning, match="quick_gelu = true"):
        gelu = make_backbone("RN50", pretrained=str(path))

    def activations(bb: Backbone) -> set[str]:
        return {type(m).__name__ for m in bb.modules() if type(m).__name__ in ("QuickGELU", "GELU")}

    assert activations(tag) == activations(from_file) == {"QuickGELU"} and activations(gelu) == {"GELU"}
    assert torch.equal(tag.pixel_mean, from_file.pixel_mean) and torch.equal(tag.pixel_std, from_file.pixel_std)
    want, got, off = _features(tag), _features(from_file), _features(gelu)
    for a, b in zip([*want.visual, want.words, want.sentence], [*got.visual, got.words, got.sentence], strict=True):
        assert torch.equal(a, b)
    assert not torch.allclose(want.sentence, off.sentence, atol=1e-3)


@pytest.fixture(scope="module")
def rn50_etris() -> Backbone:
    return make_backbone("RN50", image_size=64, attnpool="etris")


def test_etris_attnpool_parameters(rn50_etris: Backbone, rn50: Backbone) -> None:
    """ETRIS's head stores the 7x7 grid of 224 px (not the input's) and adds the connect branch; the rest of
    CLIP is unchanged."""
    names = {n: tuple(p.shape) for n, p in rn50_etris.clip.visual.attnpool.named_parameters()}
    plain = {n: tuple(p.shape) for n, p in rn50.clip.visual.attnpool.named_parameters()}
    assert names.pop("positional_embedding") == (50, 2048) and plain.pop("positional_embedding") == (5, 2048)
    assert {n: s for n, s in names.items() if n.startswith("connect.")} == {
        "connect.0.weight": (1024, 2048, 1, 1), "connect.1.weight": (1024,), "connect.1.bias": (1024,)}
    assert {n: s for n, s in names.items() if not n.startswith("connect.")} == plain
    assert isinstance(rn50_etris.clip.visual.attnpool.connect[1], nn.BatchNorm2d)
    assert rn50_etris.image_tower_parameters(224) == rn50.image_tower_parameters(224)  # connect is not CLIP's


@pytest.mark.parametrize("train", [False, True])
def test_etris_attnpool_hand_computed(rn50_etris: Backbone, train: bool) -> None:
    """ReLU(attention with the 7x7 grid resized to the map (plain bicubic) + BN(conv1x1(x))), with BatchNorm
    on running statistics in eval and on the batch's in train mode."""
    pool = rn50_etris.clip.visual.attnpool
    x = torch.randn(3, 2048, 3, 2, generator=torch.Generator().manual_seed(2))  # any map size: resized per call
    bn = pool.connect[1]
    with torch.no_grad():
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.2, 0.2)
    grid = pool.positional_embedding[1:].reshape(1, 7, 7, -1).permute(0, 3, 1, 2)
    pos = F.interpolate(grid, size=(3, 2), mode="bicubic", align_corners=False).flatten(2)  # [1, C, 6]
    seq = (x.flatten(2) + pos).permute(2, 0, 1).detach()
    attn, _ = F.multi_head_attention_forward(
        seq, seq, seq, 2048, pool.num_heads, None,
        torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]), None, None, False, 0.0,
        pool.c_proj.weight, pool.c_proj.bias, training=False, need_weights=False, use_separate_proj_weight=True,
        q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight)
    conv = torch.einsum("oc,bchw->bohw", pool.connect[0].weight[:, :, 0, 0], x)
    if train:
        mean, var = conv.mean(dim=(0, 2, 3), keepdim=True), conv.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    else:
        mean, var = bn.running_mean.view(1, -1, 1, 1), bn.running_var.view(1, -1, 1, 1)
    branch = (conv - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    expected = torch.relu(attn.permute(1, 2, 0).reshape(3, -1, 3, 2) + branch)
    rn50_etris.train(train)
    try:
        with torch.no_grad():
            got = rn50_etris.image_head(x)
    finally:
        rn50_etris.eval()
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert (got == 0).any() and (got > 0).any()  # the ReLU acts


def test_etris_grid_trains_through_the_per_forward_resize(rn50_etris: Backbone) -> None:
    pos = rn50_etris.clip.visual.attnpool.positional_embedding
    pos.requires_grad_(True)
    try:
        rn50_etris.image_head(torch.randn(1, 2048, 2, 2)).sum().backward()
        assert pos.grad is not None and pos.grad[1:].abs().sum() > 0 and not pos.grad[0].any()  # class row unused
    finally:
        pos.requires_grad_(False)
        pos.grad = None


def test_etris_attnpool_loads_clip_weights_and_refuses_a_vit(rn50_file) -> None:
    path, ref = rn50_file  # a checkpoint without the connect branch
    bb = make_backbone("RN50", image_size=96, pretrained=str(path), attnpool="etris", quick_gelu=True)
    got = bb.clip.state_dict()
    assert torch.equal(got["visual.attnpool.positional_embedding"], ref["visual.attnpool.positional_embedding"])
    assert torch.equal(got["visual.layer4.0.conv1.weight"], ref["visual.layer4.0.conv1.weight"])
    with pytest.raises(UserError, match="attnpool"):
        make_backbone(TINY, attnpool="etris")
    with pytest.raises(ValueError, match="attnpool"):
        BackboneConfig(attnpool="cris")



def test_etris_connect_branch_is_the_same_in_every_build() -> None:
    """It is in no weights file and never trains, so a saved model read back must draw the same branch."""
    from open_clip.modified_resnet import ModifiedResNet

    from methods.backbone import etris_attnpool

    built = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        visual = ModifiedResNet(layers=(1, 1, 1, 1), output_dim=32, heads=2, image_size=64, width=8)
        etris_attnpool(visual, 224)
        built.append(visual.attnpool)
    assert torch.equal(built[0].connect[0].weight, built[1].connect[0].weight)
    assert not torch.equal(built[0].positional_embedding, built[1].positional_embedding)  # CLIP's own: the seed's
    bound = 1 / math.sqrt(256)  # torch's default conv init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    weight = built[0].connect[0].weight
    assert weight.abs().max() <= bound and weight.abs().max() > 0.9 * bound
