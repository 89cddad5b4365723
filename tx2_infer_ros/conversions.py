"""Pure conversions between ROS messages and numpy/OpenCV images and detections.

No rclpy here: the functions read and fill message objects through their fields only, so they
work on ``sensor_msgs`` messages and on anything shaped like them. This is all a cv_bridge does
for a detector, written for our encodings and tested here.

``image_to_bgr`` and ``compressed_to_bgr`` raise ``ConversionError`` (and nothing else) whose
``cause`` names the drop-counter the node bumps: 'encoding', 'size', 'empty' or 'decode'. A JPEG
or PNG is refused from its header, before decoding, when it claims more than ``max_pixels``.
``check_image`` and ``check_compressed`` are their header checks alone (no pixel is read, no
decode): the node runs them as a frame arrives, so a malformed frame is counted by its cause
even when a newer frame would have replaced it.
"""
import cv2
import numpy as np

from tx2_infer_core.image_header import header_size, pixel_problem
from tx2_infer_core.limits import DEFAULT_LIMITS
from tx2_infer_ros.cdr import KEYPOINT_PREFIX, KEYPOINT_THRESHOLD, published_keypoints

# Largest image (width * height) converted or decoded; the functions' ``max_pixels`` changes it.
MAX_IMAGE_PIXELS = DEFAULT_LIMITS.max_image_pixels
# Encodings of two pixels in four bytes (4:2:2): the width must be even.
YUV422_ENCODINGS = ('yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv')

# encoding -> (channels, bytes per channel)
RAW_ENCODINGS = {
    'bgr8': (3, 1), 'rgb8': (3, 1), 'bgra8': (4, 1), 'rgba8': (4, 1), 'mono8': (1, 1),
    'mono16': (1, 2), 'yuv422': (2, 1), 'uyvy': (2, 1), 'yuv422_yuy2': (2, 1), 'yuyv': (2, 1),
}
_TO_BGR = {
    'rgb8': cv2.COLOR_RGB2BGR, 'bgra8': cv2.COLOR_BGRA2BGR, 'rgba8': cv2.COLOR_RGBA2BGR,
    'mono8': cv2.COLOR_GRAY2BGR, 'yuv422': cv2.COLOR_YUV2BGR_UYVY,
    'uyvy': cv2.COLOR_YUV2BGR_UYVY, 'yuv422_yuy2': cv2.COLOR_YUV2BGR_YUY2,
    'yuyv': cv2.COLOR_YUV2BGR_YUY2,
}
_FROM_BGR = {
    'rgb8': cv2.COLOR_BGR2RGB, 'bgra8': cv2.COLOR_BGR2BGRA, 'rgba8': cv2.COLOR_BGR2RGBA,
    'mono8': cv2.COLOR_BGR2GRAY, 'yuv422': cv2.COLOR_BGR2YUV_UYVY,
    'uyvy': cv2.COLOR_BGR2YUV_UYVY, 'yuv422_yuy2': cv2.COLOR_BGR2YUV_YUY2,
    'yuyv': cv2.COLOR_BGR2YUV_YUY2,
}
COMPRESSED_FORMATS = ('jpeg', 'png')


class ConversionError(ValueError):
    """A message that cannot be turned into an image; ``cause`` is the drop counter's name."""

    def __init__(self, cause, message):
        super().__init__(message)
        self.cause = cause


def _check_pixels(width, height, max_pixels, what):
    problem = pixel_problem(width, height, max_pixels, what)
    if problem:
        raise ConversionError('size', problem)


def check_image(msg, max_pixels=MAX_IMAGE_PIXELS):
    """Header checks of a ``sensor_msgs/Image`` (no pixel read): a known encoding, a non-zero
    size within ``max_pixels``, an even width for 4:2:2, ``step`` >= a row and data of
    height * step bytes. Returns (encoding, height, width, step); raises ``ConversionError``."""
    encoding = msg.encoding.lower()
    if encoding not in RAW_ENCODINGS:
        raise ConversionError('encoding', f"unsupported image encoding '{msg.encoding}'; "
                              f"supported: {', '.join(sorted(RAW_ENCODINGS))}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ConversionError('empty', f'zero-size image ({width}x{height})')
    _check_pixels(width, height, max_pixels, f'{encoding} image')
    if encoding in YUV422_ENCODINGS and width % 2:
        raise ConversionError('size', f'{encoding} image of odd width {width}: 4:2:2 pixels '
                              'come in pairs')
    channels, depth = RAW_ENCODINGS[encoding]
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ConversionError('size', f'step {step} is less than width*channels*depth = '
                              f'{row_bytes} for {width}x{height} {encoding}')
    if len(msg.data) != height * step:
        raise ConversionError('size', f'data has {len(msg.data)} bytes, expected '
                              f'height*step = {height}*{step} = {height * step}')
    return encoding, height, width, step


def _raw_view(msg, max_pixels=MAX_IMAGE_PIXELS):
    """Zero-copy (height, width, channels) view of ``msg.data``, honouring ``msg.step``."""
    encoding, height, width, step = check_image(msg, max_pixels)
    channels, depth = RAW_ENCODINGS[encoding]
    data = np.frombuffer(msg.data, dtype=np.uint8)
    rows = data.reshape(height, step)[:, :width * channels * depth]
    if depth == 2:
        dtype = np.dtype('>u2' if msg.is_bigendian else '<u2')
        return rows.view(dtype).reshape(height, width, channels), encoding
    return rows.reshape(height, width, channels), encoding


def image_to_bgr(msg, max_pixels=MAX_IMAGE_PIXELS):
    """``sensor_msgs/Image`` -> HxWx3 uint8 BGR (a zero-copy view for bgr8 with no padding).

    16-bit mono keeps its 8 most significant bits. Raises ``ConversionError`` ('size' for an
    image over ``max_pixels`` or an odd-width 4:2:2 image).
    """
    pixels, encoding = _raw_view(msg, max_pixels)
    if encoding == 'bgr8':
        return pixels
    try:
        if encoding == 'mono16':
            return cv2.cvtColor((pixels[..., 0] >> 8).astype(np.uint8), cv2.COLOR_GRAY2BGR)
        if encoding == 'mono8':
            pixels = pixels[..., 0]
        return cv2.cvtColor(np.ascontiguousarray(pixels), _TO_BGR[encoding])
    except cv2.error as exc:
        raise ConversionError('decode', f'OpenCV cannot convert this {encoding} image: '
                              f'{str(exc).strip()}') from None


def image_size(data: bytes):
    """(format, width, height) that a JPEG or PNG's header claims, read without decoding;
    the size is None when the header has none. Raises ``ConversionError`` for other data."""
    fmt, width, height = header_size(data)
    if fmt is None:
        raise ConversionError('decode', f'compressed data is neither JPEG nor PNG '
                              f'(starts with {bytes(data[:8])!r})')
    return fmt, width, height


def check_compressed(msg, max_pixels=MAX_IMAGE_PIXELS):
    """Header checks of a ``sensor_msgs/CompressedImage`` (no decode): data present, a JPEG
    or PNG (by its bytes) whose header holds a size within ``max_pixels``. Returns (data
    bytes, format); raises ``ConversionError`` ('empty', 'decode' or 'size')."""
    raw = bytes(msg.data)
    if not raw:
        raise ConversionError('empty', 'compressed image has no data')
    fmt, width, height = image_size(raw)
    if width is None:
        raise ConversionError('decode', f'{fmt} header has no image size ({len(raw)} bytes)')
    _check_pixels(width, height, max_pixels, f'{fmt} image')
    return raw, fmt


def compressed_to_bgr(msg, max_pixels=MAX_IMAGE_PIXELS):
    """``sensor_msgs/CompressedImage`` (jpeg or png) -> HxWx3 uint8 BGR.

    Raises ``ConversionError``: 'empty' for no data, 'size' when the header claims more than
    ``max_pixels`` (checked before decoding), 'decode' when it is not a JPEG or PNG or OpenCV
    cannot decode it.
    """
    raw, fmt = check_compressed(msg, max_pixels)
    data = np.frombuffer(raw, dtype=np.uint8)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ConversionError('decode', f'OpenCV cannot decode this {fmt} image: '
                              f'{str(exc).strip()}') from None
    if image is None or image.size == 0:
        raise ConversionError('decode', f"cannot decode compressed image (format "
                              f"'{msg.format}', {data.size} bytes)")
    return image


def bgr_to_image_fields(image_bgr, encoding, row_padding=0):
    """HxWx3 BGR -> (height, width, step, data bytes) of an Image in ``encoding``.

    ``row_padding`` extra zero bytes end each row (``step`` > width * pixel size). mono16
    stores each grey level g as g * 257. Used by publishers and tests.
    """
    if encoding not in RAW_ENCODINGS:
        raise ConversionError('encoding', f"unsupported image encoding '{encoding}'")
    height, width = image_bgr.shape[:2]
    if encoding == 'bgr8':
        pixels = image_bgr
    elif encoding == 'mono16':
        grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY).astype('<u2') * np.uint16(257)
        pixels = grey.view(np.uint8)
    else:
        pixels = cv2.cvtColor(image_bgr, _FROM_BGR[encoding])
    rows = np.ascontiguousarray(pixels).reshape(height, -1)
    if row_padding:
        rows = np.pad(rows, ((0, 0), (0, row_padding)))
    return height, width, rows.shape[1], rows.tobytes()


def fill_image(msg, image_bgr, encoding='bgr8', row_padding=0):
    """Fill a ``sensor_msgs/Image`` with ``image_bgr`` in ``encoding``; returns ``msg``."""
    msg.height, msg.width, msg.step, data = bgr_to_image_fields(image_bgr, encoding,
                                                                row_padding)
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.data = data
    return msg


def fill_compressed(msg, image_bgr, fmt='jpeg', quality=90):
    """Fill a ``sensor_msgs/CompressedImage`` with ``image_bgr`` encoded as jpeg or png."""
    if fmt not in COMPRESSED_FORMATS:
        raise ConversionError('encoding', f"unsupported compressed format '{fmt}'; "
                              f"supported: {', '.join(COMPRESSED_FORMATS)}")
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt == 'jpeg' else []
    ok, buf = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png', image_bgr, params)
    if not ok:
        raise ConversionError('decode', f'OpenCV could not encode a {fmt} image')
    msg.format = fmt
    msg.data = buf.tobytes()
    return msg


def fill_detection_array(array_msg, detections, header, msg_types, track_ids=None,
                         keypoint_threshold=KEYPOINT_THRESHOLD):
    """Fill a ``vision_msgs/Detection2DArray`` from ``[Detection]`` (original-pixel boxes).

    ``msg_types`` gives the classes (``Detection2D``, ``ObjectHypothesisWithPose``), e.g. the
    ``vision_msgs.msg`` module. Each detection: bbox centre and size in pixels, a first
    hypothesis whose ``class_id`` is the numeric class id as text and whose ``score`` is the
    confidence, then (a pose model) one per keypoint whose visibility reaches
    ``keypoint_threshold``: ``class_id`` 'keypoint/<index>', ``score`` the visibility,
    ``pose.pose.position`` (x, y, 0) in pixels. ``id`` is the detection's track ID as text
    (``track_ids``, one per detection; -1 or no ``track_ids``: empty). Returns ``array_msg``.
    """
    array_msg.header = header
    out = []
    for i, det in enumerate(detections):
        d = msg_types.Detection2D()
        d.header = header
        if track_ids is not None and track_ids[i] >= 0:
            d.id = str(int(track_ids[i]))
        d.bbox.center.position.x = (det.x1 + det.x2) / 2.0
        d.bbox.center.position.y = (det.y1 + det.y2) / 2.0
        d.bbox.center.theta = 0.0
        d.bbox.size_x = float(det.x2 - det.x1)
        d.bbox.size_y = float(det.y2 - det.y1)
        hyp = msg_types.ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(int(det.class_id))
        hyp.hypothesis.score = float(det.score)
        d.results = [hyp] + [keypoint_hypothesis(msg_types, *point)
                             for point in published_keypoints(det, keypoint_threshold)]
        out.append(d)
    array_msg.detections = out
    return array_msg


def keypoint_hypothesis(msg_types, index, x, y, visibility):
    """Our keypoint convention: an ``ObjectHypothesisWithPose`` 'keypoint/<index>' whose
    score is the visibility and whose position is the keypoint in pixels (z 0)."""
    hyp = msg_types.ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = f'{KEYPOINT_PREFIX}{index}'
    hyp.hypothesis.score = visibility
    hyp.pose.pose.position.x, hyp.pose.pose.position.y = x, y
    return hyp


def detections_from_array(array_msg):
    """``Detection2DArray`` -> list of dicts (x1, y1, x2, y2, score, class_id, keypoints:
    [(index, x, y, visibility)] from the 'keypoint/<index>' hypotheses)."""
    out = []
    for d in array_msg.detections:
        cx, cy = d.bbox.center.position.x, d.bbox.center.position.y
        hyp = d.results[0].hypothesis if d.results else None
        points = [(int(r.hypothesis.class_id[len(KEYPOINT_PREFIX):]), r.pose.pose.position.x,
                   r.pose.pose.position.y, r.hypothesis.score)
                  for r in d.results[1:] if r.hypothesis.class_id.startswith(KEYPOINT_PREFIX)]
        out.append({'x1': cx - d.bbox.size_x / 2, 'y1': cy - d.bbox.size_y / 2,
                    'x2': cx + d.bbox.size_x / 2, 'y2': cy + d.bbox.size_y / 2,
                    'score': hyp.score if hyp else 0.0,
                    'class_id': int(hyp.class_id) if hyp else -1, 'keypoints': points})
    return out
