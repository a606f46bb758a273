"""Datasets and augmentations: ``load_dataset(name, data_dir=None, val_fraction=0.1, seed=0)``.

Bundled / generated (no files needed): ``digits``, ``mnist1d``, ``synthetic_shapes``.
Read from the official on-disk formats in ``data_dir`` (fetched only by ``actlab data
download``): ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``, ``svhn``, ``tiny_imagenet``.

    >>> import torch
    >>> from actlab.data import load_dataset, build_augment
    >>> ds = load_dataset("digits", seed=0)
    >>> ds.summary()
    'digits: classification, input (1, 8, 8), 10 classes, train/val/test = 1294/144/359'
    >>> aug = build_augment("crop1+flip", ds.task)
    >>> x, y = aug(*ds.train.tensors, generator=torch.Generator().manual_seed(0))

Importing this package registers every dataset in :data:`actlab.registry.DATASETS`.
"""

from actlab.data.augment import (
    AUGMENT_GRAMMAR,
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
from actlab.data.base import DatasetError, DatasetSplits
from actlab.data.cache import cache_dir
from actlab.data.catalog import COMMON_OPTIONS, dataset_options, list_datasets, load_dataset
from actlab.data.prepare import Source, channel_stats, prepare_splits
from actlab.data.split import fold_split, kfold_indices, split_indices, stratified_split
from actlab.data.synthetic import SHAPE_CLASSES, make_shapes

__all__ = [
    "AUGMENT_GRAMMAR",
    "COMMON_OPTIONS",
    "Compose",
    "DatasetError",
    "DatasetSplits",
    "RandomAffine",
    "RandomCrop",
    "RandomHFlip",
    "SHAPE_CLASSES",
    "Source",
    "build_augment",
    "cache_dir",
    "channel_stats",
    "crop_at",
    "dataset_options",
    "list_datasets",
    "load_dataset",
    "make_shapes",
    "prepare_splits",
    "random_affine",
    "random_crop",
    "random_hflip",
    "split_indices",
    "stratified_split",
    "kfold_indices",
    "fold_split",
]
