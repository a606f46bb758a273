"""Fabricate a tiny Cityscapes tree (official layout, PIL-written PNGs) for the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt",), "test": ("berlin",)}


def make_cityscapes(root: Path, per_city: int = 3, hw: tuple[int, int] = (16, 32),
                    seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Write RGB images and label-ID maps (IDs 0..33) under ``root``; return the label maps
    written per split, in the reader's (sorted) order."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    written: dict[str, list[np.ndarray]] = {}
    for split, cities in CITIES.items():
        written[split] = []
        for city in sorted(cities):
            img_dir = root / "leftImg8bit" / split / city
            gt_dir = root / "gtFine" / split / city
            img_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            for k in range(per_city):
                stem = f"{city}_{k:06d}_000019"
                rgb = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
                ids = rng.integers(0, 34, hw, dtype=np.uint8)
                Image.fromarray(rgb, "RGB").save(img_dir / f"{stem}_leftImg8bit.png")
                Image.fromarray(ids, "L").save(gt_dir / f"{stem}_gtFine_labelIds.png")
                # the official archives also hold colour and instance maps: must be skipped
                Image.fromarray(ids, "L").save(gt_dir / f"{stem}_gtFine_instanceIds.png")
                written[split].append(ids)
    return written
