"""The detector node's frame intake: subscription callback -> header checks -> freshest-frame
slots -> worker, with every frame counted, and the node's ``/diagnostics`` array.

A frame is counted as received in the subscription callback, which runs the cheap header
checks (``conversions.check_image`` / ``check_compressed``: no pixel read, no decode). A
malformed frame is dropped there under its cause, so only good frames enter the slots and only
good frames can be replaced ('stale'). The worker then answers a frame or drops it under its
cause ('decode', 'error'). Once no frame is in flight, for the node and for each camera:

    received = frames (answered) + dropped_stale + sum of the other dropped_<cause>

No rclpy import here: the node passes its logger's ``warn``.
"""
import threading
import time

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Header

from tx2_infer_ros import cdr, conversions
from tx2_infer_ros.scheduling import FreshestSlots, Worker
from tx2_infer_ros.stats import camera_status, diagnostic_status

WARN_EVERY_S = 10.0     # a drop cause is logged at its first frame, then at most this often


def frame_view(camera, data):
    """The serialised image of ``camera`` as a ``cdr`` view (raises ``cdr.CdrError`` for
    bytes that do not hold the message)."""
    return cdr.compressed_view(data) if camera.compressed else cdr.image_view(data)


def header_of(view) -> Header:
    """A view's header as a ``std_msgs/Header``, made only where a message needs one (the
    annotated image, depth, timing): an rclpy message costs tens of microseconds a frame
    with cold caches, on the latency path if made for every frame."""
    return Header(stamp=Time(sec=view.sec, nanosec=view.nanosec), frame_id=view.frame_id)


def header_check(camera):
    """The header check of ``camera``'s messages (raises ``conversions.ConversionError``)."""
    return conversions.check_compressed if camera.compressed else conversions.check_image


class FrameIntake:
    """The slots and the worker between the cameras' subscriptions and ``handle(camera, msg,
    arrival)``; counts into ``stats`` (the node's ``NodeStats``) and each camera's stats.
    With ``batch`` > 1 the worker calls ``handle_many([(camera, msg, arrival), ...])`` with the
    newest frame of up to ``batch`` cameras, waiting up to ``batch_wait`` s for the others."""

    def __init__(self, cameras, stats, handle, warn, max_pixels=conversions.MAX_IMAGE_PIXELS,
                 inline=False, batch=1, handle_many=None, batch_wait=0.0):
        self.cameras, self.stats, self._warn = cameras, stats, warn
        self.max_pixels = max_pixels
        self.slots = FreshestSlots(cameras)
        self.worker = Worker(self.slots, handle, inline=inline, batch=batch,
                             handle_many=handle_many, wait=batch_wait)
        self._last_warn, self._warn_lock = {}, threading.Lock()

    def start(self) -> None:
        """Start the worker (before the subscriptions)."""
        self.worker.start()

    def on_message(self, camera, data) -> None:
        """Subscription callback (serialised bytes): count the frame, read and check its
        header; a good frame goes to the slot, a malformed one is dropped under its cause."""
        self.stats.receive()
        camera.stats.receive()
        try:
            msg = frame_view(camera, data)
            header_check(camera)(msg, self.max_pixels)
        except cdr.CdrError as exc:
            self.drop(camera, 'size', f'malformed message: {exc}')
            return
        except conversions.ConversionError as exc:
            self.drop(camera, exc.cause, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a message unlike an image: count it
            self.drop(camera, 'error', f'{type(exc).__name__}: {exc}')
            return
        self.worker.put_and_serve(camera, msg)

    def decode(self, camera, msg):
        """Worker: the frame as HxWx3 BGR, or None when it is dropped (counted by cause)."""
        try:
            if camera.compressed:
                return conversions.compressed_to_bgr(msg, self.max_pixels)
            return conversions.image_to_bgr(msg, self.max_pixels)
        except conversions.ConversionError as exc:
            self.drop(camera, exc.cause, str(exc))
        except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the node
            self.drop(camera, 'decode', f'{type(exc).__name__}: {exc}')
        return None

    def drop(self, camera, cause, text) -> None:
        """Count a dropped frame; log the first of each cause, then at most every 10 s."""
        self.stats.drop(cause)
        camera.stats.drop(cause)
        now = time.monotonic()
        with self._warn_lock:
            if now - self._last_warn.get(cause, -1e9) < WARN_EVERY_S:
                return
            self._last_warn[cause] = now
        self._warn(f'dropped a frame of {camera.topic} ({cause}, '
                   f'{self.stats.drops[cause]} so far): {text}')

    def stop(self) -> None:
        """Stop the worker after its frame; the frames left waiting count as stale, and the
        slots' stale counts move into the statistics."""
        self.worker.stop()
        for camera in self.cameras:
            camera.stats.drop('stale', self.slots.drops[camera])
        self.stats.drop('stale', sum(self.slots.drops.values()))
        self.slots.drops.clear()

    def snapshots(self):
        """(node snapshot, [camera snapshot]) with the slots' stale frames counted."""
        snap = self.stats.snapshot()
        cams = []
        for camera in self.cameras:
            cam_snap = camera.stats.snapshot()
            cam_snap['drops']['stale'] += self.slots.drops[camera]
            snap['drops']['stale'] += self.slots.drops[camera]
            cams.append(cam_snap)
        return snap, cams


def diagnostic_array(node_name, stats, intake, info, active, trackers) -> DiagnosticArray:
    """The node's status, then one per camera (frames, latency, drops, reliability, active
    tracks); ``intake`` is None while inactive (no cameras)."""
    snap, cam_snaps = intake.snapshots() if intake else (stats.snapshot(), [])
    cameras = intake.cameras if intake else []
    statuses = []
    for camera, cam_snap in zip(cameras, cam_snaps):
        tracker = trackers.get(camera.topic)
        statuses.append(camera_status(
            node_name, camera.topic, cam_snap, camera.reliability,
            {'active_tracks': tracker.active_count if tracker else 0}))
    info = dict(info, cameras=str(len(cameras)), image_reliability=','.join(
        c.reliability for c in cameras) or 'none', active_tracks=str(sum(
            t.active_count for t in list(trackers.values()))))
    status = diagnostic_status(node_name, snap, info, active)
    return DiagnosticArray(status=[status] + statuses)
