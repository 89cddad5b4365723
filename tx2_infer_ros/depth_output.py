"""3D detections from an aligned depth image: the detector node's optional ``detections_3d``.

With the ``depth_topic`` parameter set, the first camera also subscribes to that depth image
(``16UC1``/``mono16`` millimetres or ``32FC1`` metres, aligned with the colour image: same
size, same optical frame) and to its ``sensor_msgs/CameraInfo`` (``depth_info_topic``; empty:
``camera_info`` beside the depth topic); both reliable with ``qos_reliability: reliable``,
else best effort (which any publisher matches). Each frame's detections are paired with the depth
frame of the nearest stamp within ``depth_slop`` seconds (``tx2_infer_core/sync.py``), then
per detection the median depth of the valid pixels in its inner ``depth_inner`` fraction is
back-projected with the CameraInfo's K (``tx2_infer_core/depth.py``). The frame's
``vision_msgs/Detection3DArray`` goes on ``detections_3d`` beside the camera's
``detections``: header stamp of the colour image, frame_id of the depth image (the optical
frame its K describes; the colour one when empty); each Detection3D has the 2D detection's
``id`` (track ID) and class hypothesis (its pose the 3D point), bbox centre = the 3D point
(x right, y down, z forward, metres), bbox size = the box's metric width and height at that
depth and the 10-90th percentile spread of its depths.

A detection with no valid depth in its window is left out of the array (as yolo_ros does) and
counted. Counted too, in ``/diagnostics`` (``depth_*`` keys): arrays published, messages the
synchroniser dropped unpaired, frames refused for a size or encoding error, and frames paired
before any usable CameraInfo arrived.
"""
import threading
from collections import Counter

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection3D, Detection3DArray, ObjectHypothesisWithPose

from tx2_infer_core.depth import ENCODINGS, Intrinsics, box_position, depth_metres
from tx2_infer_core.sync import ApproxTimeSync
from tx2_infer_ros.params import output_namespace
from tx2_infer_ros.qos import image_qos

COUNTS = ('published', 'objects', 'no_depth', 'unpaired', 'waiting', 'size_error',
          'encoding_error', 'no_info')
_DTYPES = {'16UC1': np.uint16, 'mono16': np.uint16, '32FC1': np.float32}


class DepthError(ValueError):
    """A depth frame that cannot be used; ``cause`` is 'size' or 'encoding'."""

    def __init__(self, cause, text):
        super().__init__(text)
        self.cause = cause


def info_topic(depth_topic, depth_info_topic='') -> str:
    """The CameraInfo topic: ``depth_info_topic``, else ``camera_info`` beside the depth
    topic ('cam/depth/image_rect_raw' -> 'cam/depth/camera_info')."""
    return depth_info_topic or output_namespace(depth_topic) + 'camera_info'


def depth_array(msg) -> np.ndarray:
    """A depth ``sensor_msgs/Image`` -> HxW array (uint16 or float32); ``DepthError`` for an
    encoding not in ``ENCODINGS`` or a data size that does not match height, width, step."""
    dtype = _DTYPES.get(msg.encoding)
    if dtype is None:
        raise DepthError('encoding', f"depth encoding must be one of {', '.join(ENCODINGS)}, "
                                     f'got {msg.encoding!r}')
    dtype = np.dtype(dtype).newbyteorder('>' if msg.is_bigendian else '<')
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0 or step < w * dtype.itemsize or len(msg.data) < h * step:
        raise DepthError('size', f'depth image {w}x{h}, step {step}, has {len(msg.data)} '
                                 'bytes of data')
    rows = np.frombuffer(bytes(msg.data), np.uint8, h * step).reshape(h, step)
    return rows[:, :w * dtype.itemsize].copy().view(dtype).reshape(h, w)


def stamp_ns(stamp) -> int:
    return stamp.sec * 10**9 + stamp.nanosec


def fill_detection3d_array(header, dets, track_ids, boxes3d) -> Detection3DArray:
    """The Detection3DArray of the detections that have a ``Box3D`` (None: left out)."""
    out = Detection3DArray(header=header)
    for i, (det, box) in enumerate(zip(dets, boxes3d)):
        if box is None:
            continue
        d = Detection3D(header=header)
        if track_ids is not None and track_ids[i] >= 0:
            d.id = str(int(track_ids[i]))
        centre = Point(x=box.center[0], y=box.center[1], z=box.center[2])
        d.bbox.center.position = centre
        d.bbox.center.orientation.w = 1.0
        d.bbox.size.x, d.bbox.size.y, d.bbox.size.z = box.size
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = str(int(det.class_id))
        hyp.hypothesis.score = float(det.score)
        hyp.pose.pose.position = centre
        hyp.pose.pose.orientation.w = 1.0
        d.results = [hyp]
        out.detections.append(d)
    return out


class DepthOutput:
    """One camera's depth subscriptions, synchroniser and ``detections_3d`` publisher."""

    def __init__(self, node, camera_topic, depth_topic, depth_info_topic, slop_s, inner,
                 reliability='best_effort'):
        self.node, self.camera_topic, self.inner = node, camera_topic, inner
        self.sync = ApproxTimeSync(int(round(slop_s * 1e9)), queue_size=5)
        self.intrinsics, self.info_size = None, None
        self.counts, self._lock = Counter(), threading.Lock()
        self.publisher = node.create_publisher(
            Detection3DArray, output_namespace(camera_topic) + 'detections_3d', 10)
        qos = image_qos(reliability, 5)
        self.subs = [
            node.create_subscription(Image, depth_topic, self._on_depth, qos),
            node.create_subscription(CameraInfo, info_topic(depth_topic, depth_info_topic),
                                     self._on_info, qos)]
        self._warned = set()

    def close(self):
        """Destroy the subscriptions and the publisher; returns None."""
        for sub in self.subs:
            self.node.destroy_subscription(sub)
        self.node.destroy_publisher(self.publisher)
        self.subs = []

    def snapshot(self) -> dict:
        """``depth_<count>`` -> value for /diagnostics (see ``COUNTS``)."""
        with self._lock:
            counts = dict(self.counts, unpaired=self.sync.dropped,
                          waiting=sum(len(q) for q in self.sync.queues))
        return {f'depth_{k}': counts.get(k, 0) for k in COUNTS}

    def _on_info(self, msg):
        try:
            intrinsics = Intrinsics.from_k(msg.k)
        except ValueError as exc:
            self._warn('info', f'CameraInfo ignored: {exc}')
            return
        with self._lock:
            self.intrinsics, self.info_size = intrinsics, (int(msg.height), int(msg.width))

    def _on_depth(self, msg):
        with self._lock:
            pair = self.sync.add(1, stamp_ns(msg.header.stamp), msg)
        if pair is not None:
            self._publish(*pair)

    def add_frame(self, camera_topic, header, shape, dets, track_ids):
        """A colour frame's detections (``header``: anything with ``stamp.sec``,
        ``stamp.nanosec`` and ``frame_id``; ``shape``: its HxW). Returns each detection's
        distance from the camera (metres, None without depth) when its depth frame was
        already there, else None (the 3D array follows when the depth frame comes; and for
        another camera's frame)."""
        if camera_topic != self.camera_topic:
            return None
        frame = (header, tuple(shape[:2]), list(dets), track_ids)
        with self._lock:
            pair = self.sync.add(0, stamp_ns(header.stamp), frame)
        return None if pair is None else self._publish(*pair)

    def _publish(self, frame, depth_msg):
        """Publish the pair's Detection3DArray; the distances, or None when refused."""
        header, shape, dets, track_ids = frame
        with self._lock:
            intrinsics, info_size = self.intrinsics, self.info_size
        try:
            depth = depth_array(depth_msg)
            if depth.shape != shape or info_size not in (None, (0, 0), shape):
                raise DepthError('size', f'depth image {depth.shape[1]}x{depth.shape[0]} '
                                         f'(CameraInfo {info_size and info_size[::-1]}) is '
                                         f'not the colour image size {shape[1]}x{shape[0]}')
        except DepthError as exc:
            self._count(f'{exc.cause}_error')
            self._warn(exc.cause, f'depth frame refused: {exc}')
            return None
        if intrinsics is None:
            self._count('no_info')
            self._warn('no_info', 'no CameraInfo yet: no 3D positions')
            return None
        metres = depth_metres(depth, depth_msg.encoding)
        boxes = [box_position(metres, (d.x1, d.y1, d.x2, d.y2), intrinsics, self.inner)
                 for d in dets]
        stamp = Time(sec=int(header.stamp.sec), nanosec=int(header.stamp.nanosec))
        out_header = Header(stamp=stamp, frame_id=depth_msg.header.frame_id or header.frame_id)
        array = fill_detection3d_array(out_header, dets, track_ids, boxes)
        self.publisher.publish(array)
        self._count('published')
        self._count('objects', len(array.detections))
        self._count('no_depth', len(dets) - len(array.detections))
        return [None if b is None else float(np.linalg.norm(b.center)) for b in boxes]

    def _count(self, key, n=1):
        with self._lock:
            self.counts[key] += n

    def _warn(self, key, text):
        """Log the first of each kind of problem (the counts carry the rest)."""
        if key not in self._warned:
            self._warned.add(key)
            self.node.get_logger().warn(text)


def from_params(node, camera_topic):
    """The node's ``DepthOutput`` for ``camera_topic`` from its depth parameters, or None when
    ``depth_topic`` is empty."""
    value = node.get_parameter
    topic = value('depth_topic').value
    if not topic:
        return None
    reliable = value('qos_reliability').value == 'reliable'
    return DepthOutput(node, camera_topic, topic, value('depth_info_topic').value,
                       value('depth_slop').value, value('depth_inner').value,
                       'reliable' if reliable else 'best_effort')
