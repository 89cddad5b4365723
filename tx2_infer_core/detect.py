"""Detection pre- and post-processing (numpy + OpenCV), the host steps of ``detector.py``.

``preprocess`` turns a BGR photo into the network's input tensor and a ``Letterbox`` that maps
network-input pixels back to the photo; ``decode`` (see ``heads.py``) turns raw outputs into
boxes; ``to_detections`` maps them back to the photo. ``detector.Detector`` runs a whole frame.

``input_format`` (``graph.meta['input_format']``), missing keys take the YOLO defaults:

- ``color``: 'RGB' or 'BGR', the channel order of the tensor (photos come in BGR).
- ``layout``: 'NCHW' or 'NHWC'.
- ``mean``: None or a per-channel list in the tensor's channel order, subtracted from the
  0..255 pixel values BEFORE scaling: ``x = (pixel - mean) * scale``.
- ``scale``: multiplier (1/255 for YOLO, 1 for Caffe-style classifiers).
- ``resize``: 'letterbox' (keep aspect, pad) or 'stretch' (resize to the input size).
- ``pad_value``: grey level of the letterbox border.

open_nsfw (224x224 NHWC, BGR minus [104, 117, 123], no scaling) is
``{'color': 'BGR', 'layout': 'NHWC', 'mean': [104, 117, 123], 'scale': 1.0,
'resize': 'stretch'}``.
"""
import os
import stat
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from .errors import InputError
from .heads import decode, head_from_outputs  # noqa: F401  (part of this module's API)
from .nms import nms  # noqa: F401  (part of this module's API)

DEFAULT_INPUT_FORMAT = {'color': 'RGB', 'layout': 'NCHW', 'scale': 1 / 255, 'mean': None,
                        'resize': 'letterbox', 'pad_value': 114}


@dataclass
class Detection:
    """One detected object; the box is in ORIGINAL image pixels. A pose head's detection has
    ``keypoints`` (K x 3 float32: x, y in original pixels, visibility 0..1), else None."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    class_id: int
    label: str = ''
    keypoints: Optional[np.ndarray] = field(default=None, compare=False, repr=False)


@dataclass
class Letterbox:
    """Maps network-input pixels back to original pixels: ``x = (x_in - pad_x) / scale``.

    ``scale_y`` is the vertical scale when it differs from ``scale`` (stretch resize);
    None means the same as ``scale``.
    """

    scale: float
    pad_x: float
    pad_y: float
    src_w: int
    src_h: int
    dst_w: int
    dst_h: int
    scale_y: Optional[float] = None


def _check_image(image):
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, 'shape', type(image).__name__)
        raise InputError(f'expected an HxWx3 image, got {shape}')
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f'the image is empty ({image.shape})')


def letterbox(image, size, pad_value=114):
    """Resize keeping the aspect ratio and pad centred to ``size`` = (w, h).

    Returns (HxWx3 uint8 image of the new size, Letterbox).
    """
    _check_image(image)
    dst_w, dst_h = int(size[0]), int(size[1])
    src_h, src_w = image.shape[:2]
    scale = min(dst_w / src_w, dst_h / src_h)
    new_w, new_h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    left, top = (dst_w - new_w) // 2, (dst_h - new_h) // 2
    out = np.full((dst_h, dst_w, 3), pad_value, dtype=np.uint8)
    out[top:top + new_h, left:left + new_w] = resized
    return out, Letterbox(scale, float(left), float(top), src_w, src_h, dst_w, dst_h)


def stretch(image, size):
    """Resize to ``size`` = (w, h) ignoring the aspect ratio. Returns (image, Letterbox)."""
    _check_image(image)
    dst_w, dst_h = int(size[0]), int(size[1])
    src_h, src_w = image.shape[:2]
    resized = cv2.resize(image, (dst_w, dst_h), interpolation=cv2.INTER_LINEAR)
    return resized, Letterbox(dst_w / src_w, 0.0, 0.0, src_w, src_h, dst_w, dst_h,
                              scale_y=dst_h / src_h)


def unletterbox_boxes(boxes_xyxy, lb):
    """Nx4 xyxy boxes in network-input pixels -> original pixels, clipped to the image."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4).copy()
    scale_y = lb.scale_y if lb.scale_y is not None else lb.scale
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - lb.pad_x) / lb.scale
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - lb.pad_y) / scale_y
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, lb.src_w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, lb.src_h)
    return boxes


def resolve_input_format(input_format=None, input_shape=None):
    """``input_format`` with defaults filled in; a missing layout is guessed from the shape."""
    fmt = dict(DEFAULT_INPUT_FORMAT)
    fmt.update({k: v for k, v in (input_format or {}).items() if v is not None or k == 'mean'})
    if 'layout' not in (input_format or {}) and input_shape is not None:
        shape = tuple(input_shape)
        if len(shape) == 4 and shape[3] == 3 and shape[1] != 3:
            fmt['layout'] = 'NHWC'
    for key, allowed in (('color', ('RGB', 'BGR')), ('layout', ('NCHW', 'NHWC')),
                         ('resize', ('letterbox', 'stretch'))):
        if fmt[key] not in allowed:
            raise InputError(f"input_format['{key}'] is {fmt[key]!r}; expected one of {allowed}")
    return fmt


def preprocess(image_bgr, input_shape, input_format=None):
    """BGR photo -> (float32 tensor shaped ``input_shape``, Letterbox). See the module doc."""
    fmt = resolve_input_format(input_format, input_shape)
    shape = tuple(int(d) for d in input_shape)
    if len(shape) != 4:
        raise InputError(f'image input must be 4-D, got shape {shape}')
    batch, channels, height, width = (shape if fmt['layout'] == 'NCHW'
                                      else (shape[0], shape[3], shape[1], shape[2]))
    if batch != 1 or channels != 3:
        raise InputError(f"image input {shape} ({fmt['layout']}) must have batch 1 and 3 "
                         'channels')
    if fmt['resize'] == 'letterbox':
        image, lb = letterbox(image_bgr, (width, height), fmt['pad_value'])
    else:
        image, lb = stretch(image_bgr, (width, height))
    if fmt['layout'] == 'NCHW':
        return planar_tensor(image, fmt), lb
    if fmt['color'] == 'RGB':
        image = image[..., ::-1]
    tensor = image.astype(np.float32)
    if fmt['mean'] is not None:
        tensor -= np.asarray(fmt['mean'], dtype=np.float32)
    tensor *= np.float32(fmt['scale'])
    return np.ascontiguousarray(tensor[None]), lb


def stack_batch(tensors, batch):
    """Per-image (1, ...) tensors -> one (``batch``, ...) tensor; fewer images than ``batch``
    are padded with copies of the last (the engine's shapes are static). InputError when there
    are none or more than ``batch``."""
    if not 1 <= len(tensors) <= batch:
        raise InputError(f'a batch of {len(tensors)} images for an engine of batch {batch}')
    tensors = list(tensors) + [tensors[-1]] * (batch - len(tensors))
    return np.concatenate(tensors)


def image_outputs(outputs, index):
    """The outputs of image ``index`` of a batched run, each as a batch of one."""
    return {name: array[index:index + 1] for name, array in outputs.items()}


def planar_tensor(image, fmt):
    """HxWx3 uint8 BGR -> (1, 3, H, W) float32 ``(pixel - mean) * scale`` in ``fmt``'s colour
    order: one pass per channel plane (20x faster than astype + transpose on 416x416)."""
    planes = cv2.split(image)
    if fmt['color'] == 'RGB':
        planes = planes[::-1]
    out = np.empty((1, 3) + image.shape[:2], np.float32)
    scale = np.float32(fmt['scale'])
    for c, plane in enumerate(planes):
        if fmt['mean'] is None:
            np.multiply(plane, scale, out=out[0, c], dtype=np.float32)
        else:
            np.subtract(plane, np.float32(fmt['mean'][c]), out=out[0, c], dtype=np.float32)
            out[0, c] *= scale
    return out


def label_for(class_id, labels):
    """Class name from ``labels``, or the id as text when there is no name for it."""
    if labels and 0 <= class_id < len(labels):
        return labels[class_id]
    return str(class_id)


def to_detections(boxes, scores, class_ids, lb, head, labels=None):
    """Decoded network-input boxes -> [Detection] in original pixels (letterbox undone).
    A classifier's detections span the whole image."""
    if head.get('type') == 'classifier':
        boxes = np.tile(np.float32([0, 0, lb.src_w, lb.src_h]), (len(scores), 1))
    else:
        boxes = unletterbox_boxes(boxes, lb)
    return make_detections(boxes, scores, class_ids, labels)


def make_detections(boxes, scores, class_ids, labels=None):
    """Boxes already in original pixels, scores and class ids -> [Detection] (named)."""
    return [Detection(float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(s), int(c),
                      label_for(int(c), labels))
            for b, s, c in zip(boxes, scores, class_ids)]


def class_color(class_id):
    """A stable BGR colour for a class id."""
    hue = (int(class_id) * 47) % 180
    hsv = np.uint8([[[hue, 220, 255]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def detection_text(det, track_id=-1, distance=None) -> str:
    """The label drawn on a detection: '#track ' (when tracked), class name or id, score, and
    ' 2.41 m' when its distance is known."""
    text = f'{det.label or det.class_id} {det.score:.2f}'
    if track_id is not None and track_id >= 0:
        text = f'#{int(track_id)} {text}'
    if distance is not None:
        text += f' {distance:.2f} m'
    return text


def draw_detections(image_bgr, detections, track_ids=None, distances=None):
    """A copy of the image with each detection's box and ``detection_text`` drawn.

    ``track_ids`` (one per detection, -1: untracked) colour a tracked box by its ID instead of
    its class; ``distances`` (one per detection, metres or None) add the distance."""
    out = image_bgr.copy()
    thickness = max(1, round(min(out.shape[:2]) / 300))
    for i, det in enumerate(detections):
        track = -1 if track_ids is None else int(track_ids[i])
        color = class_color(track if track >= 0 else det.class_id)
        p1 = (int(round(det.x1)), int(round(det.y1)))
        p2 = (int(round(det.x2)) - 1, int(round(det.y2)) - 1)
        cv2.rectangle(out, p1, p2, color, thickness)
        text = detection_text(det, track, None if distances is None else distances[i])
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(p1[1], th + base)
        cv2.rectangle(out, (p1[0], top - th - base), (p1[0] + tw, top), color, -1)
        cv2.putText(out, text, (p1[0], top - base), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return out


LABELS_MAX_BYTES = 1 << 20


def load_labels(path):
    """Class names, one per line (blank lines skipped), e.g. Darknet's coco.names. A path that
    is not a regular file (a FIFO would block, /dev/zero never ends) or is over
    ``LABELS_MAX_BYTES`` is an ``InputError``, refused before reading."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise InputError(f"labels file '{path}': {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode) or info.st_size > LABELS_MAX_BYTES:
        raise InputError(f"labels file '{path}' is not a regular file of at most "
                         f'{LABELS_MAX_BYTES} bytes')
    with open(path, encoding='utf-8', errors='replace') as f:
        return [line.strip() for line in f.read(LABELS_MAX_BYTES).splitlines() if line.strip()]
