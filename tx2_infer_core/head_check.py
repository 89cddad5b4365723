"""A detector head description (``graph.meta['head']``, see ``heads.py``) checked against the
model's output shapes, so a crafted plan's head is refused at load, not by a ``TypeError`` in
the decoder on the first frame.

``head_problem`` returns why a head cannot decode the outputs (None when it can): types,
class count (and a pose head's keypoint count) against the output shape, Darknet layers
(output, anchors [[w, h], ...] of positive finite numbers, strides and scale_x_y positive).
An output's first dim is the batch: 1, or N for a plan built for N images.
"""
import math

from tx2_infer_core.heads import CANDIDATES, MAX_KEYPOINTS

SINGLE_OUTPUT = ('yolov8', 'yolov5', 'yolov8_pose', 'classifier')
# Extra columns per row before the class scores.
BOX_COLUMNS = {'yolov8': 4, 'yolov5': 5, 'yolov8_pose': 4}


def _positive_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x > 0


def _positive_real(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) \
        and x > 0


def _output(head, shapes):
    """(name, shape) of a single-output head's output, or a problem string."""
    name = head.get('output')
    if name is None:
        if len(shapes) != 1:
            return f"the model has outputs {sorted(shapes)}: the head must name one ('output')"
        name = next(iter(shapes))
    if not isinstance(name, str) or name not in shapes:
        return f'output {str(name)[:60]!r} is not among the outputs {sorted(shapes)}'
    return name, tuple(shapes[name])


def _single_problem(head, shapes):
    found = _output(head, shapes)
    if isinstance(found, str):
        return found
    name, shape = found
    if not shape or not _positive_int(shape[0]):
        return f"output '{name}' {list(shape)} has no batch (first dim)"
    if head['type'] == 'classifier':
        if not _positive_int(head.get('top_k', 5)):
            return f"top_k {head.get('top_k')!r} is not a positive int"
        return None
    classes = head.get('num_classes')
    if not _positive_int(classes):
        return f'num_classes {str(classes)[:40]!r} is not a positive int'
    width = classes + BOX_COLUMNS[head['type']]
    if head['type'] == 'yolov8_pose':
        keypoints = head.get('num_keypoints')
        if not (_positive_int(keypoints) and keypoints <= MAX_KEYPOINTS):
            return f'num_keypoints {str(keypoints)[:40]!r} is not an int in 1..{MAX_KEYPOINTS}'
        width += 3 * keypoints
    if len(shape) != 3 or width not in shape[1:]:
        return (f"{head['type']} head with {classes} classes expects output '{name}' "
                f'[1, {width}, A] or [1, A, {width}], got {list(shape)}')
    return None


def _layer_problem(k, layer, classes, shapes):
    where = f'layers[{k}]'
    if not isinstance(layer, dict):
        return f'{where} is not an object'
    name, anchors = layer.get('output'), layer.get('anchors')
    if not isinstance(name, str) or name not in shapes:
        return f'{where}.output {str(name)[:60]!r} is not among the outputs {sorted(shapes)}'
    if not (isinstance(anchors, list) and anchors and all(
            isinstance(a, list) and len(a) == 2 and all(map(_positive_real, a))
            for a in anchors)):
        return f'{where}.anchors {str(anchors)[:60]} is not a list of [w, h] > 0'
    stride = layer.get('stride')
    strides = stride if isinstance(stride, list) and len(stride) == 2 else [stride]
    if not all(map(_positive_real, strides)):
        return f'{where}.stride {str(stride)[:40]} is not positive (a number or [x, y])'
    if not _positive_real(layer.get('scale_x_y', 1.0)):
        return f"{where}.scale_x_y {layer.get('scale_x_y')!r} is not a positive number"
    shape, channels = tuple(shapes[name]), len(anchors) * (5 + classes)
    batch = shape[0] if shape and _positive_int(shape[0]) else 1
    if len(shape) != 4 or shape[0] < 1 or shape[1] != channels:
        return (f"{where}: {len(anchors)} anchors and {classes} classes expect output "
                f"'{name}' [{batch}, {channels}, H, W], got {list(shape)}")
    return None


def head_problem(head, shapes):
    """Why ``head`` cannot decode outputs of ``shapes`` ({name: shape}), or None."""
    if not isinstance(head, dict):
        return f'is not an object: {str(head)[:60]}'
    kind = head.get('type')
    if kind == 'none':
        return None
    if kind in SINGLE_OUTPUT:
        return _single_problem(head, shapes)
    if kind not in CANDIDATES:
        return f"type {str(kind)[:40]!r} is not one of none, {', '.join(sorted(CANDIDATES))}, " \
            'classifier'
    classes, layers = head.get('num_classes'), head.get('layers')
    if not _positive_int(classes):
        return f'num_classes {str(classes)[:40]!r} is not a positive int'
    if not isinstance(layers, list) or not layers:
        return 'layers is not a non-empty list'
    for k, layer in enumerate(layers):
        problem = _layer_problem(k, layer, classes, shapes)
        if problem:
            return problem
    return None
