"""Keras-style affine augmentation against scipy.ndimage.affine_transform (an independent
resampler), with the Keras matrix R(θ)·T(t)·Sh(s)·Z built here in numpy; seeding; ranges."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from actlab.data import build_augment
from actlab.data.keras_augment import (
    KerasAffine,
    affine_resample,
    keras_affine_matrices,
    parse_keras_token,
)

# our fill modes -> scipy modes (interpolation order 1 for images, 0 for labels)
SCIPY_MODE = {"nearest": "nearest", "reflect": "reflect", "constant": "constant",
              "wrap": "grid-wrap"}


def _keras_matrix(theta, tx, ty, shear, zx, zy, flip=False):
    """3x3 map output -> input in centred (x, y) = (column, row) pixel coordinates, written
    from Keras's apply_affine_transform: rotation @ shift @ shear @ zoom, then the flip."""
    t, s = math.radians(theta), math.radians(shear)
    rot = np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])
    shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    shr = np.array([[1, -math.sin(s), 0], [0, math.cos(s), 0], [0, 0, 1]])
    zoom = np.diag([zx, zy, 1.0])
    flp = np.diag([-1.0 if flip else 1.0, 1.0, 1.0])
    return rot @ shift @ shr @ zoom @ flp


def _scipy_reference(img, m, mode, cval=0.0, order=1):
    """Apply ``m`` (centred x, y) to ``img`` (C, H, W) with scipy in (row, col) index
    coordinates: input = P C m C^-1 P output, P swapping the axes, C shifting the centre."""
    _, h, w = img.shape
    centre = np.array([[1, 0, (w - 1) / 2], [0, 1, (h - 1) / 2], [0, 0, 1]])
    m_idx = centre @ m @ np.linalg.inv(centre)  # absolute (x, y)
    swap = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    m_rc = swap @ m_idx @ swap
    return np.stack([ndimage.affine_transform(ch, m_rc[:2, :2], m_rc[:2, 2], order=order,
                                              mode=mode, cval=cval) for ch in img])


CASES = {
    "rotation": dict(theta=23.0),
    "width_shift": dict(tx=1.7),
    "height_shift": dict(ty=-2.3),
    "shear": dict(shear=17.0),
    "zoom": dict(zx=0.83, zy=1.21),
    "flip": dict(flip=True),
    "all": dict(theta=-31.0, tx=0.6, ty=1.4, shear=-12.0, zx=1.13, zy=0.92, flip=True),
}


def _params(**kw):
    base = dict(theta=0.0, tx=0.0, ty=0.0, shear=0.0, zx=1.0, zy=1.0, flip=False)
    base.update(kw)
    return base


def _ours(img, p, mode, cval=0.0, order=1):
    t = {k: torch.tensor([float(v)]) for k, v in p.items() if k != "flip"}
    mats = keras_affine_matrices(t["theta"], t["tx"], t["ty"], t["shear"], t["zx"], t["zy"],
                                 torch.tensor([p["flip"]]))
    x = torch.from_numpy(img)[None]
    return affine_resample(x, mats, fill_mode=mode, cval=cval, order=order)[0].numpy()


@pytest.mark.parametrize("mode", ["nearest", "reflect", "constant", "wrap"])
@pytest.mark.parametrize("case", list(CASES))
def test_each_transform_matches_scipy(case, mode):
    rng = np.random.default_rng(0)
    img = rng.standard_normal((2, 7, 10))  # not square: catches swapped axes
    p = _params(**CASES[case])
    ref = _scipy_reference(img, _keras_matrix(**p), SCIPY_MODE[mode], cval=0.7)
    out = _ours(img, p, mode, cval=0.7)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)  # scipy rounds near 1e-7


def test_nearest_order_matches_scipy_order_0():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 5, (1, 8, 9)).astype(np.float64)
    p = _params(**CASES["all"])
    ref = _scipy_reference(img, _keras_matrix(**p), "reflect", order=0)
    np.testing.assert_array_equal(_ours(img, p, "reflect", order=0), ref)


def test_directions_on_screen():
    img = np.zeros((1, 9, 9))
    img[0, 4, 6] = 1.0  # a dot right of the centre
    # +90 degrees: counter-clockwise on screen (y down): right of centre -> above it
    out = _ours(img, _params(theta=90.0), "constant")
    assert np.unravel_index(out[0].argmax(), out[0].shape) == (2, 4)
    # positive shift moves the content left / up (Keras: input = output + t)
    out = _ours(img, _params(tx=2.0, ty=1.0), "constant")
    assert np.unravel_index(out[0].argmax(), out[0].shape) == (3, 4)
    # flip mirrors about the vertical centre line
    np.testing.assert_array_equal(_ours(img, _params(flip=True), "nearest"), img[:, :, ::-1])
    # identity parameters give the input back exactly
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 5, 6))
    np.testing.assert_array_equal(_ours(x, _params(), "constant"), x)


def test_seeding_and_batch_independence():
    aug = KerasAffine(rotation_range=20, width_shift_range=0.1, height_shift_range=0.2,
                      shear_range=10, zoom_range=0.15, horizontal_flip=True, fill_mode="reflect")
    x = torch.randn(8, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    a, _ = aug(x, generator=torch.Generator().manual_seed(5))
    b, _ = aug(x, generator=torch.Generator().manual_seed(5))
    c, _ = aug(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    # every sample gets its own parameters, and each is the scipy result for them
    params = aug.draw(8, (12, 12), torch.Generator().manual_seed(5))
    assert len(set(params["theta"].tolist())) == 8
    for i in range(8):
        p = {k: (bool(v[i]) if k == "flip" else float(v[i])) for k, v in params.items()}
        ref = _scipy_reference(x[i].double().numpy(), _keras_matrix(**p), "reflect")
        np.testing.assert_allclose(a[i].double().numpy(), ref, atol=1e-5)


def test_parameter_ranges():
    aug = KerasAffine(rotation_range=30, width_shift_range=0.25, height_shift_range=0.1,
                      shear_range=15, zoom_range=(0.8, 1.3), horizontal_flip=True)
    p = aug.draw(4000, (20, 40), torch.Generator().manual_seed(0))
    for key, lo, hi in (("theta", -30, 30), ("tx", -10, 10), ("ty", -2, 2),
                        ("shear", -15, 15), ("zx", 0.8, 1.3), ("zy", 0.8, 1.3)):
        v = p[key]
        assert lo <= v.min() and v.max() <= hi, key
        assert v.min() < lo + 0.02 * (hi - lo) and v.max() > hi - 0.02 * (hi - lo), key
        assert abs(v.mean() - (lo + hi) / 2) < 0.03 * (hi - lo), key
    assert abs(p["flip"].float().mean() - 0.5) < 0.03
    assert not torch.equal(p["zx"], p["zy"])  # independent zooms, as in Keras
    assert KerasAffine(zoom_range=0.2).zoom_bounds == (0.8, 1.2)
    none = KerasAffine().draw(5, (4, 4))
    assert not none["flip"].any()
    assert torch.equal(none["theta"], torch.zeros(5, dtype=torch.float64))


def test_label_maps_follow_with_nearest_and_label_fill():
    aug = KerasAffine(rotation_range=40, zoom_range=0.3, fill_mode="constant", cval=-1.0,
                      label_fill=255)
    y = torch.randint(0, 4, (5, 9, 11), generator=torch.Generator().manual_seed(0))
    x = y[:, None].double()
    xo, yo = aug(x, y, generator=torch.Generator().manual_seed(1))
    assert yo.dtype == y.dtype and yo.shape == y.shape
    params = aug.draw(5, (9, 11), torch.Generator().manual_seed(1))
    for i in range(5):
        p = {k: (bool(v[i]) if k == "flip" else float(v[i])) for k, v in params.items()}
        ref = _scipy_reference(y[i][None].double().numpy(), _keras_matrix(**p), "constant",
                               cval=255, order=0)[0]
        np.testing.assert_array_equal(yo[i].numpy(), ref)
    assert (yo == 255).any() and (xo == -1.0).any()


def test_build_augment_grammar_and_errors():
    aug = build_augment("keras(rotation_range=20, width_shift_range=0.1, height_shift_range=0.1,"
                        " shear_range=10, zoom_range=0.9:1.1, horizontal_flip=true,"
                        " fill_mode=reflect)+crop2")
    k = aug.transforms[0]
    assert isinstance(k, KerasAffine) and k.zoom_bounds == (0.9, 1.1) and k.horizontal_flip
    assert k.fill_mode == "reflect" and len(aug) == 2
    x = torch.randn(4, 1, 8, 8)
    assert aug(x, torch.zeros(4, dtype=torch.long), generator=torch.Generator())[0].shape == \
        x.shape
    assert parse_keras_token("crop4") is None
    assert parse_keras_token("keras()") == KerasAffine()
    for bad, msg in (("keras(rotation=3)", "unknown key 'rotation'"),
                     ("keras(zoom_range=abc)", "bad value 'abc' for zoom_range"),
                     ("keras(fill_mode=mirror)", "fill_mode must be one of"),
                     ("keras(width_shift_range=4)", r"width_shift_range must be a fraction"),
                     ("keras(horizontal_flip=yes)", "bad value 'yes'"),
                     ("keras(rotation_range)", "expected key=value"),
                     ("keras(zoom_range=1.2:0.8)", "zoom_range must be")):
        with pytest.raises(ValueError, match=msg):
            build_augment(bad)
    with pytest.raises(ValueError, match=r"needs images \(N, C, H, W\)"):
        KerasAffine(rotation_range=5)(torch.zeros(2, 3, 4))
