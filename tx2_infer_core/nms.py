"""Class-aware non-maximum suppression on xyxy boxes (pure numpy).

Greedy NMS as Darknet, OpenCV (``cv2.dnn.NMSBoxes``) and torchvision do it: take the best
remaining box, drop every other box of the same class whose IoU with it exceeds the threshold,
repeat. IoU uses continuous coordinates (area = width * height, no +1).
"""
import numpy as np


def box_iou(box, boxes):
    """IoU of one xyxy box against an Nx4 array of xyxy boxes (0 where both areas are 0)."""
    box = np.asarray(box, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    inter_w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    inter_h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = inter_w * inter_h
    area = max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)
    widths = np.clip(boxes[:, 2] - boxes[:, 0], 0, None)
    areas = widths * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms_single_class(boxes, scores, iou_threshold):
    """Indices kept by greedy NMS over boxes of one class, highest score first."""
    order = np.argsort(-np.asarray(scores), kind='stable')
    keep = []
    while order.size:
        best = order[0]
        keep.append(int(best))
        rest = order[1:]
        order = rest[box_iou(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def nms(boxes, scores, class_ids, iou_threshold):
    """Class-aware NMS: kept indices into ``boxes``, sorted by score descending.

    ``boxes`` is Nx4 xyxy, ``scores`` N, ``class_ids`` N (ints). Boxes of different classes never
    suppress each other. A box is suppressed when its IoU with a kept box is above
    ``iou_threshold``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    class_ids = np.asarray(class_ids).reshape(-1)
    if not len(boxes) == len(scores) == len(class_ids):
        raise ValueError(f'nms: {len(boxes)} boxes, {len(scores)} scores and '
                         f'{len(class_ids)} class ids; they must be the same length')
    kept = []
    for cls in np.unique(class_ids):
        members = np.flatnonzero(class_ids == cls)
        kept.append(members[nms_single_class(boxes[members], scores[members], iou_threshold)])
    if not kept:
        return np.zeros(0, dtype=np.int64)
    kept = np.concatenate(kept)
    return kept[np.argsort(-scores[kept], kind='stable')]
