"""Serialised (CDR) messages without Python message objects: pure functions over bytes.

rclpy can hand a subscription the serialised bytes (``raw=True``) and publish bytes as they
are. Building or reading a 640x480 ``sensor_msgs/Image`` as a Python message copies its 921 KB
twice and a ``Detection2DArray`` of a few boxes costs about a millisecond of nested message
objects. Here the image is a numpy view of the received bytes and the detections are packed
with ``struct``. Layout: the 4-byte encapsulation header (CDR little endian), then the fields
in order, each aligned to its size counted from the end of that header (as Fast DDS writes
ROS 2 messages). ``test/ros/test_cdr.py`` checks every function against
``rclpy.serialization`` byte for byte.
"""
import struct

import numpy as np

ENCAPSULATION = b'\x00\x01\x00\x00'   # CDR, little endian
IDENTITY_POSE = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)   # position xyz, orientation xyzw
KEYPOINT_PREFIX = 'keypoint/'   # a keypoint hypothesis's class_id: 'keypoint/<index>'
KEYPOINT_THRESHOLD = 0.5        # least visibility of a published keypoint (the default)
_U32, _I32 = struct.Struct('<I'), struct.Struct('<i')
_U8, _F64 = struct.Struct('<B'), struct.Struct('<d')
_BBOX = struct.Struct('<5d')    # centre x, y, theta, size x, y
_ZEROS = (0.0,) * 36            # a pose covariance
# A class hypothesis after its score: the identity pose, zero covariance; a keypoint's after
# its score, x and y: z = 0, identity orientation, zero covariance.
_CLASS_POSE = struct.pack('<43d', *IDENTITY_POSE, *_ZEROS)
_KEYPOINT_POSE = struct.pack('<41d', *IDENTITY_POSE[2:], *_ZEROS)


class CdrError(ValueError):
    """Serialised bytes that do not hold the message they should (truncated, bad lengths)."""


class Reader:
    """Reads little-endian CDR fields from ``data`` (bytes or memoryview)."""

    def __init__(self, data):
        if len(data) < 4 or bytes(data[:2]) != ENCAPSULATION[:2]:
            raise CdrError('not a little-endian CDR message (encapsulation header)')
        self.data, self.pos = data, 4

    def _take(self, field):
        """One value of the ``struct.Struct`` ``field``, aligned to its size (a received
        image is read field by field once per frame: precompiled formats, few calls)."""
        pos = self.pos + -(self.pos - 4) % field.size
        end = pos + field.size
        if end > len(self.data):
            raise CdrError(f'message truncated at byte {pos} of {len(self.data)}')
        self.pos = end
        return field.unpack_from(self.data, pos)[0]

    def u32(self) -> int:
        return self._take(_U32)

    def i32(self) -> int:
        return self._take(_I32)

    def u8(self) -> int:
        return self._take(_U8)

    def string(self) -> str:
        n = self.u32()
        if n == 0 or self.pos + n > len(self.data):
            raise CdrError(f'bad string length {n} at byte {self.pos}')
        text = bytes(self.data[self.pos:self.pos + n - 1]).decode('utf-8', 'replace')
        self.pos += n
        return text

    def byte_sequence(self):
        """A ``uint8[]`` as (offset, length) into ``data``: no copy."""
        n = self.u32()
        if self.pos + n > len(self.data):
            raise CdrError(f'sequence of {n} bytes at byte {self.pos} overruns the message '
                           f'({len(self.data)} bytes)')
        offset = self.pos
        self.pos += n
        return offset, n


class Writer:
    """Appends little-endian CDR fields to a bytearray; ``bytes()`` gives the message."""

    def __init__(self):
        self.buffer = bytearray(ENCAPSULATION)

    def packed(self, align, data):
        """Bytes packed already (fields that need no padding between them), after the zero
        padding up to a multiple of ``align`` bytes."""
        pad = -(len(self.buffer) - len(ENCAPSULATION)) % align
        if pad:
            self.buffer += bytes(pad)
        self.buffer += data

    def u32(self, value):
        self.packed(4, _U32.pack(value))

    def i32(self, value):
        self.packed(4, _I32.pack(value))

    def u8(self, value):
        self.packed(1, _U8.pack(value))

    def f64s(self, *values):
        self.packed(8, struct.pack(f'<{len(values)}d', *values))

    def string(self, text):
        self.packed(4, string_bytes(text))

    def raw(self, data):
        self.buffer += data

    def __bytes__(self):
        return bytes(self.buffer)


def string_bytes(text) -> bytes:
    """A CDR string (4-aligned): its length with the NUL, the UTF-8 bytes, the NUL. A lone
    surrogate (no UTF-8 form; rclpy raises on it) becomes '?', as received strings' bad bytes
    do: a frame id never stops a message."""
    raw = text.encode('utf-8', 'replace')
    return _U32.pack(len(raw) + 1) + raw + b'\x00'


class ImageView:
    """A received ``sensor_msgs/Image``: header fields and ``data``, a uint8 view."""

    __slots__ = ('sec', 'nanosec', 'frame_id', 'height', 'width', 'encoding',
                 'is_bigendian', 'step', 'data')

    @property
    def stamp(self) -> tuple:
        return self.sec, self.nanosec


def read_header(reader) -> tuple:
    """std_msgs/Header -> (sec, nanosec, frame_id)."""
    return reader.i32(), reader.u32(), reader.string()


def header_bytes(sec, nanosec, frame_id) -> bytes:
    """std_msgs/Header's bytes, to be written at a 4-aligned position (every field is)."""
    return struct.pack('<iI', sec, nanosec) + string_bytes(frame_id)


def write_header(writer, sec, nanosec, frame_id) -> None:
    writer.packed(4, header_bytes(sec, nanosec, frame_id))


def image_view(data) -> ImageView:
    """Serialised ``sensor_msgs/Image`` -> ImageView whose ``data`` is a view of ``data``."""
    reader, view = Reader(data), ImageView()
    view.sec, view.nanosec, view.frame_id = read_header(reader)
    view.height, view.width = reader.u32(), reader.u32()
    view.encoding = reader.string()
    view.is_bigendian, view.step = reader.u8(), reader.u32()
    offset, n = reader.byte_sequence()
    view.data = np.frombuffer(data, np.uint8, count=n, offset=offset)
    return view


def image_bytes(sec, nanosec, frame_id, pixels, encoding) -> bytes:
    """A ``sensor_msgs/Image`` message's bytes from an HxW or HxWxC uint8 array."""
    pixels = np.ascontiguousarray(pixels, np.uint8)
    height, width = pixels.shape[:2]
    w = Writer()
    write_header(w, sec, nanosec, frame_id)
    w.u32(height)
    w.u32(width)
    w.string(encoding)
    w.u8(0)
    w.u32(pixels.nbytes // max(height, 1))
    w.u32(pixels.nbytes)
    w.raw(pixels.tobytes())
    return bytes(w)


def stamp_offset(frame_bytes) -> int:
    """Byte offset of ``header.stamp`` in a serialised message (it is the first field)."""
    return len(ENCAPSULATION)


def restamp(buffer: bytearray, sec, nanosec) -> None:
    """Write a new ``header.stamp`` into serialised bytes in place (a camera replaying a frame)."""
    struct.pack_into('<iI', buffer, stamp_offset(buffer), sec, nanosec)


def published_keypoints(det, threshold=KEYPOINT_THRESHOLD) -> list:
    """[(index, x, y, visibility)] of a detection's keypoints whose visibility reaches
    ``threshold`` (none when it has no ``keypoints``): the extra hypotheses it publishes."""
    points = getattr(det, 'keypoints', None)
    if points is None:
        return []
    return [(k, float(x), float(y), float(v)) for k, (x, y, v) in enumerate(points)
            if v >= threshold]


def detection_array_bytes(sec, nanosec, frame_id, detections, track_ids=None,
                          keypoint_threshold=KEYPOINT_THRESHOLD) -> bytes:
    """A ``vision_msgs/Detection2DArray`` message's bytes, the same message as
    ``conversions.fill_detection_array`` builds: per detection the class hypothesis (class id
    as text, score, identity pose), then one per published keypoint (``published_keypoints``:
    class_id 'keypoint/<index>', score = visibility, position = pixel x, y, 0), zero
    covariances, bbox centre and size in pixels, ``id`` the track ID as text (empty when none
    or negative)."""
    w = Writer()
    header = header_bytes(sec, nanosec, frame_id)
    w.packed(4, header)
    w.u32(len(detections))
    for i, det in enumerate(detections):
        w.packed(4, header)
        points = published_keypoints(det, keypoint_threshold)
        w.u32(1 + len(points))                     # results: the class, then keypoints
        w.string(str(int(det.class_id)))
        w.packed(8, _F64.pack(float(det.score)) + _CLASS_POSE)
        for k, x, y, visibility in points:
            w.string(f'{KEYPOINT_PREFIX}{k}')
            w.packed(8, struct.pack('<3d', visibility, x, y) + _KEYPOINT_POSE)
        w.packed(8, _BBOX.pack((det.x1 + det.x2) / 2.0, (det.y1 + det.y2) / 2.0, 0.0,
                               float(det.x2 - det.x1), float(det.y2 - det.y1)))
        track = -1 if track_ids is None else int(track_ids[i])
        w.string(str(track) if track >= 0 else '')
    return bytes(w)


class CompressedView:
    """A received ``sensor_msgs/CompressedImage``: header fields, ``format`` and ``data``."""

    __slots__ = ('sec', 'nanosec', 'frame_id', 'format', 'data')

    @property
    def stamp(self) -> tuple:
        return self.sec, self.nanosec


def compressed_view(data) -> CompressedView:
    """Serialised ``sensor_msgs/CompressedImage`` -> CompressedView (``data`` a view)."""
    reader, view = Reader(data), CompressedView()
    view.sec, view.nanosec, view.frame_id = read_header(reader)
    view.format = reader.string()
    offset, n = reader.byte_sequence()
    view.data = np.frombuffer(data, np.uint8, count=n, offset=offset)
    return view
