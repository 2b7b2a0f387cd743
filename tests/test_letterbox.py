import numpy as np
import pytest
import torch

from benchmarks.data.letterbox import PAD_RGB, Letterbox


def test_fit_landscape_pads_top_and_bottom():
    lb = Letterbox.fit(30, 50, 20)
    assert (lb.scale, lb.content_h, lb.content_w, lb.pad_top, lb.pad_left) == (0.4, 12, 20, 4, 0)


def test_fit_portrait_pads_left_and_right():
    lb = Letterbox.fit(50, 30, 20)
    assert (lb.content_h, lb.content_w, lb.pad_top, lb.pad_left) == (20, 12, 0, 4)


def test_fit_odd_padding_puts_extra_pixel_after_content():
    lb = Letterbox.fit(10, 30, 16)  # content 5.33 -> 5 rows, 11 spare rows: 5 above, 6 below
    assert (lb.content_h, lb.pad_top) == (5, 5)


def test_identity_is_a_no_op():
    lb = Letterbox.identity(8)
    mask = np.zeros((8, 8), dtype=bool)
    mask[2:5, 1:7] = True
    assert torch.equal(lb.apply_mask(mask), torch.from_numpy(mask).float())
    probs = torch.rand(2, 8, 8)
    assert torch.allclose(lb.undo(probs), probs)


def test_apply_image_pads_with_clip_mean_and_keeps_content():
    lb = Letterbox.fit(20, 40, 16)  # content 8x16 at rows 4..11
    image = np.full((20, 40, 3), (255, 0, 51), dtype=np.uint8)
    out = lb.apply_image(image)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    pad = torch.tensor(PAD_RGB)[:, None, None]
    assert torch.allclose(out[:, :4], pad.expand(3, 4, 16))
    assert torch.allclose(out[:, 12:], pad.expand(3, 4, 16))
    colour = torch.tensor([1.0, 0.0, 0.2])[:, None, None]
    assert torch.allclose(out[:, 4:12], colour.expand(3, 8, 16), atol=1e-4)


def test_apply_mask_scales_a_block_exactly():
    lb = Letterbox.fit(40, 80, 20)  # scale 1/4, content 10x20, pad_top 5
    mask = np.zeros((40, 80), dtype=bool)
    mask[8:24, 16:48] = True
    expected = torch.zeros(20, 20)
    expected[5 + 2 : 5 + 6, 4:12] = 1.0
    assert torch.equal(lb.apply_mask(mask), expected)


def test_mask_round_trip_through_undo():
    lb = Letterbox.fit(40, 80, 20)
    mask = np.zeros((40, 80), dtype=bool)
    mask[8:24, 16:48] = True
    back = lb.undo(lb.apply_mask(mask) > 0.5, mode="nearest-exact")
    assert back.dtype == torch.bool
    assert torch.equal(back, torch.from_numpy(mask))


def test_undo_maps_a_padded_rectangle_back_to_the_original():
    lb = Letterbox.fit(30, 60, 20)  # scale 1/3, content 10x20, pad_top 5
    padded = torch.zeros(20, 20, dtype=torch.bool)
    padded[0:5] = True  # padding: must be cropped away
    padded[5 + 2 : 5 + 5, 4:10] = True
    expected = torch.zeros(30, 60, dtype=torch.bool)
    expected[6:15, 12:30] = True
    assert torch.equal(lb.undo(padded, mode="nearest-exact"), expected)


def test_undo_keeps_leading_dims_and_constants():
    lb = Letterbox.fit(30, 45, 12)
    out = lb.undo(torch.full((2, 3, 12, 12), 0.7))
    assert out.shape == (2, 3, 30, 45)
    assert torch.allclose(out, torch.full_like(out, 0.7))


@pytest.mark.parametrize(
    "make",
    [
        lambda: Letterbox.fit(0, 10, 8),
        lambda: Letterbox(orig_h=10, orig_w=10, size=8, scale=0.8, pad_top=1, pad_left=0),
        lambda: Letterbox(orig_h=10, orig_w=10, size=8, scale=0.0, pad_top=0, pad_left=0),
    ],
)
def test_invalid_geometry_raises(make):
    with pytest.raises(ValueError, match="Letterbox"):
        make()


def test_wrong_input_shapes_raise():
    lb = Letterbox.fit(10, 20, 8)
    with pytest.raises(ValueError, match="fitted to"):
        lb.apply_mask(np.zeros((20, 10), dtype=bool))
    with pytest.raises(ValueError, match="uint8"):
        lb.apply_image(np.zeros((10, 20, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="undo expects"):
        lb.undo(torch.zeros(7, 8))
