"""scikit-learn's bundled handwritten digits (UCI optdigits test set): 1,797 8x8 grey images.

Pixel values are counts 0..16 (of a 4x4 block of a 32x32 bitmap); they are rescaled to [0, 1]
by dividing by 16 before per-channel standardisation. No official test split exists.
Reference: Alpaydin & Kaynak, *Optical Recognition of Handwritten Digits*, UCI ML repository.
"""

from __future__ import annotations

import numpy as np

__all__ = ["digits_arrays", "DIGITS_SCALE"]

#: Fixed rescale of raw digit pixels to [0, 1].
DIGITS_SCALE = 1.0 / 16.0


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``(images (1797, 1, 8, 8) float64 in [0, 16], labels (1797,) int64)``; no network."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)[:, None]
    return images, np.asarray(bunch.target, dtype=np.int64)
