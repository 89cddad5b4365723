"""Decoding raw network outputs into boxes, scores and class ids (pure numpy).

A ``head`` dict says how to read a model's outputs:

- ``{'type': 'yolov8', 'num_classes': C}``: one output ``[1, 4+C, A]`` (or ``[1, A, 4+C]``),
  rows ``cx, cy, w, h`` then C class scores; anchor-free, DFL already applied in the graph.
- ``{'type': 'yolov5', 'num_classes': C}``: one output ``[1, A, 5+C]``: ``cx, cy, w, h``,
  objectness, C class scores (sigmoids applied in the graph). Score = objectness * class score.
- ``{'type': 'darknet_yolo', 'num_classes': C, 'layers': [{'output': name, 'anchors':
  [[w, h], ...], 'stride': 32, 'scale_x_y': 1.0}, ...]}``: each output is the raw conv map
  ``[1, len(anchors)*(5+C), H, W]`` feeding a Darknet ``[yolo]`` layer. Sigmoid on x, y,
  objectness and classes, exp on w, h times the anchor (anchors in network-input pixels).
- ``{'type': 'classifier', 'top_k': 5, 'softmax': False}``: one output of class scores.
- ``{'type': 'yolov8_pose', 'num_classes': C, 'num_keypoints': K}``: one output
  ``[1, 4+C+3K, A]`` (or ``[1, A, 4+C+3K]``): a YOLOv8 box and class scores, then K keypoints
  (x, y in network-input pixels, visibility); ``decode`` gives the boxes, ``heads_pose`` the
  keypoints of the same rows. Recognised from an ONNX's ``kpt_shape`` metadata (Ultralytics).

Any head may name its output with ``'output'`` (needed when the model has several outputs).
Boxes come out as xyxy in network-input pixels. Each anchor keeps its best class (single label).
"""
import numpy as np

from .detect_params import DEFAULTS
from .errors import ModelFormatError
from .nms import nms

MAX_CANDIDATES = 30000   # boxes entering NMS at most (the best by score), as Ultralytics does
MAX_KEYPOINTS = 1000     # keypoints a pose head's object may have (COCO people: 17)


def sigmoid(x):
    """Logistic function, overflow-free."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float32)))


def cxcywh_to_xyxy(boxes):
    """Nx4 centre/size boxes to Nx4 corner boxes."""
    boxes = np.asarray(boxes, dtype=np.float32)
    half = boxes[:, 2:4] / 2
    return np.concatenate([boxes[:, 0:2] - half, boxes[:, 0:2] + half], axis=1)


def _single_output(outputs, head):
    name = head.get('output')
    if name is not None:
        if name not in outputs:
            raise ModelFormatError(f"head output '{name}' is not among the outputs "
                                   f"{sorted(outputs)}")
        array = outputs[name]
    elif len(outputs) == 1:
        array = next(iter(outputs.values()))
    else:
        raise ModelFormatError(f"the model has outputs {sorted(outputs)}; the "
                               f"'{head['type']}' head must name one with 'output'")
    array = np.asarray(array, dtype=np.float32)
    if array.shape[0] != 1:
        raise ModelFormatError(f'decode handles batch 1; output has shape {array.shape}')
    return array[0]


def _rows(array, width, head_type):
    """An output [K, A] or [A, K] as rows [A, K] where K == width."""
    if array.ndim == 2 and array.shape[0] == width and array.shape[1] != width:
        return array.T
    if array.ndim == 2 and array.shape[1] == width:
        return array
    raise ModelFormatError(f"'{head_type}' head expects an output [1, {width}, A] or "
                           f"[1, A, {width}], got {(1,) + array.shape}")


def head_rows(outputs, head, width):
    """A single-output head's output as rows [A, width] (either layout)."""
    return _rows(_single_output(outputs, head), width, head['type'])


def yolov8_candidates(outputs, head, min_score=0.0):
    """YOLOv8 output -> (cxcywh boxes [A, 4], class scores [A, C])."""
    rows = _rows(_single_output(outputs, head), 4 + head['num_classes'], 'yolov8')
    return rows[:, :4], rows[:, 4:]


def yolov5_candidates(outputs, head, min_score=0.0):
    """YOLOv5 output -> (cxcywh boxes [A, 4], objectness * class scores [A, C])."""
    rows = _rows(_single_output(outputs, head), 5 + head['num_classes'], 'yolov5')
    return rows[:, :4], rows[:, 4:5] * rows[:, 5:]


def darknet_yolo_layer(raw, anchors, stride, num_classes, scale_x_y=1.0, min_objectness=0.0):
    """One Darknet [yolo] layer: raw conv map [1, na*(5+C), H, W] -> decoded rows.

    Returns (cxcywh boxes [H*W*na, 4] in network-input pixels, objectness [H*W*na],
    class probabilities [H*W*na, C]); rows run over (y, x, anchor), as OpenCV orders them.
    ``stride`` is a number or (stride_x, stride_y). Rows whose objectness is below
    ``min_objectness`` are left out (their class probabilities are never computed).
    """
    raw = np.asarray(raw, dtype=np.float32)
    num_anchors = len(anchors)
    if raw.ndim != 4 or raw.shape[0] != 1 or raw.shape[1] != num_anchors * (5 + num_classes):
        raise ModelFormatError(f'darknet yolo layer with {num_anchors} anchors and '
                               f'{num_classes} classes expects [1, '
                               f'{num_anchors * (5 + num_classes)}, H, W], got {raw.shape}')
    height, width = raw.shape[2:]
    maps = raw[0].reshape(num_anchors, 5 + num_classes, height, width).transpose(2, 3, 0, 1)
    stride_x, stride_y = np.broadcast_to(np.asarray(stride, dtype=np.float32), (2,))
    grid_y, grid_x = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
    offset = (scale_x_y - 1.0) / 2
    cx = (sigmoid(maps[..., 0]) * scale_x_y - offset + grid_x[:, :, None]) * stride_x
    cy = (sigmoid(maps[..., 1]) * scale_x_y - offset + grid_y[:, :, None]) * stride_y
    anchors = np.asarray(anchors, dtype=np.float32)
    w = np.exp(maps[..., 2]) * anchors[:, 0]
    h = np.exp(maps[..., 3]) * anchors[:, 1]
    boxes = np.stack([cx, cy, w, h], axis=-1).reshape(-1, 4)
    objectness = sigmoid(maps[..., 4]).reshape(-1)
    keep = np.flatnonzero(objectness >= min_objectness)
    probs = sigmoid(maps[..., 5:].reshape(-1, num_classes)[keep])
    return boxes[keep], objectness[keep], probs


def darknet_yolo_candidates(outputs, head, min_score=0.0):
    """All Darknet yolo layers -> (cxcywh boxes [N, 4], objectness * class prob [N, C]).

    A score is objectness * probability <= objectness, so rows with objectness below
    ``min_score`` can never reach it and are dropped before their classes are decoded."""
    all_boxes, all_scores = [], []
    for layer in head['layers']:
        if layer['output'] not in outputs:
            raise ModelFormatError(f"darknet yolo layer output '{layer['output']}' is not "
                                   f"among the outputs {sorted(outputs)}")
        boxes, objectness, probs = darknet_yolo_layer(
            outputs[layer['output']], layer['anchors'], layer['stride'], head['num_classes'],
            layer.get('scale_x_y', 1.0), min_score)
        all_boxes.append(boxes)
        all_scores.append(objectness[:, None] * probs)
    return np.concatenate(all_boxes), np.concatenate(all_scores)


def yolov8_pose_candidates(outputs, head, min_score=0.0):
    """YOLOv8 pose output -> (cxcywh boxes [A, 4], class scores [A, C]); keypoints ignored."""
    width = 4 + head['num_classes'] + 3 * head['num_keypoints']
    rows = _rows(_single_output(outputs, head), width, 'yolov8_pose')
    return rows[:, :4], rows[:, 4:4 + head['num_classes']]


def classifier_scores(outputs, head):
    """Class scores [C] of a classifier output (softmax applied when head['softmax'])."""
    scores = _single_output(outputs, head).reshape(-1)
    if head.get('softmax'):
        exps = np.exp(scores - scores.max())
        scores = exps / exps.sum()
    return scores


CANDIDATES = {
    'yolov8': yolov8_candidates,
    'yolov5': yolov5_candidates,
    'darknet_yolo': darknet_yolo_candidates,
    'yolov8_pose': yolov8_pose_candidates,
}


def _class_mask(num_classes, classes):
    mask = np.ones(num_classes, dtype=bool)
    if classes is not None:
        mask[:] = False
        mask[[c for c in classes if 0 <= c < num_classes]] = True
    return mask


def _decode_classifier(outputs, head, max_detections, classes):
    scores = classifier_scores(outputs, head)
    scores = np.where(_class_mask(scores.size, classes), scores, -np.inf)
    top_k = min(int(head.get('top_k', 5)), max_detections, int(np.isfinite(scores).sum()))
    ids = np.argsort(-scores, kind='stable')[:top_k]
    return np.zeros((top_k, 4), np.float32), scores[ids].astype(np.float32), ids.astype(np.int64)


def check_head(head) -> None:
    """Raise ModelFormatError unless ``decode`` knows ``head``'s type."""
    head_type = head.get('type')
    if head_type != 'classifier' and head_type not in CANDIDATES:
        raise ModelFormatError(f"unknown detector head type '{head_type}'; known: "
                               f"{', '.join(sorted(CANDIDATES) + ['classifier'])}")


def decode(outputs, head, conf_threshold=DEFAULTS.conf_threshold,
           iou_threshold=DEFAULTS.iou_threshold, max_detections=DEFAULTS.max_detections,
           classes=None):
    """Raw outputs -> (boxes [N, 4] xyxy in network-input pixels, scores [N], class_ids [N]).

    Candidates scoring below ``conf_threshold`` are dropped, ``classes`` (ids) filters the
    classes considered, class-aware NMS at ``iou_threshold`` runs, and the best
    ``max_detections`` are kept, scores descending. A classifier head gives its top-k classes
    (threshold not applied) with all-zero boxes.
    """
    return decode_rows(outputs, head, conf_threshold, iou_threshold, max_detections,
                       classes)[:3]


def decode_rows(outputs, head, conf_threshold=DEFAULTS.conf_threshold,
                iou_threshold=DEFAULTS.iou_threshold, max_detections=DEFAULTS.max_detections,
                classes=None):
    """``decode`` and, fourth, each detection's row among the head's candidates [N] (a
    single-output head: its anchor, e.g. where a pose head's keypoints are)."""
    check_head(head)
    if head['type'] == 'classifier':
        boxes, scores, ids = _decode_classifier(outputs, head, max_detections, classes)
        return boxes, scores, ids, ids
    boxes, class_scores = CANDIDATES[head['type']](outputs, head, conf_threshold)
    class_scores = np.where(_class_mask(class_scores.shape[1], classes), class_scores, 0)
    class_ids = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(class_ids)), class_ids]
    chosen = np.flatnonzero(scores >= conf_threshold)
    chosen = chosen[np.argsort(-scores[chosen], kind='stable')[:MAX_CANDIDATES]]
    boxes = cxcywh_to_xyxy(boxes[chosen])
    scores, class_ids = scores[chosen], class_ids[chosen]
    keep = nms(boxes, scores, class_ids, iou_threshold)[:max_detections]
    return (boxes[keep], scores[keep].astype(np.float32), class_ids[keep].astype(np.int64),
            chosen[keep])


def head_from_outputs(output_shapes, num_keypoints=0):
    """Guess the head of an ONNX model from its output shapes {name: shape}.

    With ``num_keypoints`` K > 0 (the model says it is a pose model), one output
    ``[1, 4+C+3K, A]`` with C >= 1 is a YOLOv8 pose head. Else one output ``[1, K, A]`` with
    K < A is YOLOv8 (C = K - 4); ``[1, A, K]`` with A > K is YOLOv5 (C = K - 5); ``[1, C]`` or
    ``[1, C, 1, 1]`` is a classifier. Anything else (e.g. Darknet raw maps, which need
    anchors) raises ModelFormatError: give the head explicitly. The batch (first dim) may be
    any N >= 1: a plan built for N images has the head of its batch-1 build.
    """
    shapes = {name: tuple(shape) for name, shape in output_shapes.items()}
    if len(shapes) == 1:
        name, shape = next(iter(shapes.items()))
        if num_keypoints > 0:
            return _pose_head(name, shape, num_keypoints)
        if len(shape) == 3 and shape[0] >= 1 and 4 < shape[1] < shape[2]:
            return {'type': 'yolov8', 'num_classes': shape[1] - 4, 'output': name}
        if len(shape) == 3 and shape[0] >= 1 and 5 < shape[2] < shape[1]:
            return {'type': 'yolov5', 'num_classes': shape[2] - 5, 'output': name}
        if len(shape) in (2, 4) and shape[0] >= 1 and all(d == 1 for d in shape[2:]):
            return {'type': 'classifier', 'output': name}
    raise ModelFormatError(f'cannot tell the detector head from the output shapes {shapes}; '
                           "set graph.meta['head'] (see tx2_infer_core/heads.py)")


def meta_keypoints(meta) -> int:
    """K of a pose model's ``meta['kpt_shape']`` [K, 3] (x, y, visibility), else 0."""
    shape = meta.get('kpt_shape')
    if isinstance(shape, list) and len(shape) == 2 and shape[1] == 3 and \
            isinstance(shape[0], int) and 0 < shape[0] <= MAX_KEYPOINTS:
        return shape[0]
    return 0


def _pose_head(name, shape, num_keypoints):
    classes = shape[1] - 4 - 3 * num_keypoints if len(shape) == 3 else 0
    if shape[0] < 1 or classes < 1 or shape[1] >= shape[2]:
        raise ModelFormatError(f'a pose model with {num_keypoints} keypoints a person needs '
                               f"one output [1, 4 + classes + {3 * num_keypoints}, anchors]; "
                               f"'{name}' is {list(shape)}")
    return {'type': 'yolov8_pose', 'num_classes': classes, 'num_keypoints': num_keypoints,
            'output': name}
