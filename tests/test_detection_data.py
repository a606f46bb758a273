"""Detection datasets: the Pascal VOC reader on tiny fabricated files in the official layout,
and the synthetic boxed-shapes set (determinism, tight boxes, splits)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from actlab.data import DatasetError, load_dataset
from actlab.data.shapes_detection import DETECTION_SHAPE_CLASSES, make_detection_shapes
from actlab.data.voc import VOC_CLASSES, read_voc_annotation
from actlab.registry import DATASETS
from actlab.tasks.detection import unpack_targets

PIL = pytest.importorskip("PIL.Image")

OBJECT = """  <object>
    <name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>
    <difficult>{difficult}</difficult>
    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>
  </object>
"""


def write_image(root, year, image_id, w, h, objects, colour=(200, 30, 30)):
    """One JPEG and its annotation in the VOCdevkit layout; objects = (name, diff, box)."""
    d = root / "VOCdevkit" / f"VOC{year}"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    PIL.new("RGB", (w, h), colour).save(d / "JPEGImages" / f"{image_id}.jpg")
    body = "".join(OBJECT.format(name=n, difficult=df, x1=b[0], y1=b[1], x2=b[2], y2=b[3])
                   for n, df, b in objects)
    (d / "Annotations" / f"{image_id}.xml").write_text(
        f"<annotation><folder>VOC{year}</folder><filename>{image_id}.jpg</filename>"
        f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>"
        f"<segmented>0</segmented>\n{body}</annotation>"
    )


def fabricate(root):
    write_image(root, "2007", "000001", 200, 100,
                [("dog", 0, (1, 1, 100, 50)), ("person", 1, (51, 26, 200, 100))])
    write_image(root, "2007", "000002", 50, 80, [("tvmonitor", 0, (10, 20, 30, 60))])
    write_image(root, "2007", "000003", 64, 64, [("aeroplane", 0, (1, 1, 64, 64))])
    for i in range(4, 10):
        write_image(root, "2007", f"{i:06d}", 40, 30, [("cat", 0, (5, 5, 20, 25))])
    write_image(root, "2007", "000010", 40, 30, [("bus", 0, (2, 3, 38, 28)),
                                                 ("car", 1, (4, 4, 8, 8))], colour=(0, 0, 255))
    main = root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    (main / "trainval.txt").write_text("\n".join(f"{i:06d}" for i in range(1, 10)) + "\n")
    (main / "test.txt").write_text("000010\n")
    write_image(root, "2012", "2012_000001", 30, 30, [("sheep", 0, (3, 3, 27, 27))])
    (root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Main" / "trainval.txt").write_text(
        "2012_000001\n")


def test_voc_reads_the_official_layout(tmp_path):
    fabricate(tmp_path)
    ds = load_dataset("voc", data_dir=tmp_path, val_fraction=0.2, image_size=32, normalize=False)
    assert ds.task == "detection" and ds.num_classes == 21
    assert ds.class_names == ["background", *VOC_CLASSES]
    assert ds.sizes == {"train": 7, "val": 2, "test": 1}
    assert ds.train.tensors[0].shape == (7, 3, 32, 32)
    # the test image: blue, one bus and one difficult car, boxes (xmin-1, ymin-1, xmax, ymax)/size
    x, y = ds.test.tensors
    assert x[0, 2].mean() > 0.9 and x[0, 0].mean() < 0.1  # RGB order, scaled to [0, 1]
    t = unpack_targets(y)[0]
    np.testing.assert_allclose(t.boxes, [[1 / 40, 2 / 30, 38 / 40, 28 / 30],
                                         [3 / 40, 3 / 30, 8 / 40, 8 / 30]], atol=1e-6)
    assert t.labels.tolist() == [VOC_CLASSES.index("bus") + 1, VOC_CLASSES.index("car") + 1]
    assert t.difficult.tolist() == [False, True]
    # every training object is found, with its flag
    found = sorted((int(lab), bool(d)) for s in (ds.train, ds.val)
                   for o in unpack_targets(s.tensors[1]) for lab, d in zip(o.labels, o.difficult,
                                                                           strict=True))
    assert (VOC_CLASSES.index("person") + 1, True) in found and len(found) == 10
    both = load_dataset("voc", data_dir=tmp_path, year="2007+2012", image_size=16,
                        val_fraction=0.1)
    assert sum(both.sizes.values()) == 11
    assert DATASETS.resolve("pascal_voc") == "voc"


def test_voc_annotation_values(tmp_path):
    fabricate(tmp_path)
    ann = tmp_path / "VOCdevkit" / "VOC2007" / "Annotations" / "000001.xml"
    t = read_voc_annotation(ann, 200, 100)
    np.testing.assert_allclose(t.boxes, [[0, 0, 0.5, 0.5], [0.25, 0.25, 1.0, 1.0]])
    assert t.labels.tolist() == [12, 15] and t.difficult.tolist() == [False, True]


def test_voc_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="VOCdevkit/VOC2007"):
        load_dataset("voc", data_dir=tmp_path)
    fabricate(tmp_path)
    with pytest.raises(DatasetError, match="test.txt"):
        load_dataset("voc", data_dir=tmp_path, year="2012")
    ann = tmp_path / "VOCdevkit" / "VOC2007" / "Annotations" / "000002.xml"
    ann.write_text(ann.read_text().replace("tvmonitor", "unicorn"))
    with pytest.raises(DatasetError, match=r"000002.xml.*unknown class 'unicorn'"):
        load_dataset("voc", data_dir=tmp_path)
    ann.write_text(ann.read_text().replace("unicorn", "tvmonitor").replace("<xmax>30", "<xmax>3"))
    with pytest.raises(DatasetError, match="000002.xml.*empty or outside"):
        load_dataset("voc", data_dir=tmp_path)
    ann.write_text(ann.read_text().replace("<xmax>3<", "<xmax>30<"))
    (tmp_path / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000003.jpg").unlink()
    with pytest.raises(DatasetError, match="missing file .*000003.jpg"):
        load_dataset("voc", data_dir=tmp_path)
    with pytest.raises(ValueError, match="year"):
        load_dataset("voc", data_dir=tmp_path, year="2010")


def test_synthetic_detection_is_deterministic_with_tight_boxes():
    x1, o1 = make_detection_shapes(12, 32, seed=3)
    x2, o2 = make_detection_shapes(20, 32, seed=3)
    np.testing.assert_array_equal(x1, x2[:12])  # sample i does not depend on num_samples
    assert all(np.array_equal(a.boxes, b.boxes) for a, b in zip(o1, o2, strict=False))
    x3, _ = make_detection_shapes(12, 32, seed=4)
    assert not np.array_equal(x1, x3)
    for o in make_detection_shapes(30, 48, seed=1)[1]:
        assert 1 <= len(o) <= 4
        assert set(o.labels.tolist()) <= {1, 2, 3} and not o.difficult.any()
        for box in o.boxes * 48:
            c0, r0, c1, r1 = box.round().astype(int)
            assert np.allclose(box, [c0, r0, c1, r1]) and 0 <= c0 < c1 <= 48 and r0 < r1
    assert DETECTION_SHAPE_CLASSES[0] == "background"


def test_synthetic_boxes_are_the_tight_boxes_of_the_painted_pixels():
    images, objects = make_detection_shapes(40, 48, seed=5, max_objects=1, noise=0.0)
    checked = 0
    for img, o in zip(images, objects, strict=True):
        if o.labels[0] == 3:  # a triangle's box centre may lie outside it
            continue
        c0, r0, c1, r1 = (o.boxes[0] * 48).round().astype(int)
        colour = img[:, (r0 + r1) // 2, (c0 + c1) // 2]
        rows, cols = np.nonzero((img == colour[:, None, None]).all(0))
        assert (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1) == (c0, r0, c1, r1)
        checked += 1
    assert checked > 10


def test_synthetic_detection_splits():
    ds = load_dataset("synthetic_detection", num_samples=50, size=32, seed=1)
    assert ds.task == "detection" and ds.num_classes == 4 and ds.input_shape == (3, 32, 32)
    assert ds.sizes == {"train": 36, "val": 4, "test": 10}
    x, y = ds.train.tensors
    assert y.shape == (36, 4, 6) and y.dtype == torch.float32
    torch.testing.assert_close(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    other = load_dataset("synthetic_detection", num_samples=50, size=32, seed=2)
    torch.testing.assert_close(other.test.tensors[1], ds.test.tensors[1])  # test fixed
    assert not torch.equal(other.val.tensors[1], ds.val.tensors[1])
    small = load_dataset("shapes_detection", num_samples=50, size=32, max_train=8)
    assert small.sizes["train"] == 8
