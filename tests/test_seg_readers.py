"""Pascal VOC segmentation and ADE20K readers on fabricated files in the official layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actlab.data import dataset_options, list_datasets, load_dataset
from actlab.data.ade20k import LABEL_TO_CLASS, ade20k_label_map
from actlab.data.base import DatasetError
from actlab.data.catalog import dataset_task
from actlab.data.voc_seg import VOC_SEG_CLASSES
from seg_fixture import make_ade20k, make_voc_seg, voc_palette


def _ade_expected(values: np.ndarray) -> np.ndarray:
    """The benchmark's convention written out: 0 -> 255 (ignored), k -> k - 1."""
    return np.where(values == 0, 255, values.astype(np.int64) - 1)


# ------------------------------------------------------------------------------------ VOC
def test_voc_seg_reads_palette_indices_and_the_split_files(tmp_path):
    written = make_voc_seg(tmp_path, n_train=3, n_val=2)
    assert "voc_seg" in list_datasets() and dataset_task("voc_seg") == "segmentation"
    assert {"size", "train_set", "test_set", "label_dir"} <= set(dataset_options("voc_seg"))
    s = load_dataset("voc_seg", tmp_path, val_fraction=0.0, size=None, normalize=False)
    assert s.task == "segmentation" and s.num_classes == 21
    assert s.class_names == list(VOC_SEG_CLASSES) and s.class_names[0] == "background"
    assert s.class_names[15] == "person"
    assert s.sizes == {"train": 3, "val": 0, "test": 2}  # unlisted images are not read
    for split, name in (("train", "train"), ("test", "val")):
        x, y = getattr(s, split).tensors
        assert x.shape[1:] == (3, 16, 24) and y.dtype == torch.int64
        # labels are the palette indices written (not colours), in the list's order
        np.testing.assert_array_equal(y.numpy(), np.stack(written[name]))
        assert int((y == 255).sum()) == len(written[name]) * 24
    assert float(x.min()) >= 0 and float(x.max()) <= 1


def test_empty_validation_split_keeps_the_sample_shape(tmp_path):
    make_voc_seg(tmp_path, n_train=2, n_val=1)
    for size, hw in ((None, (16, 24)), ([8, 12], (8, 12))):
        x, y = load_dataset("voc_seg", tmp_path, val_fraction=0.0, size=size).val.tensors
        assert x.shape == (0, 3, *hw) and y.shape == (0, *hw)


def test_voc_palette_colours_differ_from_the_indices():
    pal = np.asarray(voc_palette()).reshape(256, 3)
    assert pal[15].tolist() == [192, 128, 128] and pal[255].tolist() == [224, 224, 192]


def test_voc_seg_resize_keeps_labels_and_accepts_the_voc2012_folder(tmp_path):
    make_voc_seg(tmp_path, n_train=2, n_val=1)
    s = load_dataset("voc_seg", tmp_path / "VOCdevkit" / "VOC2012", val_fraction=0.0,
                     size=[8, 12])
    x, y = s.train.tensors
    assert x.shape == (2, 3, 8, 12) and y.shape == (2, 8, 12)
    assert set(y.unique().tolist()) <= set(range(21)) | {255}  # nearest: no in-between value


def test_voc_seg_augmented_label_dir_and_image_set(tmp_path):
    from PIL import Image

    make_voc_seg(tmp_path, n_train=2, n_val=1)
    base = tmp_path / "VOCdevkit" / "VOC2012"
    (base / "SegmentationClassAug").mkdir()
    ids = (base / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    maps = []
    for k, image_id in enumerate(ids):
        arr = np.full((16, 24), k + 3, np.uint8)
        Image.fromarray(arr, "L").save(base / "SegmentationClassAug" / f"{image_id}.png")
        maps.append(arr)
    (base / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(ids))
    (base / "SegmentationClassAug" / "2007_val0000.png").write_bytes(
        (base / "SegmentationClass" / "2007_val0000.png").read_bytes())
    s = load_dataset("voc_seg", tmp_path, val_fraction=0.0, size=None, train_set="train_aug",
                     label_dir="SegmentationClassAug")
    np.testing.assert_array_equal(s.train.tensors[1].numpy(), np.stack(maps))


def test_voc_seg_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="VOCdevkit/VOC2012"):
        load_dataset("voc_seg", tmp_path)
    make_voc_seg(tmp_path, n_train=2, n_val=1)
    base = tmp_path / "VOCdevkit" / "VOC2012"
    with pytest.raises(DatasetError, match="trainval.txt"):
        load_dataset("voc_seg", tmp_path, train_set="trainval")
    with pytest.raises(DatasetError, match="SegmentationClassAug"):
        load_dataset("voc_seg", tmp_path, label_dir="SegmentationClassAug")
    (base / "SegmentationClass" / "2007_train0001.png").unlink()
    with pytest.raises(DatasetError, match="2007_train0001.png"):
        load_dataset("voc_seg", tmp_path)


def test_voc_seg_refuses_bad_label_files(tmp_path):
    from PIL import Image

    make_voc_seg(tmp_path, n_train=2, n_val=1)
    label = tmp_path / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_train0000.png"
    Image.fromarray(np.full((16, 24), 21, np.uint8), "L").save(label)
    with pytest.raises(DatasetError, match=r"2007_train0000.png has label index 21"):
        _ = load_dataset("voc_seg", tmp_path, val_fraction=0.0, size=None).train.tensors
    # a colour (RGB) rendering of the labels is not a class map
    Image.fromarray(np.zeros((16, 24, 3), np.uint8), "RGB").save(label)
    with pytest.raises(DatasetError, match="2007_train0000.png.*mode 'RGB'"):
        _ = load_dataset("voc_seg", tmp_path, val_fraction=0.0, size=None).train.tensors
    with pytest.raises(ValueError, match="size"):
        load_dataset("voc_seg", tmp_path, size=[0, 4])


def test_voc_seg_needs_a_size_for_images_of_different_sizes(tmp_path):
    make_voc_seg(tmp_path / "a", n_train=1, n_val=1, hw=(16, 24))
    make_voc_seg(tmp_path / "b", n_train=1, n_val=1, hw=(12, 20), seed=1)
    a = tmp_path / "a" / "VOCdevkit" / "VOC2012"
    b = tmp_path / "b" / "VOCdevkit" / "VOC2012"
    for sub, ext in (("JPEGImages", "jpg"), ("SegmentationClass", "png")):
        (a / sub / f"2007_x.{ext}").write_bytes((b / sub / f"2007_train0000.{ext}").read_bytes())
    (a / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_train0000\n2007_x\n")
    with pytest.raises(DatasetError, match="different sizes.*size=\\[height, width\\]"):
        _ = load_dataset("voc_seg", tmp_path / "a", val_fraction=0.0, size=None).train.tensors
    s = load_dataset("voc_seg", tmp_path / "a", val_fraction=0.0, size=[8, 8])
    assert s.train.tensors[0].shape == (2, 3, 8, 8)


# ------------------------------------------------------------------------------------ ADE20K
def test_ade20k_label_table():
    assert LABEL_TO_CLASS[0] == 255 and LABEL_TO_CLASS[1] == 0 and LABEL_TO_CLASS[150] == 149
    values = np.arange(151, dtype=np.uint8).reshape(1, -1)
    np.testing.assert_array_equal(ade20k_label_map(values, None), _ade_expected(values))


def test_ade20k_reads_the_official_layout(tmp_path):
    written = make_ade20k(tmp_path, n_train=3, n_val=2)
    assert "ade20k" in list_datasets() and dataset_task("ade20k") == "segmentation"
    s = load_dataset("ade20k", tmp_path, val_fraction=0.0, size=None, normalize=False)
    assert s.num_classes == 150 and s.sizes == {"train": 3, "val": 0, "test": 2}
    # names from objectInfo150.txt: class index k is annotation value k + 1
    assert s.class_names[0] == "thing1" and s.class_names[149] == "thing150"
    for split, name in (("train", "training"), ("test", "validation")):
        x, y = getattr(s, split).tensors
        assert x.shape[1:] == (3, 16, 24)
        np.testing.assert_array_equal(y.numpy(), _ade_expected(np.stack(written[name])))
    assert int(y[0, 0, 0]) == 255 and int(y[0, 0, 1]) == 149


def test_ade20k_folder_itself_resize_and_default_names(tmp_path):
    from PIL import Image

    make_ade20k(tmp_path, n_train=2, n_val=1, object_info=False)
    # a checkerboard of two far-apart values: any interpolation would invent values between
    board = np.where(np.add.outer(np.arange(16), np.arange(24)) % 2, 150, 1).astype(np.uint8)
    Image.fromarray(board, "L").save(
        tmp_path / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000001.png")
    s = load_dataset("ade20k", tmp_path / "ADEChallengeData2016", val_fraction=0.0, size=7)
    x, y = s.train.tensors
    assert x.shape == (2, 3, 7, 7) and set(y[0].unique().tolist()) == {0, 149}
    assert s.class_names[:2] == ["class_1", "class_2"]


def test_ade20k_errors_name_the_file(tmp_path):
    from PIL import Image

    with pytest.raises(DatasetError, match="ADEChallengeData2016"):
        load_dataset("ade20k", tmp_path)
    make_ade20k(tmp_path, n_train=2, n_val=1)
    base = tmp_path / "ADEChallengeData2016"
    ann = base / "annotations" / "training" / "ADE_train_00000002.png"
    Image.fromarray(np.full((16, 24), 151, np.uint8), "L").save(ann)
    with pytest.raises(DatasetError, match="ADE_train_00000002.png has annotation value 151"):
        _ = load_dataset("ade20k", tmp_path, val_fraction=0.0, size=None).train.tensors
    ann.unlink()
    with pytest.raises(DatasetError, match="unpaired image .*ADE_train_00000002.jpg"):
        load_dataset("ade20k", tmp_path)
    (base / "images" / "training" / "ADE_train_00000002.jpg").unlink()
    (base / "annotations" / "validation" / "ADE_val_00000009.png").write_bytes(
        (base / "annotations" / "validation" / "ADE_val_00000001.png").read_bytes())
    with pytest.raises(DatasetError, match="unpaired annotation .*ADE_val_00000009.png"):
        load_dataset("ade20k", tmp_path)
