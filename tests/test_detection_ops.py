"""Detection building blocks against naive references: box encoding, IoU, default boxes,
matching, hard-negative mining, the multibox loss (float64, written out term by term), NMS (an
O(n^2) greedy loop) and post-processing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from actlab.tasks.detection import (
    SSD300_PRIORS,
    ImageTargets,
    PriorSpec,
    batched_nms,
    box_iou,
    centres_to_corners,
    check_targets,
    decode,
    encode,
    hard_negatives,
    make_priors,
    match,
    multibox_parts,
    nms,
    pack_targets,
    postprocess,
    unpack_targets,
)


def rand_boxes(n, gen, lo=0.0, hi=1.0, min_side=0.02):
    xy = torch.rand(n, 2, generator=gen, dtype=torch.float64) * (hi - lo) * 0.8 + lo
    wh = torch.rand(n, 2, generator=gen, dtype=torch.float64) * (hi - lo) * 0.4 + min_side
    return torch.cat([xy, xy + wh], 1)


def iou_py(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    u = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / u if u > 0 else 0.0


# ----------------------------------------------------------------------------- boxes, priors
def test_encode_follows_the_formula_and_decode_inverts_it():
    gen = torch.Generator().manual_seed(0)
    g = rand_boxes(20, gen)
    pri = torch.cat([torch.rand(20, 2, generator=gen, dtype=torch.float64),
                     torch.rand(20, 2, generator=gen, dtype=torch.float64) * 0.5 + 0.05], 1)
    off = encode(g, pri, (0.1, 0.2))
    for i in range(20):
        x1, y1, x2, y2 = g[i].tolist()
        cx, cy, w, h = pri[i].tolist()
        want = [((x1 + x2) / 2 - cx) / (0.1 * w), ((y1 + y2) / 2 - cy) / (0.1 * h),
                math.log((x2 - x1) / w) / 0.2, math.log((y2 - y1) / h) / 0.2]
        assert off[i].tolist() == pytest.approx(want, rel=1e-12, abs=1e-12)
    torch.testing.assert_close(decode(off, pri), g, rtol=0, atol=1e-12)


def test_box_iou_against_a_loop():
    gen = torch.Generator().manual_seed(1)
    a, b = rand_boxes(7, gen), rand_boxes(5, gen)
    m = box_iou(a, b)
    for i in range(7):
        for j in range(5):
            assert m[i, j].item() == pytest.approx(iou_py(a[i].tolist(), b[j].tolist()), abs=1e-15)
    assert box_iou(a[:0], b).shape == (0, 5)


def test_ssd300_default_boxes():
    p = make_priors(SSD300_PRIORS).double()
    assert p.shape == (8732, 4) and SSD300_PRIORS.num_priors() == 8732
    assert SSD300_PRIORS.boxes_per_location() == (4, 6, 6, 6, 4, 4)
    s = 300.0
    c = 0.5 * 8 / s  # cell (0, 0) of the 38x38 map
    r2 = math.sqrt(2)
    want = [[c, c, 30 / s, 30 / s], [c, c, math.sqrt(30 * 60) / s, math.sqrt(30 * 60) / s],
            [c, c, 30 * r2 / s, 30 / r2 / s], [c, c, 30 / r2 / s, 30 * r2 / s]]
    torch.testing.assert_close(p[:4], torch.tensor(want, dtype=torch.float64), atol=1e-7, rtol=0)
    # second cell of the first map moves along x
    assert p[4, 0].item() == pytest.approx(1.5 * 8 / s, abs=1e-7)
    assert p[4, 1].item() == pytest.approx(c, abs=1e-7)
    # the 1x1 map: centred, sizes 264, sqrt(264*315), then ratio-2 boxes clipped to 1
    last = p[-4:]
    assert last[:, :2].tolist() == [[0.5, 0.5]] * 4
    assert last[0, 2].item() == pytest.approx(264 / s, abs=1e-7)
    assert last[1, 2].item() == pytest.approx(math.sqrt(264 * 315) / s, abs=1e-7)
    assert last[2, 2].item() == 1.0 and last[3, 3].item() == 1.0
    # map boundaries: 38*38*4 boxes, then the 19x19 map with 6 per cell
    assert p[5776, 0].item() == pytest.approx(0.5 * 16 / s, abs=1e-7)
    with pytest.raises(ValueError, match="steps"):
        PriorSpec(300, (38, 19), (8,), (30, 60), (60, 111), ((2,), (2,)))


# ----------------------------------------------------------------------------- targets
def test_pack_unpack_roundtrip_and_checks():
    objs = [ImageTargets(np.array([[0.1, 0.2, 0.5, 0.6]]), np.array([2]), np.array([True])),
            ImageTargets(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, bool))]
    t = pack_targets(objs, 3)
    assert t.shape == (2, 3, 6) and (t[1, :, 4] == -1).all()
    back = unpack_targets(t)
    assert back[0].labels.tolist() == [2] and back[0].difficult.tolist() == [True]
    np.testing.assert_allclose(back[0].boxes, objs[0].boxes, atol=1e-7)
    assert len(back[1]) == 0
    check_targets("train", t, 3)
    with pytest.raises(ValueError, match=r"train detection labels must be integers in \[1, 2\)"):
        check_targets("train", t, 2)
    with pytest.raises(ValueError, match="x2 <= x1"):
        bad = t.clone()
        bad[0, 0, 2] = 0.05
        check_targets("val", bad, 3)
    with pytest.raises(TypeError, match="float"):
        check_targets("test", t.long(), 3)
    with pytest.raises(ValueError, match="more than|max_objects"):
        pack_targets(objs, 0)


# ----------------------------------------------------------------------------- matching
def naive_match(objects, priors, thr):
    """Per image, object by object, as the paper words it."""
    pc = centres_to_corners(priors).tolist()
    p_count = len(pc)
    labels = [0] * p_count
    best_o, best_j = [-1.0] * p_count, [-1] * p_count
    ious = [[iou_py(o, q) for q in pc] for o in objects[0]]
    for p in range(p_count):
        for j in range(len(ious)):
            if ious[j][p] > best_o[p]:  # first maximum
                best_o[p], best_j[p] = ious[j][p], j
    for j in range(len(ious)):
        p = max(range(p_count), key=lambda q: (ious[j][q], -q))  # first argmax
        best_o[p], best_j[p] = 2.0, j
    for p in range(p_count):
        if best_j[p] >= 0 and best_o[p] >= thr:
            labels[p] = objects[1][best_j[p]]
    return labels, best_j


def test_match_against_a_naive_loop():
    gen = torch.Generator().manual_seed(2)
    spec = PriorSpec(32, (4, 2), (8, 16), (6, 14), (12, 24), ((2,), (2, 3)))
    priors = make_priors(spec).double()
    objs = []
    for k in (3, 0, 5, 1):
        boxes = rand_boxes(k, gen).numpy()
        objs.append(ImageTargets(boxes, np.arange(k) % 3 + 1, np.zeros(k, bool)))
    # two identical objects: the later one must keep their shared best prior
    objs[3] = ImageTargets(np.repeat(objs[2].boxes[:1], 2, 0), np.array([1, 2]),
                           np.zeros(2, bool))
    t = pack_targets(objs).double()
    labels, loc = match(t, priors, 0.5)
    for i, o in enumerate(unpack_targets(t)):
        want, which = naive_match((o.boxes.tolist(), o.labels.tolist()), priors, 0.5)
        assert labels[i].tolist() == want, i
        pos = labels[i] > 0
        if pos.any():
            tb = t[i, torch.tensor(which)[pos], :4]  # the packed (float32-rounded) boxes
            torch.testing.assert_close(loc[i][pos], encode(tb, priors[pos]))
    assert (labels[1] == 0).all()  # no objects
    none, _ = match(torch.zeros(2, 0, 6, dtype=torch.float64), priors)
    assert none.shape == (2, priors.shape[0]) and (none == 0).all()
    assert 2 in labels[3].tolist()  # the later twin won its best prior
    # without difficult objects
    objs_d = [ImageTargets(objs[0].boxes, objs[0].labels, np.array([True, False, False]))]
    lab_d, _ = match(pack_targets(objs_d).double(), priors, 0.5, use_difficult=False)
    kept = unpack_targets(t)[0]
    want, _ = naive_match((kept.boxes[1:].tolist(), kept.labels[1:].tolist()), priors, 0.5)
    assert lab_d[0].tolist() == want


# ----------------------------------------------------------------------------- mining + loss
def test_hard_negatives_against_sorting():
    gen = torch.Generator().manual_seed(3)
    loss = torch.rand(4, 30, generator=gen).round(decimals=1)  # many ties
    pos = torch.rand(4, 30, generator=gen) < 0.15
    pos[1] = False
    pos[2, :25] = True  # more positives than room for 3x negatives
    neg = hard_negatives(loss, pos, 3.0)
    for i in range(4):
        n_pos = int(pos[i].sum())
        cand = [j for j in range(30) if not pos[i, j]]
        cand = sorted(cand, key=lambda j: -loss[i, j].item())  # stable
        want = set(cand[: min(3 * n_pos, 30 - n_pos)])
        assert set(torch.nonzero(neg[i]).flatten().tolist()) == want, i


def test_multibox_loss_against_a_float64_term_by_term_reference():
    gen = torch.Generator().manual_seed(4)
    spec = PriorSpec(32, (4, 2), (8, 16), (6, 14), (12, 24), ((2,), (2,)))
    priors = make_priors(spec).double()
    p_count, c = priors.shape[0], 4
    objs = [ImageTargets(rand_boxes(k, gen).numpy(), np.arange(k) % 3 + 1, np.zeros(k, bool))
            for k in (2, 0, 3)]
    t = pack_targets(objs).double()
    out = torch.randn(3, p_count, 4 + c, generator=gen, dtype=torch.float64, requires_grad=True)
    parts = multibox_parts(out, t, priors)
    labels, loc_t = match(t, priors)
    loc_ref, conf_ref, n_ref = 0.0, 0.0, 0
    for i in range(3):
        logp = torch.log_softmax(out[i, :, 4:].detach(), -1)
        ce = [-logp[p, labels[i, p]].item() for p in range(p_count)]
        pos = [p for p in range(p_count) if labels[i, p] > 0]
        negs = sorted((p for p in range(p_count) if labels[i, p] == 0), key=lambda p: -ce[p])
        negs = negs[: min(3 * len(pos), p_count - len(pos))]
        n_ref += len(pos)
        conf_ref += sum(ce[p] for p in pos) + sum(ce[p] for p in negs)
        for p in pos:
            for k in range(4):
                d = abs(out[i, p, k].item() - loc_t[i, p, k].item())
                loc_ref += 0.5 * d * d if d < 1 else d - 0.5
    assert parts.num_pos.item() == n_ref > 0
    assert parts.loc.item() == pytest.approx(loc_ref, rel=1e-6)
    assert parts.conf.item() == pytest.approx(conf_ref, rel=1e-6)
    (parts.loc + parts.conf).backward()
    assert out.grad is not None and torch.isfinite(out.grad).all()
    empty = pack_targets([ImageTargets(np.zeros((0, 4)), np.zeros(0, np.int64),
                                       np.zeros(0, bool))]).double()
    z = multibox_parts(out[:1].detach(), empty, priors)
    assert z.num_pos.item() == 0 and z.loc.item() == 0 and z.conf.item() == 0
    with pytest.raises(ValueError, match="4 \\+ num_classes"):
        multibox_parts(out[:, :-1].detach(), t, priors)


# ----------------------------------------------------------------------------- NMS
def naive_nms(boxes, scores, groups, thr):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        if all(groups[i] != groups[k] or iou_py(boxes[i], boxes[k]) <= thr for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(8))
def test_nms_against_the_naive_greedy_loop(seed):
    gen = torch.Generator().manual_seed(seed)
    n = 60 + 20 * seed
    boxes = rand_boxes(n, gen, hi=0.5)  # crowded: long suppression chains
    scores = torch.rand(n, generator=gen, dtype=torch.float64)
    if seed % 2:
        scores = scores.round(decimals=1)  # ties keep input order
    groups = torch.randint(0, 3, (n,), generator=gen)
    for thr in (0.1, 0.3, 0.45, 0.7):
        got = batched_nms(boxes, scores, groups, thr).tolist()
        want = naive_nms(boxes.tolist(), scores.tolist(), groups.tolist(), thr)
        assert got == want, (seed, thr)
    single = nms(boxes, scores, 0.45).tolist()
    assert single == naive_nms(boxes.tolist(), scores.tolist(), [0] * n, 0.45)
    assert nms(boxes[:0], scores[:0], 0.5).numel() == 0


def test_postprocess_decodes_scores_and_suppresses():
    spec = PriorSpec(32, (2,), (16,), (8,), (12,), ((2,),))
    priors = make_priors(spec)  # 2x2 cells x 4 boxes = 16
    out = torch.zeros(1, 16, 4 + 3)
    out[..., 4] = 5.0  # background everywhere ...
    out[0, 0, 4:] = torch.tensor([0.0, 6.0, 0.0])  # ... except prior 0 -> class 1
    out[0, 1, 4:] = torch.tensor([0.0, 5.5, 0.0])  # prior 1: same centre, IoU 0.67 -> suppressed
    out[0, 8, 4:] = torch.tensor([0.0, 0.0, 7.0])  # prior 8 -> class 2
    det = postprocess(out, priors, score_threshold=0.3)[0]
    assert det.labels.tolist() == [2, 1]
    torch.testing.assert_close(det.boxes, centres_to_corners(priors[[8, 0]]).clamp(0, 1))
    p = torch.softmax(out[0, 8, 4:], -1)[2]
    assert det.scores[0].item() == pytest.approx(p.item())
    det2 = postprocess(out, priors, score_threshold=0.3, nms_threshold=0.9)[0]
    assert det2.labels.tolist() == [2, 1, 1]
    assert postprocess(out, priors, score_threshold=0.3, max_detections=1)[0].labels.tolist() == [2]
    background = torch.zeros(2, 16, 7)
    background[..., 4] = 20.0
    assert [len(d.scores) for d in postprocess(background, priors)] == [0, 0]
    assert postprocess(background[:0], priors) == []
    with pytest.raises(ValueError, match=r"\(B, 16, 4 \+ num_classes\).*image size"):
        postprocess(torch.zeros(1, 20, 7), priors)


@pytest.mark.parametrize("seed", range(3))
def test_postprocess_against_a_per_class_reference(seed):
    """Random outputs: decode, per class threshold + top-k + naive greedy NMS, merge, sort."""
    gen = torch.Generator().manual_seed(seed)
    spec = PriorSpec(64, (8, 4), (8, 16), (8, 20), (16, 32), ((2,), (2,)))
    priors = make_priors(spec)
    b, p, c = 3, priors.shape[0], 4
    out = torch.randn(b, p, 4 + c, generator=gen)
    out[..., 4:] *= 3
    kw = dict(score_threshold=0.2, nms_threshold=0.45, pre_nms_top_k=6, max_detections=12)
    got = postprocess(out, priors, **kw)
    boxes = decode(out[..., :4].double(), priors.double()).clamp(0, 1)
    probs = torch.softmax(out[..., 4:].double(), -1)
    for i in range(b):
        rows = []
        for cls in range(1, c):
            sc = probs[i, :, cls]
            top = sorted(range(p), key=lambda j: -sc[j].item())[:6]
            top = [j for j in top if sc[j] > 0.2]
            kept = naive_nms(boxes[i, top].tolist(), sc[top].tolist(), [0] * len(top), 0.45)
            rows += [(sc[top[k]].item(), cls, top[k]) for k in kept]
        rows = sorted(rows, key=lambda r: -r[0])[:12]
        assert got[i].labels.tolist() == [r[1] for r in rows]
        torch.testing.assert_close(got[i].scores.double(), torch.tensor([r[0] for r in rows],
                                   dtype=torch.float64), atol=1e-6, rtol=0)
        torch.testing.assert_close(got[i].boxes.double(), boxes[i, [r[2] for r in rows]],
                                   atol=1e-5, rtol=0)
