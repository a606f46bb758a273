"""Detection metrics: VOC mAP@0.5 (all-point and 11-point) and COCO-style mAP@[.5:.95].

Inputs are per-image lists: detections (boxes, scores, labels) and ground truths
(:class:`~actlab.tasks.detection.targets.ImageTargets`: boxes, labels, difficult flags), boxes in
corner form with continuous coordinates (IoU without the VOC devkit's +1 pixel).

**VOC** (Everingham et al., the VOC devkit's ``VOCevaldet``): per class, detections of all images
sorted by decreasing score (ties: image order, then the given order); each takes the ground truth
of its image with the largest IoU; IoU ≥ 0.5 on a difficult object -> ignored (neither TP nor FP),
on an unclaimed object -> TP (claims it), on a claimed one -> FP; IoU < 0.5 -> FP. With ``n_pos``
the non-difficult objects, ``rec = cumTP / n_pos``, ``prec = cumTP / (cumTP + cumFP)``.
All-point AP (VOC2010+): area under the monotone envelope of precision over recall.
11-point AP (VOC2007): mean over ``t ∈ {0, 0.1, …, 1}`` of ``max(prec[rec ≥ t])`` (0 if none).

**COCO** (pycocotools ``COCOeval``, bbox, area "all", ``maxDets`` 100 per image and class): for
each IoU threshold ``t ∈ {0.5, 0.55, …, 0.95}``, detections of an image (best first, at most
100) are matched greedily, each to the unmatched object with the largest IoU ≥ t (ties: the later
object; difficult objects only when no regular one qualifies, and counted neither way);
precision is made monotone and read at the 101 recall points ``0, 0.01, …, 1``; AP is the mean
over thresholds, recall points and classes. Difficult objects play the role of COCO's ignored
(non-crowd) regions.

In both, classes without any non-difficult object are left out of the mean (a class that has
objects but no detections scores 0); with no class left the mAP is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from actlab.tasks.detection.targets import ImageTargets

__all__ = ["iou_matrix", "voc_ap", "voc_map", "coco_map", "COCO_IOU_THRESHOLDS",
           "COCO_RECALL_POINTS", "DetectionLists"]

#: pycocotools' thresholds, built the same way (linspace), so they compare identically
COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
COCO_RECALL_POINTS = np.linspace(0.0, 1.0, int(np.round(1.0 / 0.01)) + 1)

#: per image: (boxes (K, 4), scores (K,), labels (K,)) as numpy arrays
DetectionLists = Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` float64 IoU of corner-form boxes (0 where the union is empty)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(hi - lo, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _check(dets: DetectionLists, gts: Sequence[ImageTargets]) -> None:
    if len(dets) != len(gts):
        raise ValueError(f"{len(dets)} detection lists for {len(gts)} images")


def _class_items(dets: DetectionLists, gts: Sequence[ImageTargets], c: int):
    """Per image: boxes and scores of class ``c`` detections, boxes and difficult flags of
    its objects."""
    for (db, ds, dl), g in zip(dets, gts, strict=True):
        dm = np.asarray(dl) == c
        gm = np.asarray(g.labels) == c
        yield (np.asarray(db, np.float64).reshape(-1, 4)[dm], np.asarray(ds, np.float64)[dm],
               np.asarray(g.boxes, np.float64).reshape(-1, 4)[gm],
               np.asarray(g.difficult, bool)[gm])


def voc_ap(rec: np.ndarray, prec: np.ndarray, eleven_point: bool = False) -> float:
    """AP from cumulative recall/precision (module doc)."""
    if eleven_point:
        total = 0.0
        for t in np.arange(11) / 10.0:  # t = i/10 exactly, as the devkit's 0:0.1:1
            above = prec[rec >= t]
            total += float(above.max()) if above.size else 0.0
        return total / 11.0
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[step] - mrec[step - 1]) * mpre[step]))


def voc_map(
    dets: DetectionLists,
    gts: Sequence[ImageTargets],
    num_classes: int,
    iou_threshold: float = 0.5,
    eleven_point: bool = False,
) -> tuple[float, dict[int, float]]:
    """VOC mAP and per-class AP over classes ``1 .. num_classes - 1`` (module doc)."""
    _check(dets, gts)
    aps: dict[int, float] = {}
    for c in range(1, num_classes):
        scores, flags, n_pos = [], [], 0
        for db, ds, gb, gd in _class_items(dets, gts, c):
            n_pos += int((~gd).sum())
            order = np.argsort(-ds, kind="mergesort")
            scores.append(ds[order])
            f = np.full(len(order), -1, np.int64)  # FP unless matched below
            if len(gb) and len(order):
                ious = iou_matrix(db[order], gb)
                best = ious.argmax(1)  # first maximum, as the devkit
                hit = ious[np.arange(len(order)), best]
                claimed = np.zeros(len(gb), bool)
                for d in np.flatnonzero((hit > 0) & (hit >= iou_threshold)):
                    j = int(best[d])
                    if gd[j]:
                        f[d] = 0  # ignored
                    elif not claimed[j]:
                        claimed[j] = True
                        f[d] = 1
            flags.append(f)
        if n_pos == 0:
            continue
        all_scores = np.concatenate(scores) if scores else np.zeros(0)
        order = np.argsort(-all_scores, kind="mergesort")
        f = (np.concatenate(flags) if flags else np.zeros(0, np.int64))[order]
        tp, fp = np.cumsum(f == 1), np.cumsum(f == -1)
        rec = tp / n_pos
        with np.errstate(divide="ignore", invalid="ignore"):
            prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        aps[c] = voc_ap(rec, prec, eleven_point)
    return (float(np.mean(list(aps.values()))) if aps else float("nan")), aps


def _coco_image(db, ds, gb, gd, max_dets, thresholds):
    """pycocotools' ``evaluateImg`` for one image and class: (scores, matched (T, D),
    ignored (T, D), number of regular objects)."""
    order = np.argsort(-ds, kind="mergesort")[:max_dets]
    db, ds = db[order], ds[order]
    gorder = np.argsort(gd.astype(np.int64), kind="mergesort")  # regular objects first
    gb, gd = gb[gorder], gd[gorder]
    t_count, d_count = len(thresholds), len(ds)
    matched = np.zeros((t_count, d_count), bool)
    ignored = np.zeros((t_count, d_count), bool)
    taken = np.zeros((t_count, len(gb)), bool)
    if len(gb) and d_count:
        ious = iou_matrix(db, gb)
        # only detections reaching the lowest threshold with some object can match anything
        for d in np.flatnonzero(ious.max(1) >= min(thresholds.min(), 1 - 1e-10)):
            for ti, t in enumerate(thresholds):
                m = -1
                best = min(t, 1 - 1e-10)
                for g in range(len(gb)):
                    if taken[ti, g]:
                        continue
                    if m > -1 and not gd[m] and gd[g]:
                        break
                    if ious[d, g] < best:
                        continue
                    best, m = ious[d, g], g
                if m >= 0:
                    taken[ti, m] = True
                    matched[ti, d] = True
                    ignored[ti, d] = gd[m]
    return ds, matched, ignored, int((~gd).sum())


def coco_map(
    dets: DetectionLists,
    gts: Sequence[ImageTargets],
    num_classes: int,
    max_dets: int = 100,
    iou_thresholds: np.ndarray = COCO_IOU_THRESHOLDS,
) -> tuple[float, np.ndarray]:
    """COCO-style mAP over ``iou_thresholds`` and the per-threshold mAPs (module doc).

    Returns ``(mean, per_threshold)``; ``per_threshold[0]`` is COCO's AP50.
    """
    _check(dets, gts)
    thresholds = np.asarray(iou_thresholds, np.float64)
    per_class = []  # (T, R) precision tables of classes with regular objects
    for c in range(1, num_classes):
        parts = [_coco_image(*item, max_dets, thresholds)
                 for item in _class_items(dets, gts, c) if len(item[1]) or len(item[2])]
        n_pos = sum(p[3] for p in parts)
        if n_pos == 0:
            continue
        scores = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
        order = np.argsort(-scores, kind="mergesort")
        matched = np.concatenate([p[1] for p in parts], axis=1)[:, order]
        ignored = np.concatenate([p[2] for p in parts], axis=1)[:, order]
        table = np.zeros((len(thresholds), len(COCO_RECALL_POINTS)))
        tps = np.cumsum(matched & ~ignored, axis=1).astype(np.float64)
        fps = np.cumsum(~matched & ~ignored, axis=1).astype(np.float64)
        for ti in range(len(thresholds)):
            tp, fp = tps[ti], fps[ti]
            if not len(tp):
                continue
            rec = tp / n_pos
            prec = tp / (fp + tp + np.spacing(1))
            prec = np.maximum.accumulate(prec[::-1])[::-1]
            idx = np.searchsorted(rec, COCO_RECALL_POINTS, side="left")
            ok = idx < len(prec)
            table[ti, : int(ok.sum())] = prec[idx[ok]]
        per_class.append(table)
    if not per_class:
        nan = np.full(len(thresholds), np.nan)
        return float("nan"), nan
    stack = np.stack(per_class)  # (K, T, R)
    return float(stack.mean()), stack.mean(axis=(0, 2))
