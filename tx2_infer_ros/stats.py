"""Run-time statistics of the detector node and their ``diagnostic_msgs`` form.

Thread-safe: the subscription counts frames received and header drops, the worker records
frames answered and its drops, a 1 Hz timer reads. Every frame received ends answered
(``frames``) or dropped under one cause: received = frames + sum(drops), once none is in
flight.
``frame_timing_status`` is the per-frame form (the node's optional ``~/frame_timing`` topic).
"""
import threading
import time
from collections import Counter, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from tx2_infer_core import detector

# Per frame: image message -> BGR ('decode'), the Detector's stages, the tracker ('track'),
# then 'publish' (the Detection2DArray).
STAGES = ('decode',) + detector.STAGES + ('track', 'publish')
# Per frame, in order: image stamp -> subscription callback ('receive'), callback -> worker
# ('wait'), the STAGES, then 'latency' = image stamp -> detections published.
FRAME_TIMES = ('receive', 'wait') + STAGES + ('latency',)
DROP_CAUSES = ('stale', 'encoding', 'size', 'empty', 'decode', 'error')


class NodeStats:
    """Counters, per-stage times and end-to-end latencies over a sliding window of frames."""

    def __init__(self, window=100):
        self._lock = threading.Lock()
        self.frames = self.received = 0
        self.drops = Counter()
        self._stages = {s: deque(maxlen=window) for s in STAGES}
        self._latency = deque(maxlen=window)
        self._done_at = deque(maxlen=window)

    def record(self, stage_seconds, latency_s) -> None:
        """One processed frame: seconds per stage, and latency from the header stamp."""
        with self._lock:
            self.frames += 1
            for stage, seconds in stage_seconds.items():
                self._stages[stage].append(seconds)
            self._latency.append(latency_s)
            self._done_at.append(time.monotonic())

    def receive(self) -> None:
        """Count one frame received (before any check)."""
        with self._lock:
            self.received += 1

    def drop(self, cause, count=1) -> None:
        """Count ``count`` frames dropped for ``cause`` (see ``DROP_CAUSES``)."""
        with self._lock:
            self.drops[cause] += count

    def snapshot(self) -> dict:
        """fps, frames (answered), received, drops per cause, mean ms per stage, latency
        p50/p99/max ms."""
        with self._lock:
            done = list(self._done_at)
            fps = (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and \
                done[-1] > done[0] else 0.0
            stages = {s: 1e3 * float(np.mean(v)) if v else 0.0 for s, v in self._stages.items()}
            lat = np.asarray(self._latency) * 1e3
            out = {'frames': self.frames, 'received': self.received, 'fps': fps,
                   'drops': {c: self.drops.get(c, 0) for c in DROP_CAUSES}}
        out['stage_ms'] = stages
        out['latency_ms'] = {k: float(np.percentile(lat, q)) if lat.size else 0.0
                             for k, q in (('p50', 50), ('p99', 99), ('max', 100))}
        return out


def since_stamp(stamp, now_ns, arrival) -> float:
    """Seconds from the header ``stamp`` (or anything with its ``sec`` and ``nanosec``: a
    received image's view) to ``now_ns`` (ROS clock), or from ``arrival`` (monotonic) to now
    when the stamp is zero (unset)."""
    stamp_ns = stamp.sec * 10**9 + stamp.nanosec
    if stamp_ns == 0:
        return time.monotonic() - arrival
    return (now_ns - stamp_ns) * 1e-9


def diagnostic_status(node_name, snap, info, active) -> DiagnosticStatus:
    """A ``DiagnosticStatus`` from a ``snapshot()`` and ``info`` (backend, precision, model)."""
    status = DiagnosticStatus(name=f'{node_name}: tx2_infer detector',
                              hardware_id=str(info.get('device', 'cpu')))
    if not active:
        status.level, status.message = DiagnosticStatus.WARN, 'inactive'
    elif snap['frames'] == 0:
        status.level, status.message = DiagnosticStatus.OK, 'active, waiting for images'
    else:
        status.level = DiagnosticStatus.OK
        status.message = f"{snap['fps']:.1f} fps, latency p50 {snap['latency_ms']['p50']:.1f} ms"
    values = [('fps', f"{snap['fps']:.2f}"), ('frames', str(snap['frames'])),
              ('received', str(snap['received']))]
    values += [(f'{s}_ms', f'{ms:.2f}') for s, ms in snap['stage_ms'].items()]
    values += [(f'latency_{k}_ms', f'{v:.2f}') for k, v in snap['latency_ms'].items()]
    values += [(f'dropped_{c}', str(n)) for c, n in snap['drops'].items()]
    values += [(k, str(v)) for k, v in info.items()]
    status.values = [KeyValue(key=k, value=v) for k, v in values]
    return status


def frame_timing_status(node_name, seconds, detections) -> DiagnosticStatus:
    """One frame's times (``FRAME_TIMES`` -> seconds) as a ``DiagnosticStatus``: values
    ``<time>_ms`` and ``detections``. The node sends it with the image's header, so a
    subscriber matches it to the frame's Detection2DArray by stamp."""
    status = DiagnosticStatus(name=f'{node_name}: frame timing', level=DiagnosticStatus.OK,
                              message=f"{detections} detections, latency "
                                      f"{1e3 * seconds.get('latency', 0.0):.1f} ms")
    values = [(f'{k}_ms', f'{1e3 * seconds[k]:.3f}') for k in FRAME_TIMES if k in seconds]
    values.append(('detections', str(detections)))
    status.values = [KeyValue(key=k, value=v) for k, v in values]
    return status


def camera_status(node_name, topic, snap, reliability, extra=None) -> DiagnosticStatus:
    """One camera's ``DiagnosticStatus`` from its ``NodeStats.snapshot()``: frames, fps,
    latency p50/p99/max, drops per cause, its subscription's reliability, then ``extra``
    (key -> value, e.g. ``active_tracks``)."""
    lat = snap['latency_ms']
    status = DiagnosticStatus(name=f'{node_name}: camera {topic}', level=DiagnosticStatus.OK,
                              message=f"{snap['frames']} frames, {snap['fps']:.1f} fps, "
                                      f"latency p50 {lat['p50']:.1f} ms")
    values = [('topic', topic), ('frames', str(snap['frames'])),
              ('received', str(snap['received'])), ('fps', f"{snap['fps']:.2f}")]
    values += [(f'latency_{k}_ms', f'{v:.2f}') for k, v in lat.items()]
    values += [(f'dropped_{c}', str(n)) for c, n in snap['drops'].items()]
    values.append(('image_reliability', reliability or 'none'))
    values += [(k, str(v)) for k, v in (extra or {}).items()]
    status.values = [KeyValue(key=k, value=v) for k, v in values]
    return status
