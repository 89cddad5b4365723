"""YOLOv8/YOLO11 pose heads: per-person boxes and keypoints (pure numpy).

The head (Ultralytics' export form, ``tx2_infer_core.ultralytics_pt``) is one tensor
``[1, 4 + nc + 3 * K, A]``: per anchor a box (cx, cy, w, h in network-input pixels), ``nc``
class scores (already sigmoid), then K keypoints as (x, y, visibility) with x, y in input pixels
and visibility in [0, 1]. Decoding: keep anchors whose best class score reaches the threshold,
class-aware NMS, then boxes and keypoints mapped back through the letterbox to image pixels.
COCO's 17 keypoints (``COCO_KEYPOINTS``) and the skeleton the drawing uses are below.

``decode_pose`` is the CLI's (``run --pose``) whole decode. The ``Detector`` decodes a
``yolov8_pose`` head (``heads.py``) like a YOLOv8 one (``heads.decode_rows``) and gives each
``Detection`` its keypoints with ``attach_keypoints``.
"""
from dataclasses import dataclass

import numpy as np

from .detect import unletterbox_boxes
from .errors import InputError
from .heads import cxcywh_to_xyxy, head_rows
from .nms import nms

COCO_KEYPOINTS = ('nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
                  'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
                  'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle',
                  'right_ankle')
# Pairs of COCO keypoint indices joined by a limb (Ultralytics' drawing order).
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
                 (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4),
                 (3, 5), (4, 6))


@dataclass
class PoseDetection:
    """One person: the box (x1, y1, x2, y2) and ``keypoints`` (K x 3: x, y, visibility) in
    ORIGINAL image pixels."""

    box: np.ndarray
    score: float
    class_id: int
    keypoints: np.ndarray


def split_pose_output(output, num_classes, num_keypoints):
    """``[1, 4 + nc + 3K, A]`` -> (A x 4 cxcywh, A x nc scores, A x K x 3 keypoints)."""
    out = np.asarray(output, dtype=np.float32)
    rows = 4 + num_classes + 3 * num_keypoints
    if out.ndim != 3 or out.shape[0] != 1 or out.shape[1] != rows:
        raise InputError(f'pose head: expected [1, {rows}, anchors] for {num_classes} classes '
                         f'and {num_keypoints} keypoints, got {list(out.shape)}')
    table = out[0].T
    kpts = table[:, 4 + num_classes:].reshape(-1, num_keypoints, 3)
    return table[:, :4], table[:, 4:4 + num_classes], kpts


def unletterbox_keypoints(keypoints, lb):
    """N x K x 3 keypoints in network-input pixels -> original pixels (x, y clipped)."""
    kpts = np.asarray(keypoints, dtype=np.float32).copy()
    scale_y = lb.scale_y if lb.scale_y is not None else lb.scale
    kpts[..., 0] = ((kpts[..., 0] - lb.pad_x) / lb.scale).clip(0, lb.src_w)
    kpts[..., 1] = ((kpts[..., 1] - lb.pad_y) / scale_y).clip(0, lb.src_h)
    return kpts


def decode_pose(output, lb, num_classes=1, num_keypoints=17, conf_threshold=0.25,
                iou_threshold=0.45, max_detections=100):
    """Pose head output -> [PoseDetection], best score first, in image pixels."""
    boxes, scores, kpts = split_pose_output(output, num_classes, num_keypoints)
    class_ids = scores.argmax(1)
    best = scores[np.arange(len(scores)), class_ids]
    keep = np.flatnonzero(best >= conf_threshold)
    xyxy = cxcywh_to_xyxy(boxes[keep])
    order = keep[nms(xyxy, best[keep], class_ids[keep], iou_threshold)][:max_detections]
    image_boxes = unletterbox_boxes(cxcywh_to_xyxy(boxes[order]), lb)
    image_kpts = unletterbox_keypoints(kpts[order], lb)
    return [PoseDetection(image_boxes[i], float(best[j]), int(class_ids[j]), image_kpts[i])
            for i, j in enumerate(order)]


def keypoints_of_rows(outputs, head, rows):
    """A ``yolov8_pose`` head's keypoints of candidate ``rows`` (``heads.decode_rows``' fourth
    result) -> N x K x 3 (x, y in network-input pixels, visibility)."""
    classes, count = head['num_classes'], head['num_keypoints']
    table = head_rows(outputs, head, 4 + classes + 3 * count)
    return table[np.asarray(rows, dtype=np.int64), 4 + classes:].reshape(-1, count, 3)


def attach_keypoints(detections, outputs, head, rows, lb):
    """Set each ``Detection``'s ``keypoints`` (K x 3, image pixels) from its row."""
    kpts = unletterbox_keypoints(keypoints_of_rows(outputs, head, rows), lb)
    for det, points in zip(detections, kpts):
        det.keypoints = points
    return detections
