"""Cityscapes reader on fabricated PNG files in the official layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actlab.data import dataset_options, list_datasets, load_dataset
from actlab.data.base import DatasetError
from actlab.data.cityscapes import (
    CITYSCAPES_CLASSES,
    IGNORE_INDEX,
    LABEL_TO_TRAIN_ID,
    find_pairs,
    label_ids_to_train_ids,
)
from cityscapes_fixture import make_cityscapes

# the official table (cityscapesScripts helpers/labels.py): label ID -> train ID
OFFICIAL = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
            24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def test_label_table_matches_official():
    for label_id in range(34):
        assert LABEL_TO_TRAIN_ID[label_id] == OFFICIAL.get(label_id, 255), label_id
    assert len(CITYSCAPES_CLASSES) == 19 and IGNORE_INDEX == 255
    assert CITYSCAPES_CLASSES[0] == "road" and CITYSCAPES_CLASSES[13] == "car"
    assert CITYSCAPES_CLASSES[18] == "bicycle"
    ids = np.array([[0, 7, 33], [34, 255, 26]], dtype=np.int64)
    np.testing.assert_array_equal(label_ids_to_train_ids(ids), [[255, 0, 18], [255, 255, 13]])


def test_loads_official_layout(tmp_path):
    written = make_cityscapes(tmp_path, per_city=3, hw=(16, 32))
    assert "cityscapes" in list_datasets()
    assert {"size", "test_split", "max_train"} <= set(dataset_options("cityscapes"))
    s = load_dataset("cityscapes", tmp_path, val_fraction=0.0, size=None, normalize=False)
    assert s.task == "segmentation" and s.num_classes == 19
    assert s.sizes == {"train": 6, "val": 0, "test": 3}
    assert s.input_shape == (3, 16, 32) and s.class_names == list(CITYSCAPES_CLASSES)
    # test = official val; order = sorted files; labels mapped with the official table
    x, y = s.test.tensors
    assert y.dtype == torch.int64 and y.shape == (3, 16, 32)
    for k, ids in enumerate(written["val"]):
        expect = np.vectorize(lambda i: OFFICIAL.get(int(i), 255))(ids)
        np.testing.assert_array_equal(y[k].numpy(), expect)
    assert float(x.min()) >= 0 and float(x.max()) <= 1  # scaled by 1/255
    assert int((y == 255).sum()) > 0


def test_resize_nearest_for_labels(tmp_path):
    make_cityscapes(tmp_path, per_city=1, hw=(16, 32))
    s = load_dataset("cityscapes", tmp_path, val_fraction=0.0, size=[8, 12])
    x, y = s.train.tensors
    assert x.shape == (2, 3, 8, 12) and y.shape == (2, 8, 12)
    # nearest-neighbour: every resized label is a train ID or 255, never an in-between value
    assert set(y.unique().tolist()) <= set(range(19)) | {255}
    s2 = load_dataset("cityscapes", tmp_path, val_fraction=0.0, size=4)
    assert s2.input_shape == (3, 4, 4)


def test_max_subset_and_val_carve(tmp_path):
    make_cityscapes(tmp_path, per_city=4, hw=(8, 8))
    s = load_dataset("cityscapes", tmp_path, val_fraction=0.25, size=None,
                     max_train=3, max_test=2)
    assert s.sizes == {"train": 3, "val": 2, "test": 2}


def test_cityscapes_subfolder_and_stream(tmp_path):
    make_cityscapes(tmp_path / "cityscapes", per_city=2, hw=(8, 8))
    mem = load_dataset("cityscapes", tmp_path, val_fraction=0.25, size=None)
    st = load_dataset("cityscapes", tmp_path, val_fraction=0.25, size=None, stream=True)
    x0, y0 = mem.val.tensors
    x1, y1 = st.val[0]
    torch.testing.assert_close(x1, x0[0], rtol=0, atol=0)
    assert torch.equal(y1, y0[0])


@pytest.mark.parametrize("break_it, needle", [
    (lambda r: __import__("shutil").rmtree(r / "leftImg8bit"), "missing folder"),
    (lambda r: __import__("shutil").rmtree(r / "gtFine" / "val"), "gtFine/val"),
    (lambda r: next((r / "gtFine" / "train" / "aachen").glob("*_labelIds.png")).unlink(),
     "unpaired image"),
    (lambda r: next((r / "leftImg8bit" / "val" / "frankfurt").glob("*.png")).unlink(),
     "unpaired label file"),
    (lambda r: next((r / "leftImg8bit" / "train" / "bochum").glob("*.png")).write_bytes(b"x"),
     "cannot decode"),
    (lambda r: __import__("PIL.Image").Image.new("RGB", (8, 8)).save(
        next((r / "gtFine" / "val" / "frankfurt").glob("*_labelIds.png"))), "PIL mode 'RGB'"),
])
def test_one_line_errors(tmp_path, break_it, needle):
    make_cityscapes(tmp_path, per_city=2, hw=(8, 8))
    break_it(tmp_path)
    with pytest.raises(DatasetError) as err:
        load_dataset("cityscapes", tmp_path, size=None)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg and msg.startswith("cityscapes:")


def test_missing_data_dir_and_bad_size(tmp_path):
    with pytest.raises(DatasetError, match="not a directory"):
        load_dataset("cityscapes", tmp_path / "nope")
    make_cityscapes(tmp_path, per_city=1, hw=(8, 8))
    with pytest.raises(ValueError, match="size must be"):
        load_dataset("cityscapes", tmp_path, size=[8, 0])
    assert len(find_pairs(tmp_path, "test")) == 1


def test_label_maps_index_like_an_array(tmp_path):
    from actlab.data.cityscapes import load_cityscapes

    make_cityscapes(tmp_path, per_city=2, hw=(8, 8))
    train, _ = load_cityscapes(tmp_path, size=None)
    maps = train.targets
    assert len(train) == 4 and maps[1].shape == (8, 8) and maps[1:3].shape == (2, 8, 8)
    np.testing.assert_array_equal(maps[np.array([3, 1])][1], maps[1])
    assert np.asarray(maps).shape == (4, 8, 8)
