"""Detection mAP against references: COCO-style mAP against pycocotools' COCOeval (to 1e-6) on
random and edge-case boxes; VOC all-point / 11-point AP against a naive transcription of the VOC
devkit's ``VOCevaldet`` written here."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from actlab.tasks.detection.metrics import coco_map, iou_matrix, voc_map
from actlab.tasks.detection.targets import ImageTargets

NUM_CLASSES = 4  # background + 3


# ------------------------------------------------------------------------------- references
def pycoco_map(dets, gts, num_classes):
    """(AP@[.5:.95], AP50) from pycocotools; difficult objects are given area -1, which makes
    COCOeval ignore them (outside the 'all' area range) without treating them as crowds."""
    COCO = pytest.importorskip("pycocotools.coco").COCO
    COCOeval = pytest.importorskip("pycocotools.cocoeval").COCOeval
    images = [{"id": i + 1} for i in range(len(gts))]
    anns, k = [], 1
    for i, g in enumerate(gts):
        for box, label, diff in zip(g.boxes, g.labels, g.difficult, strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            anns.append({"id": k, "image_id": i + 1, "category_id": int(label),
                         "bbox": [box[0], box[1], w, h], "area": -1.0 if diff else w * h,
                         "iscrowd": 0})
            k += 1
    # one extra category without objects receives a dummy detection, so that an empty result
    # list (which loadRes rejects) can be evaluated too; categories without objects are skipped
    cats = [{"id": c} for c in range(1, num_classes + 1)]
    res = [{"image_id": 1, "category_id": num_classes, "bbox": [0, 0, 1, 1], "score": 0.5}]
    for i, (b, s, lab) in enumerate(dets):
        for box, score, label in zip(b, s, lab, strict=True):
            res.append({"image_id": i + 1, "category_id": int(label), "score": float(score),
                        "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": cats}
        gt.createIndex()
        dt = gt.loadRes(res)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[0], ev.stats[1]


def naive_voc(dets, gts, num_classes, eleven_point):
    """VOCevaldet, transcribed loop by loop (continuous IoU, no +1 pixel)."""
    def iou(a, b):
        iw = min(a[2], b[2]) - max(a[0], b[0])
        ih = min(a[3], b[3]) - max(a[1], b[1])
        if iw <= 0 or ih <= 0:
            return None
        ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
        return iw * ih / ua

    aps = []
    for c in range(1, num_classes):
        npos = sum(int(lab == c and not d) for g in gts
                   for lab, d in zip(g.labels, g.difficult, strict=True))
        found = [[False] * len(g.labels) for g in gts]
        items = [(float(s), i, box) for i, (b, sc, lab) in enumerate(dets)
                 for box, s, lb in zip(b, sc, lab, strict=True) if lb == c]
        items = sorted(items, key=lambda t: -t[0])  # stable: image order, then given order
        tp, fp = [], []
        for _, i, box in items:
            ovmax, jmax = -np.inf, -1
            for j, (gb, gl) in enumerate(zip(gts[i].boxes, gts[i].labels, strict=True)):
                if gl != c:
                    continue
                ov = iou(box, gb)
                if ov is not None and ov > ovmax:
                    ovmax, jmax = ov, j
            if ovmax >= 0.5:
                if not gts[i].difficult[jmax]:
                    if not found[i][jmax]:
                        tp.append(1)
                        fp.append(0)
                        found[i][jmax] = True
                    else:
                        tp.append(0)
                        fp.append(1)
                else:
                    tp.append(0)
                    fp.append(0)
            else:
                tp.append(0)
                fp.append(1)
        if npos == 0:
            continue
        ctp, cfp, rec, prec = 0, 0, [], []
        for t, f in zip(tp, fp, strict=True):
            ctp, cfp = ctp + t, cfp + f
            rec.append(ctp / npos)
            prec.append(ctp / max(ctp + cfp, np.finfo(np.float64).eps))
        if eleven_point:
            ap = 0.0
            for t in range(11):
                p = [pr for r, pr in zip(rec, prec, strict=True) if r >= t / 10]
                ap += (max(p) if p else 0.0) / 11
        else:
            mrec, mpre = [0.0, *rec, 1.0], [0.0, *prec, 0.0]
            for i in range(len(mpre) - 2, -1, -1):
                mpre[i] = max(mpre[i], mpre[i + 1])
            ap = sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec))
                     if mrec[i] != mrec[i - 1])
        aps.append(ap)
    return float(np.mean(aps)) if aps else float("nan")


# ------------------------------------------------------------------------------- data
def random_case(seed, n_images=12, tiny=False, difficult=0.15, ties=False, many=False):
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for _ in range(n_images):
        k = int(rng.integers(0, 6))
        lo = rng.uniform(0, 80, size=(k, 2))
        wh = rng.uniform(0.01, 0.5, size=(k, 2)) if tiny else rng.uniform(5, 40, size=(k, 2))
        boxes = np.concatenate([lo, lo + wh], 1)
        labels = rng.integers(1, NUM_CLASSES, size=k)
        gts.append(ImageTargets(boxes, labels, rng.random(k) < difficult))
        # detections: jittered copies of objects (some duplicated) plus random boxes
        jit = boxes + rng.normal(0, 0.1 * (wh.mean() if k else 1), size=boxes.shape)
        dup = jit[rng.random(k) < 0.3]
        n_rand = int(rng.integers(0, 150 if many else 6))
        lo2 = rng.uniform(0, 80, size=(n_rand, 2))
        rand = np.concatenate([lo2, lo2 + rng.uniform(1, 40, size=(n_rand, 2))], 1)
        db = np.concatenate([jit, dup, rand]).reshape(-1, 4)
        db[:, 2:] = np.maximum(db[:, 2:], db[:, :2] + 1e-3)
        dl = np.concatenate([labels, labels[: len(dup)] if len(dup) else [],
                             rng.integers(1, NUM_CLASSES, size=n_rand)]).astype(np.int64)
        dl = np.where(rng.random(len(dl)) < 0.1, rng.integers(1, NUM_CLASSES, size=len(dl)), dl)
        ds = rng.random(len(db))
        if ties:
            ds = np.round(ds, 1)
        dets.append((db, ds, dl))
    return dets, gts


CASES = [
    pytest.param(dict(seed=s), id=f"random{s}") for s in range(6)
] + [
    pytest.param(dict(seed=10, ties=True), id="score-ties"),
    pytest.param(dict(seed=11, tiny=True), id="tiny-boxes"),
    pytest.param(dict(seed=12, many=True), id="over-100-per-image"),
    pytest.param(dict(seed=13, difficult=0.6), id="many-difficult"),
    pytest.param(dict(seed=14, n_images=1), id="one-image"),
]


@pytest.mark.parametrize("kw", CASES)
def test_coco_map_matches_pycocotools(kw):
    dets, gts = random_case(**kw)
    ours, per_t = coco_map(dets, gts, NUM_CLASSES)
    ref, ref50 = pycoco_map(dets, gts, NUM_CLASSES)
    if ref == -1:  # no class with objects
        assert np.isnan(ours)
    else:
        assert ours == pytest.approx(ref, abs=1e-6)
        assert per_t[0] == pytest.approx(ref50, abs=1e-6)


def equal_iou_case():
    """d1 overlaps both objects with exactly the same IoU (95/105); d2 is object 2 itself.
    COCO gives d1 the later object, VOC the first one, which changes what d2 can match."""
    gb = np.array([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0]])
    db = np.array([[0.5, 0.0, 10.5, 10.0], [1.0, 0.0, 11.0, 10.0]])
    g = ImageTargets(gb, np.array([1, 1]), np.array([False, False]))
    assert iou_matrix(db[:1], gb)[0, 0] == iou_matrix(db[:1], gb)[0, 1]
    return [(db, np.array([0.9, 0.8]), np.array([1, 1]))], [g]


def test_coco_edge_cases():
    box = np.array([[10.0, 10.0, 30.0, 40.0]])
    g = ImageTargets(box, np.array([1]), np.array([False]))
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    cases = {
        "no detections": ([empty, empty], [g, g]),
        "exact duplicates, tied scores": (
            [(np.repeat(box, 3, 0), np.array([0.9, 0.9, 0.9]), np.array([1, 1, 1])), empty],
            [g, g]),
        "detections of a class without objects": (
            [(np.concatenate([box, box]), np.array([0.8, 0.7]), np.array([1, 2])), empty],
            [g, ImageTargets(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, bool))]),
        "equal IoU with two objects": equal_iou_case(),
        "only a difficult object": (
            [(box, np.array([0.5]), np.array([1]))],
            [ImageTargets(box, np.array([1]), np.array([True]))]),
    }
    for name, (dets, gts) in cases.items():
        ours, _ = coco_map(dets, gts, NUM_CLASSES)
        ref, _ = pycoco_map(dets, gts, NUM_CLASSES)
        if ref == -1:
            assert np.isnan(ours), name
        else:
            assert ours == pytest.approx(ref, abs=1e-6), name
    # a perfect detector scores 1, no detector 0
    perfect = [(box, np.array([0.9]), np.array([1]))]
    assert coco_map(perfect, [g], NUM_CLASSES)[0] == pytest.approx(1.0)
    assert coco_map([empty], [g], NUM_CLASSES)[0] == 0.0


@pytest.mark.parametrize("eleven", [False, True], ids=["all-point", "11-point"])
@pytest.mark.parametrize("kw", CASES)
def test_voc_map_matches_the_devkit_definition(kw, eleven):
    dets, gts = random_case(**kw)
    ours, _ = voc_map(dets, gts, NUM_CLASSES, eleven_point=eleven)
    ref = naive_voc(dets, gts, NUM_CLASSES, eleven)
    if np.isnan(ref):
        assert np.isnan(ours)
    else:
        assert ours == pytest.approx(ref, abs=1e-12)


def test_voc_known_values():
    """Two objects, detections TP (0.9), FP (0.8), TP (0.7): precision 1, 1/2, 2/3 at recall
    1/2, 1/2, 1 -> all-point AP = 1/2·1 + 1/2·2/3 = 5/6; 11-point = (6·1 + 5·2/3)/11."""
    gb = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    g = ImageTargets(gb, np.array([1, 1]), np.array([False, False]))
    db = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 31]], float)
    d = (db, np.array([0.9, 0.8, 0.7]), np.array([1, 1, 1]))
    assert voc_map([d], [g], 2)[0] == pytest.approx(5 / 6)
    assert voc_map([d], [g], 2, eleven_point=True)[0] == pytest.approx((6 + 5 * 2 / 3) / 11)
    # a duplicate of a claimed object is a false positive; on a difficult object it is ignored
    dup = (np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float), np.array([0.9, 0.8]),
           np.array([1, 1]))
    one = ImageTargets(gb[:1], np.array([1]), np.array([False]))
    assert voc_map([dup], [one], 2)[0] == pytest.approx(1.0)  # the FP comes after recall 1
    hard = ImageTargets(gb, np.array([1, 1]), np.array([False, True]))
    d2 = (np.array([[20, 20, 30, 30], [0, 0, 10, 10]], float), np.array([0.9, 0.8]),
          np.array([1, 1]))
    assert voc_map([d2], [hard], 2)[0] == pytest.approx(1.0)


def test_voc_equal_iou_goes_to_the_first_object():
    dets, gts = equal_iou_case()
    assert voc_map(dets, gts, 2)[0] == pytest.approx(1.0)
    assert naive_voc(dets, gts, 2, False) == pytest.approx(1.0)


def test_iou_matrix_against_a_direct_formula():
    rng = np.random.default_rng(0)
    a = np.concatenate([lo := rng.uniform(0, 10, (5, 2)), lo + rng.uniform(0, 5, (5, 2))], 1)
    b = np.concatenate([lo2 := rng.uniform(0, 10, (4, 2)), lo2 + rng.uniform(0, 5, (4, 2))], 1)
    m = iou_matrix(a, b)
    for i in range(5):
        for j in range(4):
            iw = max(0.0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
            ih = max(0.0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
            u = np.prod(a[i, 2:] - a[i, :2]) + np.prod(b[j, 2:] - b[j, :2]) - iw * ih
            assert m[i, j] == pytest.approx(iw * ih / u, abs=1e-15)
