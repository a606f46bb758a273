"""Batched tensor augmentations: flips flip, crops are shifted copies, labels stay aligned."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from actlab.data import (
    Compose,
    RandomAffine,
    RandomCrop,
    RandomHFlip,
    build_augment,
    crop_at,
    random_affine,
    random_crop,
    random_hflip,
)
from actlab.data.augment import affine_theta, warp, warp_labels


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(n: int = 6, c: int = 2, h: int = 7, w: int = 9, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, c, h, w, generator=gen(seed), dtype=torch.float64)


def label_map(n: int = 6, h: int = 7, w: int = 9, k: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, k, (n, h, w), generator=gen(seed))


# ----------------------------------------------------------------------------------------------
# flip
# ----------------------------------------------------------------------------------------------
def test_flip_really_flips() -> None:
    x = batch()
    out, _ = random_hflip(x, p=1.0, generator=gen())
    assert torch.equal(out[..., 0], x[..., -1]) and torch.equal(out[..., 3], x[..., 5])
    same, _ = random_hflip(x, p=0.0, generator=gen())
    assert torch.equal(same, x)


def test_flip_is_per_sample_and_labels_follow() -> None:
    x, y = batch(n=64), label_map(n=64)
    out, yo = random_hflip(x, y, p=0.5, generator=gen(3))
    flipped = [torch.equal(o, s.flip(-1)) for o, s in zip(out, x, strict=True)]
    kept = [torch.equal(o, s) for o, s in zip(out, x, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54
    for i, f in enumerate(flipped):
        assert torch.equal(yo[i], y[i].flip(-1) if f else y[i])


def test_flip_1d_sequences() -> None:
    x = torch.arange(2 * 1 * 5, dtype=torch.float32).view(2, 1, 5)
    out, y = random_hflip(x, torch.tensor([3, 4]), p=1.0)
    assert torch.equal(out, x.flip(-1)) and y.tolist() == [3, 4]  # class labels untouched


# ----------------------------------------------------------------------------------------------
# crop
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,pad_mode", [("zero", "constant"), ("reflect", "reflect"),
                                           ("replicate", "replicate")])
def test_crop_at_matches_padded_window(mode: str, pad_mode: str) -> None:
    x, p = batch(), 3
    offsets = torch.randint(0, 2 * p + 1, (x.shape[0], 2), generator=gen(5))
    out = crop_at(x, offsets, p, mode)  # type: ignore[arg-type]
    ref = F.pad(x, (p, p, p, p), mode=pad_mode)
    for i, (oy, ox) in enumerate(offsets.tolist()):
        assert torch.equal(out[i], ref[i, :, oy : oy + 7, ox : ox + 9])


def test_random_crop_is_a_shifted_copy() -> None:
    x, p = batch(n=10), 2
    out, _ = random_crop(x, padding=p, mode="zero", generator=gen(1))
    assert out.shape == x.shape
    ref = F.pad(x, (p, p, p, p))
    for i in range(len(x)):
        windows = [
            (oy, ox)
            for oy in range(2 * p + 1)
            for ox in range(2 * p + 1)
            if torch.equal(out[i], ref[i, :, oy : oy + 7, ox : ox + 9])
        ]
        assert len(windows) == 1  # random data: exactly one shift explains the output


def test_crop_1d_and_label_alignment() -> None:
    x = torch.randn(5, 2, 12, generator=gen(2))
    y = torch.randint(0, 3, (5, 12), generator=gen(3))
    xx = torch.cat([x, y[:, None].float()], dim=1)  # carry the labels as an extra channel
    out, yo = random_crop(xx, y, padding=4, mode="reflect", generator=gen(4))
    assert torch.equal(out[:, 2].long(), yo)
    outz, yz = random_crop(xx, y, padding=4, mode="zero", generator=gen(4))
    assert torch.equal(outz[:, 2].long(), yz)  # zero fill of the image = label_fill 0


def test_crop_label_fill_and_errors() -> None:
    x, y = torch.zeros(1, 1, 4, 4), torch.ones(1, 4, 4, dtype=torch.long)
    _, yo = crop_at(x, torch.tensor([[0, 0]]), 2, "zero"), crop_at(
        y, torch.tensor([[0, 0]]), 2, "zero", fill=-1, spatial_start=1
    )
    assert yo[0, :2].eq(-1).all() and yo[0, 2:, 2:].eq(1).all()
    with pytest.raises(ValueError, match="mode must be one of"):
        RandomCrop(2, mode="wrap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="smaller than the size"):
        random_crop(x, padding=4, mode="reflect")
    with pytest.raises(ValueError, match=r"expected a batch of shape"):
        random_crop(torch.zeros(4, 4), padding=1)


# ----------------------------------------------------------------------------------------------
# affine
# ----------------------------------------------------------------------------------------------
def test_warp_rotation_by_90_degrees_is_rot90() -> None:
    x = batch(n=2, h=6, w=6)
    theta = affine_theta(torch.full((2,), math.pi / 2, dtype=torch.float64),
                         torch.zeros(2, 2, dtype=torch.float64), (6, 6))
    # positive angles turn the content clockwise on screen (y axis down) = rot90 with k=-1
    torch.testing.assert_close(warp(x, theta), torch.rot90(x, -1, (2, 3)), atol=1e-10, rtol=0)


def test_warp_integer_shift_moves_content_right_and_down() -> None:
    x = batch(n=1)
    theta = affine_theta(torch.zeros(1, dtype=torch.float64),
                         torch.tensor([[2.0, 1.0]], dtype=torch.float64), (7, 9))
    ref = torch.zeros_like(x)
    ref[..., 1:, 2:] = x[..., :-1, :-2]
    torch.testing.assert_close(warp(x, theta), ref, atol=1e-10, rtol=0)


def test_affine_keeps_image_and_labels_aligned() -> None:
    y = label_map(n=8, h=4, w=4, seed=7).repeat_interleave(6, 1).repeat_interleave(6, 2)
    x = y[:, None].double()  # 6x6-pixel label blocks carried as the image
    xo, yo = random_affine(x, y, degrees=20, shift=3, generator=gen(8), mode="nearest")
    assert torch.equal(xo[:, 0].round().long(), yo)
    # bilinear image: away from label boundaries the interpolated value is the label
    xb, yb = random_affine(x, y, degrees=20, shift=3, generator=gen(8))
    assert torch.equal(yb, yo)
    agree = (xb[:, 0].round().long() == yb).double().mean().item()
    assert agree > 0.85


def test_affine_labels_outside_get_fill() -> None:
    y = torch.full((1, 8, 8), 2, dtype=torch.long)
    theta = affine_theta(torch.zeros(1), torch.tensor([[3.0, 0.0]]), (8, 8))
    out = warp_labels(y, theta, fill=-1)
    assert out[0, :, :3].eq(-1).all() and out[0, :, 3:].eq(2).all()


def test_affine_needs_images() -> None:
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_affine(torch.zeros(2, 1, 9), degrees=5)
    with pytest.raises(ValueError, match="must be >= 0"):
        RandomAffine(degrees=-1)


# ----------------------------------------------------------------------------------------------
# determinism, compose, parsing
# ----------------------------------------------------------------------------------------------
def test_seeded_generator_reproduces_and_leaves_global_rng_alone() -> None:
    x, y = batch(n=16, h=12, w=12), label_map(n=16, h=12, w=12)
    aug = build_augment("crop3+flip+rot10+shift2", task="segmentation")
    state = torch.get_rng_state()
    a = aug(x, y, generator=gen(11))
    b = aug(x, y, generator=gen(11))
    c = aug(x, y, generator=gen(12))
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_build_augment_grammar() -> None:
    aug = build_augment("crop4+flip")
    assert [type(t) for t in aug.transforms] == [RandomCrop, RandomHFlip]
    assert aug.transforms[0].padding == 4 and aug.transforms[0].mode == "zero"
    aug = build_augment(["crop2_reflect", "hflip0.25", "rot15", "shift1.5"])
    assert aug.transforms[0].mode == "reflect" and aug.transforms[1].p == 0.25
    assert aug.transforms[2].degrees == 15 and aug.transforms[3].shift == 1.5
    for empty in (None, "", "none", []):
        ident = build_augment(empty)
        x = batch()
        assert len(ident) == 0 and torch.equal(ident(x)[0], x)
    with pytest.raises(ValueError, match="unknown augmentation 'blur3'"):
        build_augment("crop4+blur3")
    with pytest.raises(TypeError, match="augment spec"):
        build_augment(4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="task must be"):
        build_augment("flip", task="detection")


def test_compose_checks_targets_against_task() -> None:
    x = batch()
    seg = Compose([RandomHFlip(1.0)], task="segmentation")
    with pytest.raises(ValueError, match="needs a label map"):
        seg(x, torch.zeros(6, dtype=torch.long))
    cls = build_augment("flip1", task="classification")
    labels = torch.arange(6)
    out, yo = cls(x, labels, generator=gen())
    assert torch.equal(out, x.flip(-1)) and torch.equal(yo, labels)
    with pytest.raises(ValueError, match="expects labels of shape"):
        cls(x, label_map())
