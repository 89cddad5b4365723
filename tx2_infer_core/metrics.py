"""Detection accuracy against a reference detector: mAP@0.5 (pure numpy).

The reference's detections (e.g. ONNX Runtime FP32 on the same photos) are the ground truth;
ours are ranked by score over all images, matched greedily (each ground-truth box at most
once, same class, IoU >= 0.5), and the area under the precision envelope is averaged over the
classes present in the ground truth (all-point interpolation, as VOC 2010+ and COCO's 101
points approximate).
"""
import numpy as np

from .nms import box_iou


def _as_rows(dets):
    """[[x1, y1, x2, y2, score, class], ...] -> float64 array [N, 6]."""
    return np.asarray(dets, dtype=np.float64).reshape(-1, 6)


def average_precision(recall, precision) -> float:
    """Area under the monotone precision envelope of a precision/recall curve."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[1.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def _class_ap(ours, truth, cls, iou_threshold):
    """AP of class ``cls``; ``ours``/``truth``: per image [N, 6] arrays."""
    gt = [t[t[:, 5] == cls] for t in truth]
    n_gt = sum(len(g) for g in gt)
    ranked = [(d[4], i, d[:4]) for i, o in enumerate(ours) for d in o[o[:, 5] == cls]]
    ranked.sort(key=lambda item: -item[0])
    used = [np.zeros(len(g), bool) for g in gt]
    hits = np.zeros(len(ranked))
    for k, (_, image, box) in enumerate(ranked):
        if not len(gt[image]):
            continue
        ious = np.where(used[image], -1.0, box_iou(box, gt[image][:, :4]))
        best = int(np.argmax(ious))
        if ious[best] >= iou_threshold:
            used[image][best] = True
            hits[k] = 1
    tp = np.cumsum(hits)
    recall = tp / max(n_gt, 1)
    precision = tp / np.arange(1, len(ranked) + 1)
    return average_precision(recall, precision)


def map50(ours, truth, iou_threshold=0.5) -> float:
    """mAP@``iou_threshold`` of ``ours`` against ``truth``, both lists (one item per image)
    of detections ``[x1, y1, x2, y2, score, class]``. 1.0 when neither has any box."""
    ours = [_as_rows(d) for d in ours]
    truth = [_as_rows(d) for d in truth]
    classes = sorted({int(c) for t in truth for c in t[:, 5]})
    if not classes:
        return 1.0 if not any(len(o) for o in ours) else 0.0
    return float(np.mean([_class_ap(ours, truth, c, iou_threshold) for c in classes]))


def pairing(ours, ref, conf, margin=0.03, iou=0.99):
    """How many of ``ref``'s detections scoring >= conf + margin have a same-class partner
    in ``ours`` at IoU >= ``iou`` ('exact'), only at IoU >= 0.5 with a score within
    ``margin`` ('flip': FP16 reordered two near-equal boxes before NMS), or none ('missing');
    plus the lowest IoU among the exact pairs."""
    ours, ref = _as_rows(ours), _as_rows(ref)
    out = {'exact': 0, 'flip': 0, 'missing': 0, 'min_iou': 1.0}
    for det in ref[ref[:, 4] >= conf + margin]:
        same = ours[ours[:, 5] == det[5]]
        ious = box_iou(det[:4], same[:, :4]) if len(same) else np.zeros(0)
        if len(ious) and ious.max() >= iou:
            out['exact'] += 1
            out['min_iou'] = min(out['min_iou'], float(ious.max()))
        elif len(ious) and np.any((ious >= 0.5) & (np.abs(same[:, 4] - det[4]) <= margin)):
            out['flip'] += 1
        else:
            out['missing'] += 1
    return out
