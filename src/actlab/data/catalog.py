"""The dataset catalogue: one builder per name, registered in :data:`actlab.registry.DATASETS`.

Every builder has the signature ``builder(data_dir=None, val_fraction=0.1, seed=0, *,
<dataset options>, **common) -> DatasetSplits`` where ``common`` are the pipeline options of
:func:`actlab.data.prepare.prepare_splits`: ``max_train``, ``max_val``, ``max_test``,
``normalize`` (default True), ``dtype`` (default ``torch.float32``) and ``stream`` (default
False: splits held in memory; True: read per sample, see :mod:`actlab.data.stream`).

========================  ======================  ==========================================
name                      source                  test split
========================  ======================  ==========================================
``digits``                scikit-learn (bundled)  carved 20 %, fixed seed
``mnist1d``               ``mnist1d`` generator   official 20 % of the generated samples
``mnist``                 IDX files in data_dir   official t10k
``fashion_mnist``         IDX files in data_dir   official t10k
``cifar10``               python pickles          official test_batch
``cifar100``              python pickles          official test
``svhn``                  .mat files              official test_32x32.mat
``tiny_imagenet``         JPEG folder layout      official (labelled) val
``synthetic_shapes``      generated               carved 20 %, fixed seed
``synthetic_detection``   generated (boxes)       carved 20 %, fixed seed
``voc``                   VOCdevkit folders       official VOC2007 test
``cityscapes``            PNG folder layout       official val (19 classes, 255 ignored)
``voc_seg``               VOCdevkit folders       official VOC2012 val (21 classes, 255 ignored)
``ade20k``                ADEChallengeData2016    official validation (150 classes, 0 ignored)
``scan``                  generated (seq2seq)     carved 20 %, fixed seed
``wmt``                   parallel text files     official newstest2014
========================  ======================  ==========================================

For file-based datasets ``data_dir`` defaults to ``$ACTLAB_DATA`` or ``~/.cache/actlab/data``;
generated and bundled datasets ignore it. The validation split is carved from the training
split, except for ``mnist1d`` with ``val_samples > 0`` (a separate generated split, so the
reference training set stays whole). Loading never downloads anything; ``actlab data
download NAME`` (:mod:`actlab.data.download`) fetches the official files on request.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np

from actlab.data.ade20k import IGNORE_INDEX as ADE20K_IGNORE
from actlab.data.ade20k import load_ade20k
from actlab.data.base import DatasetSplits
from actlab.data.cifar import load_cifar10, load_cifar100
from actlab.data.cityscapes import CITYSCAPES_CLASSES, load_cityscapes
from actlab.data.digits import DIGITS_SCALE, digits_arrays
from actlab.data.files import default_data_dir
from actlab.data.idx import load_idx_dataset
from actlab.data.mnist1d_data import mnist1d_arrays
from actlab.data.prepare import Source, prepare_splits
from actlab.data.scan import scan
from actlab.data.shapes_detection import synthetic_detection
from actlab.data.svhn import load_svhn
from actlab.data.synthetic import SHAPE_CLASSES, make_shapes
from actlab.data.tiny_imagenet import load_tiny_imagenet
from actlab.data.voc import voc
from actlab.data.voc_seg import IGNORE_INDEX as VOC_SEG_IGNORE
from actlab.data.voc_seg import VOC_SEG_CLASSES, load_voc_segmentation
from actlab.data.wmt import wmt
from actlab.registry import DATASETS

__all__ = ["load_dataset", "list_datasets", "COMMON_OPTIONS", "dataset_options", "dataset_task",
           "DATASET_TASKS"]

PathLike = str | os.PathLike[str] | None

#: Options every builder accepts (forwarded to ``prepare_splits``).
COMMON_OPTIONS = ("max_train", "max_val", "max_test", "normalize", "dtype", "stream")
#: k-fold options every builder forwards to ``prepare_splits``; set by a spec's ``folds`` key (a
#: cell's ``folds`` / ``fold``), so they are not listed among a dataset's ``dataset_kwargs``.
FOLD_OPTIONS = ("folds", "fold")

DIGIT_NAMES = [str(i) for i in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]


def _check_common(common: dict[str, Any]) -> None:
    bad = sorted(set(common) - set(COMMON_OPTIONS) - set(FOLD_OPTIONS))
    if bad:
        raise TypeError(f"unknown dataset option(s) {bad}; common options are {COMMON_OPTIONS}")


def digits(
    data_dir: PathLike = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    test_fraction: float = 0.2,
    **common: Any,
) -> DatasetSplits:
    """scikit-learn digits: (1, 8, 8) images, 10 classes; pixels /16 then standardised."""
    _check_common(common)
    x, y = digits_arrays()
    return prepare_splits(
        "digits", "classification", Source.from_arrays(x, y), None,
        num_classes=10, val_fraction=val_fraction, seed=seed, test_fraction=test_fraction,
        scale=DIGITS_SCALE, class_names=DIGIT_NAMES, meta={"source": "sklearn.load_digits"},
        **common,
    )


def mnist1d(
    data_dir: PathLike = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    num_samples: int = 5000,
    data_seed: int = 42,
    val_samples: int = 0,
    val_data_seed: int | None = None,
    cache: bool = True,
    cache_dir: PathLike = None,
    **common: Any,
) -> DatasetSplits:
    """MNIST-1D: (1, 40) signals, 10 classes; generated locally (80/20 train/test), cached.

    With the defaults (``num_samples=5000``, ``data_seed=42``) train / test are the reference
    4,000 / 1,000. ``val_samples > 0`` takes the validation split from a *separate* generation
    (all ``val_samples`` signals of ``mnist1d_arrays(val_samples, val_data_seed)``, default
    seed ``data_seed + 1``) instead of carving it from the training split, which then stays the
    reference training set whole; ``val_fraction`` must be 0.
    """
    _check_common(common)
    d = mnist1d_arrays(num_samples, data_seed, cache=cache, cache_dir=cache_dir)
    val = None
    meta: dict[str, Any] = {"source": "mnist1d.make_dataset", "num_samples": num_samples,
                            "data_seed": data_seed}
    if isinstance(val_samples, bool) or not isinstance(val_samples, int) or val_samples < 0:
        raise ValueError(f"mnist1d: val_samples must be an int >= 0, got {val_samples!r}")
    if val_samples:
        vseed = data_seed + 1 if val_data_seed is None else val_data_seed
        if vseed == data_seed:
            raise ValueError(f"mnist1d: val_data_seed must differ from data_seed ({data_seed}); "
                             "the same seed would regenerate the training signals")
        if val_samples % 10:
            raise ValueError(f"mnist1d: val_samples must be a multiple of 10 (balanced "
                             f"classes), got {val_samples}")
        v = mnist1d_arrays(val_samples, vseed, cache=cache, cache_dir=cache_dir)
        val = Source.from_arrays(np.concatenate([v["x"], v["x_test"]])[:, None],
                                 np.concatenate([v["y"], v["y_test"]]))
        meta.update(val_samples=val_samples, val_data_seed=vseed)
    return prepare_splits(
        "mnist1d", "classification",
        Source.from_arrays(d["x"][:, None], d["y"]),
        Source.from_arrays(d["x_test"][:, None], d["y_test"]),
        num_classes=10, val=val, val_fraction=val_fraction, seed=seed, class_names=DIGIT_NAMES,
        meta=meta, **common,
    )


def _idx_builder(name: str, class_names: list[str]):
    def build(
        data_dir: PathLike = None, val_fraction: float = 0.1, seed: int = 0, **common: Any
    ) -> DatasetSplits:
        _check_common(common)
        tx, ty, sx, sy = load_idx_dataset(name, data_dir)
        return prepare_splits(
            name, "classification", Source.from_arrays(tx, ty), Source.from_arrays(sx, sy),
            num_classes=10, val_fraction=val_fraction, seed=seed, scale=1 / 255,
            class_names=class_names, meta={"data_dir": str(default_data_dir(data_dir))},
            **common,
        )

    build.__name__ = name
    build.__doc__ = f"{name}: (1, 28, 28) images, 10 classes, from IDX files in ``data_dir``."
    return build


mnist = _idx_builder("mnist", DIGIT_NAMES)
fashion_mnist = _idx_builder("fashion_mnist", FASHION_MNIST_CLASSES)


def cifar10(
    data_dir: PathLike = None, val_fraction: float = 0.1, seed: int = 0, **common: Any
) -> DatasetSplits:
    """CIFAR-10: (3, 32, 32) images, 10 classes, from ``cifar-10-batches-py/``."""
    _check_common(common)
    tx, ty, sx, sy, names = load_cifar10(data_dir)
    return prepare_splits(
        "cifar10", "classification", Source.from_arrays(tx, ty), Source.from_arrays(sx, sy),
        num_classes=10, val_fraction=val_fraction, seed=seed, scale=1 / 255, class_names=names,
        meta={"data_dir": str(default_data_dir(data_dir))}, **common,
    )


def cifar100(
    data_dir: PathLike = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    label_type: str = "fine",
    **common: Any,
) -> DatasetSplits:
    """CIFAR-100: (3, 32, 32) images, 100 fine (or 20 coarse) classes."""
    _check_common(common)
    tx, ty, sx, sy, names = load_cifar100(data_dir, label_type)
    return prepare_splits(
        "cifar100", "classification", Source.from_arrays(tx, ty), Source.from_arrays(sx, sy),
        num_classes=100 if label_type == "fine" else 20, val_fraction=val_fraction, seed=seed,
        scale=1 / 255, class_names=names,
        meta={"data_dir": str(default_data_dir(data_dir)), "label_type": label_type},
        **common,
    )


def svhn(
    data_dir: PathLike = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    use_extra: bool = False,
    **common: Any,
) -> DatasetSplits:
    """SVHN cropped digits: (3, 32, 32) images, 10 classes (label 10 of the files is digit 0)."""
    _check_common(common)
    tx, ty, sx, sy = load_svhn(data_dir, use_extra)
    return prepare_splits(
        "svhn", "classification", Source.from_arrays(tx, ty), Source.from_arrays(sx, sy),
        num_classes=10, val_fraction=val_fraction, seed=seed, scale=1 / 255,
        class_names=DIGIT_NAMES,
        meta={"data_dir": str(default_data_dir(data_dir)), "use_extra": use_extra}, **common,
    )


def tiny_imagenet(
    data_dir: PathLike = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    num_workers: int | None = None,
    **common: Any,
) -> DatasetSplits:
    """Tiny ImageNet: (3, 64, 64) images, 200 classes; test = the labelled official val set.

    The full training set takes about 4.9 GB as float32 (``dtype=torch.float16`` halves it);
    with ``max_train`` / ``max_val`` / ``max_test`` only the kept images are decoded.
    """
    _check_common(common)
    train, test, names = load_tiny_imagenet(data_dir, num_workers)
    return prepare_splits(
        "tiny_imagenet", "classification", train, test,
        num_classes=len(names), val_fraction=val_fraction, seed=seed, scale=1 / 255,
        class_names=names, meta={"data_dir": str(default_data_dir(data_dir))}, **common,
    )


def synthetic_shapes(
    data_dir: PathLike = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    num_samples: int = 2000,
    size: int = 64,
    channels: int = 3,
    max_shapes: int = 4,
    noise: float = 0.05,
    data_seed: int = 0,
    test_fraction: float = 0.2,
    **common: Any,
) -> DatasetSplits:
    """Synthetic segmentation: (C, size, size) images, per-pixel labels in 4 classes
    (background, circle, rectangle, triangle); see :mod:`actlab.data.synthetic`."""
    _check_common(common)
    x, y = make_shapes(
        num_samples, size, channels=channels, max_shapes=max_shapes, noise=noise, seed=data_seed
    )
    return prepare_splits(
        "synthetic_shapes", "segmentation", Source.from_arrays(x, y), None,
        num_classes=len(SHAPE_CLASSES), val_fraction=val_fraction, seed=seed,
        test_fraction=test_fraction, class_names=list(SHAPE_CLASSES),
        meta={"source": "actlab.data.synthetic.make_shapes", "num_samples": num_samples,
              "data_seed": data_seed},
        **common,
    )


def cityscapes(
    data_dir: PathLike = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    size: int | list[int] | None = (256, 512),
    test_split: str = "val",
    num_workers: int | None = None,
    **common: Any,
) -> DatasetSplits:
    """Cityscapes fine annotations: (3, H, W) images resized to ``size = [H, W]`` (None: the
    files' 1024x2048), per-pixel labels in the 19 evaluation classes, 255 = ignored; test =
    the official val split (see :mod:`actlab.data.cityscapes`)."""
    _check_common(common)
    train, test = load_cityscapes(data_dir, size, test_split, num_workers)
    return prepare_splits(
        "cityscapes", "segmentation", train, test,
        num_classes=len(CITYSCAPES_CLASSES), val_fraction=val_fraction, seed=seed,
        scale=1 / 255, class_names=list(CITYSCAPES_CLASSES),
        meta={"data_dir": str(default_data_dir(data_dir)),
              "size": list(size) if isinstance(size, (list, tuple)) else size,
              "test_split": test_split, "ignore_index": 255},
        **common,
    )


def voc_seg(
    data_dir: PathLike = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    size: int | list[int] | None = (512, 512),
    train_set: str = "train",
    test_set: str = "val",
    label_dir: str = "SegmentationClass",
    num_workers: int | None = None,
    **common: Any,
) -> DatasetSplits:
    """Pascal VOC2012 segmentation: (3, H, W) images resized to ``size = [H, W]``, per-pixel
    labels in 21 classes (background + 20), 255 = ignored; test = the official val split (see
    :mod:`actlab.data.voc_seg`)."""
    _check_common(common)
    train, test = load_voc_segmentation(data_dir, size, train_set, test_set, label_dir,
                                        num_workers)
    return prepare_splits(
        "voc_seg", "segmentation", train, test,
        num_classes=len(VOC_SEG_CLASSES), val_fraction=val_fraction, seed=seed,
        scale=1 / 255, class_names=list(VOC_SEG_CLASSES),
        meta={"data_dir": str(default_data_dir(data_dir)),
              "size": list(size) if isinstance(size, (list, tuple)) else size,
              "train_set": train_set, "test_set": test_set, "label_dir": label_dir,
              "ignore_index": VOC_SEG_IGNORE},
        **common,
    )


def ade20k(
    data_dir: PathLike = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    *,
    size: int | list[int] | None = (512, 512),
    num_workers: int | None = None,
    **common: Any,
) -> DatasetSplits:
    """ADE20K SceneParsing: (3, H, W) images resized to ``size = [H, W]``, per-pixel labels in
    150 classes (annotation k -> class k - 1), annotation 0 -> 255 ignored; test = the official
    validation split (see :mod:`actlab.data.ade20k`)."""
    _check_common(common)
    train, test, names = load_ade20k(data_dir, size, num_workers)
    return prepare_splits(
        "ade20k", "segmentation", train, test,
        num_classes=len(names), val_fraction=val_fraction, seed=seed, scale=1 / 255,
        class_names=names,
        meta={"data_dir": str(default_data_dir(data_dir)),
              "size": list(size) if isinstance(size, (list, tuple)) else size,
              "ignore_index": ADE20K_IGNORE},
        **common,
    )


_BUILDERS = {
    "digits": (digits, ()),
    "mnist1d": (mnist1d, ("mnist_1d",)),
    "mnist": (mnist, ()),
    "fashion_mnist": (fashion_mnist, ("fmnist", "fashionmnist")),
    "cifar10": (cifar10, ("cifar_10",)),
    "cifar100": (cifar100, ("cifar_100",)),
    "svhn": (svhn, ()),
    "tiny_imagenet": (tiny_imagenet, ("tinyimagenet", "tiny_imagenet_200")),
    "synthetic_shapes": (synthetic_shapes, ("shapes",)),
    "synthetic_detection": (synthetic_detection, ("shapes_detection",)),
    "voc": (voc, ("pascal_voc", "voc_detection")),
    "cityscapes": (cityscapes, ()),
    "voc_seg": (voc_seg, ("voc_segmentation", "pascal_voc_seg")),
    "ade20k": (ade20k, ("ade20k_sceneparsing", "ade")),
    "scan": (scan, ("scan_simple",)),
    "wmt": (wmt, ("wmt14", "wmt14_en_de")),
}
_OWN = {fn for fn, _ in _BUILDERS.values()}
for _name, (_fn, _aliases) in _BUILDERS.items():
    if _name not in DATASETS:
        DATASETS.register(_name, _fn, aliases=_aliases)


#: The task of each built-in dataset that is not a classification set (``DatasetSplits.task``),
#: known without loading it; a plug-in dataset may add its own entry.
DATASET_TASKS: dict[str, str] = {
    "synthetic_shapes": "segmentation",
    "cityscapes": "segmentation",
    "voc_seg": "segmentation",
    "ade20k": "segmentation",
    "synthetic_detection": "detection",
    "voc": "detection",
    "scan": "seq2seq",
    "wmt": "seq2seq",
}


def dataset_task(name: str) -> str:
    """The task a registered dataset's splits are for (``"classification"`` unless listed in
    :data:`DATASET_TASKS`)."""
    return DATASET_TASKS.get(DATASETS.resolve(name), "classification")


def list_datasets() -> list[str]:
    """Registered dataset names (including user-registered ones), sorted."""
    return DATASETS.names()


def dataset_options(name: str) -> list[str]:
    """Keyword options accepted by dataset ``name`` besides data_dir / val_fraction / seed."""
    sig = inspect.signature(DATASETS.factory(name))
    own = [p.name for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY]
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        own += list(COMMON_OPTIONS)
    return own


def load_dataset(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    **kwargs: Any,
) -> DatasetSplits:
    """Build dataset ``name`` as train / val / test ``TensorDataset`` splits.

    Args:
        name: a name from :func:`list_datasets` (case-insensitive, ``-`` = ``_``).
        data_dir: folder holding the official files (file-based datasets only).
        val_fraction: share of the *training* data held out for validation (stratified by
            class for classification), chosen with ``seed``.
        seed: seed of the validation carve and of the ``max_*`` subsets. The test split never
            depends on it.
        **kwargs: common options (``max_train``, ``max_val``, ``max_test``, ``normalize``,
            ``dtype``) and the dataset's own options (see :func:`dataset_options`).

    Example::

        >>> splits = load_dataset("digits", seed=1, max_train=500)
        >>> x, y = splits.train.tensors
    """
    builder = DATASETS.factory(name)
    if builder in _OWN:  # user-registered builders validate their own options
        known = dataset_options(name)
        bad = sorted(set(kwargs) - set(known) - set(FOLD_OPTIONS))
        if bad:
            raise TypeError(
                f"dataset {name!r} does not accept option(s) {bad}; it accepts {known}"
            )
    if data_dir is not None:
        data_dir = Path(data_dir)
    return builder(data_dir=data_dir, val_fraction=val_fraction, seed=seed, **kwargs)
