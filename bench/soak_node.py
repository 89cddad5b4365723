"""Soak: the real detector node (own process, backend cpu) fed real frames at 60 Hz with one
malformed frame every second, for ``--minutes`` (default 60).

Every ``--every`` seconds (default 10) a sample of the node process is taken: RSS (MiB),
threads, open fds, the latency of the detections answered since the last sample (image stamp
-> Detection2DArray here, median and p99 ms), frames published (good, malformed), answered,
and the node's /diagnostics counters (frames, drops per cause), with the load average (the
machine may be shared). The JSON is rewritten after each sample, so a cut run still leaves its
data; its summary has the RSS slope (MiB/min, least squares over the samples after the first
minute, the warm-up) and the counts.

    python bench/soak_node.py [--minutes 60] [--hz 60] [--every 10] [--best-effort]
        [--qos-depth 10]
        [--out bench/results/soak_node_cpu.json]

The node keeps only the freshest frame (keep-last-1): at 60 Hz on a CPU most good frames are
replaced before the worker takes them and are counted as ``dropped_stale``; a malformed frame
is refused by its header as it arrives and counted under its cause (size, encoding, empty),
never as stale. At the end the camera stops, the node settles, and the summary's
``accounting`` checks, from the node's /diagnostics and the detections received here:

    sent = answered + stale + sum(causes)        (every frame accounted for)
    malformed sent = sum(causes)                  (every malformed frame counted by cause)
    received = answered + stale + sum(causes)    (the node's own books, whatever DDS lost)

``lost_in_transport`` (sent - received by the node) is what DDS dropped on the way (a reader
history overwritten before the node's executor took it, or best effort); the first two
identities can only hold when it is 0. So the camera publishes reliable (depth 10) and the
node subscribes with qos_depth 10 (reliability auto matches it); ``--best-effort`` publishes
with the sensor-data profile (best effort, depth 5) as many camera drivers do; ``--qos-depth 1``
runs the node with the package's default (frames may then be lost in transport, and the
middleware's reader keeps at most a frame or two: its buffer pool grows with the deepest queue
it ever held, in steps of one image).
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'test' / 'ros'))
from benchlib import cpu_name, versions, write_json  # noqa: E402
from rospeer import T, Peer, free_domain_id, rss_mb, start_node, stop_node  # noqa: E402
from tx2_infer_ros import heap, ros_env  # noqa: E402

PHOTOS = ('dog.jpg', 'bus.jpg', 'horses.jpg')
WARMUP_S = 60.0
SETTLE_S = 3.0      # after the last frame: the worker finishes, diagnostics (1 Hz) catch up


def good_frames():
    """Real photos at 640x480 as bgr8 ``sensor_msgs/Image`` messages."""
    import cv2
    from sensor_msgs.msg import Image
    from tx2_infer_core import assets
    from tx2_infer_ros import conversions
    return [conversions.fill_image(Image(), cv2.resize(cv2.imread(str(p)), (640, 480)), 'bgr8')
            for p in assets.fetch_photos(list(PHOTOS))]


def bad_frames():
    """Malformed images, one per cause: odd-width yuv422, short data, step too small, unknown
    encoding, zero size, and a JPEG header claiming 32000x32000 (as a raw 'jpeg' image)."""
    from sensor_msgs.msg import Image

    def image(encoding, width, height, step, nbytes):
        return Image(encoding=encoding, width=width, height=height, step=step,
                     data=bytes(nbytes))
    return [image('yuv422', 641, 480, 1282, 1282 * 480),
            image('bgr8', 640, 480, 1920, 1000),
            image('bgr8', 640, 480, 100, 100 * 480),
            image('weird', 640, 480, 1920, 1920 * 480),
            image('bgr8', 0, 0, 0, 0),
            image('mono8', 100000, 100000, 100000, 16)]


def proc_facts(pid) -> dict:
    """RSS (MiB), threads and open fds of process ``pid``."""
    threads = 0
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('Threads:'):
            threads = int(line.split()[1])
    return {'rss_mib': round(rss_mb(pid), 2), 'threads': threads,
            'fds': len(os.listdir(f'/proc/{pid}/fd'))}


def pid_alive(pid) -> bool:
    return Path(f'/proc/{pid}').exists()


def rss_slope(samples) -> float:
    """Least-squares RSS slope in MiB/min over the samples after the warm-up."""
    pts = [(s['t_s'] / 60, s['rss_mib']) for s in samples if s['t_s'] >= WARMUP_S]
    if len(pts) < 2:
        return float('nan')
    t, rss = np.array(pts).T
    return float(np.polyfit(t, rss, 1)[0])


class Soak:
    """The camera and the consumer side of the soak, in this process."""

    def __init__(self, peer, hz, best_effort=False):
        from rclpy.qos import QoSProfile, qos_profile_sensor_data
        from sensor_msgs.msg import Image
        self.peer, self.period = peer, 1.0 / hz
        qos = qos_profile_sensor_data if best_effort else QoSProfile(depth=10)
        self.pub = peer.node.create_publisher(Image, 'image', qos)
        self.good, self.bad = good_frames(), bad_frames()
        self.sent = {'good': 0, 'malformed': 0}
        self.latencies, self.answered = [], 0

    def publish(self, k):
        """Frame ``k``: malformed once a second, else a good frame, stamped now."""
        malformed = k % round(1 / self.period) == 0
        pool = self.bad if malformed else self.good
        msg = pool[self.sent['malformed' if malformed else 'good'] % len(pool)]
        msg.header.stamp = self.peer.node.get_clock().now().to_msg()
        self.pub.publish(msg)
        self.sent['malformed' if malformed else 'good'] += 1

    def collect(self):
        """Latencies (ms) of the detections received since the last call."""
        new = list(self.peer.detections)
        self.peer.detections.clear()
        for msg, at in new:
            stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            self.latencies.append((at - stamp) * 1e3)
        self.answered += len(new)

    def run_until(self, deadline, k):
        """Publish at the rate until ``deadline`` (monotonic); returns the next frame index."""
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            self.publish(k)
            k += 1
            next_at += self.period
            while time.monotonic() < next_at:
                self.peer.executor.spin_once(timeout_sec=max(0.0, next_at - time.monotonic()))
            if time.monotonic() - next_at > self.period:   # fell behind: skip the missed
                next_at = time.monotonic()                 # slots, as a camera does (no burst)
        return k


def sample(soak, pid, start) -> dict:
    soak.collect()
    lat = np.array(soak.latencies) if soak.latencies else np.array([np.nan])
    soak.latencies = []
    diag = soak.peer.diag_values()
    return {'t_s': round(time.monotonic() - start, 1), **proc_facts(pid),
            'latency_ms': {'median': round(float(np.median(lat)), 2),
                           'p99': round(float(np.percentile(lat, 99)), 2)},
            'sent': dict(soak.sent), 'answered': soak.answered,
            'node_frames': diag.get('frames'), 'node_received': diag.get('received'),
            'node_drops': {k: v for k, v in diag.items() if k.startswith('dropped_')},
            'node_alive': pid_alive(pid),
            'load_average': [round(x, 2) for x in os.getloadavg()]}


def soak(minutes, hz, every, out, best_effort=False, qos_depth=10, input_size=None,
         node_nice=0):
    logs, domain = Path(tempfile.mkdtemp(prefix='tx2_infer_soak_')), free_domain_id()
    sizing = ['-p', f'input_size:={input_size}'] if input_size else []
    proc = start_node(domain, logs, args=['-p', 'backend:=cpu', '-p', f'qos_depth:={qos_depth}',
                                          *sizing], nice=node_nice)
    peer = Peer(domain, logs)
    doc = {'what': __doc__.splitlines()[0], 'cpu': cpu_name(), 'cores': os.cpu_count(),
           'versions': versions('numpy', 'rclpy', 'onnxruntime'),
           'input_size': input_size or 'package default', 'node_nice': node_nice,
           'camera_nice': os.nice(0),
           'planned_minutes': minutes, 'hz': hz, 'sample_every_s': every,
           'camera_qos': 'sensor data (best effort, depth 5)' if best_effort else
           f'reliable, depth 10; node qos_depth {qos_depth}',
           'frames': '640x480 bgr8 ' + ', '.join(PHOTOS) + '; malformed: ' +
           ', '.join(f'{m.encoding} {m.width}x{m.height}' for m in bad_frames()),
           'node_dds_env': {k: v for k, v in ros_env.child_env().items()
                            if k in (ros_env.PROFILE_VARIABLE, ros_env.QOS_FROM_XML)},
           'node_frame_block_bytes': heap.frame_block(),
           'started': time.strftime('%Y-%m-%d %H:%M:%S'), 'node_log': str(logs),
           'samples': []}
    try:
        peer.ready()
        assert peer.change_state(T.TRANSITION_CONFIGURE), (logs / 'det.log').read_text()
        assert peer.change_state(T.TRANSITION_ACTIVATE)
        worker = Soak(peer, hz, best_effort)
        # reliability auto: the node resubscribes to match the camera (within 1 s); a frame
        # sent meanwhile is lost in transport, so start once it has matched
        wanted = 'best_effort' if best_effort else 'reliable'
        peer.wait_for(lambda: peer.diag_values().get('image_reliability') == wanted and
                      worker.pub.get_subscription_count() > 0, timeout=30)
        peer.spin_for(1.0)
        start, k = time.monotonic(), 0
        while time.monotonic() - start < minutes * 60:
            k = worker.run_until(time.monotonic() + every, k)
            doc['samples'].append(sample(worker, proc.pid, start))
            doc['summary'] = summary(doc['samples'])
            write_json(out, doc)
            print(doc['samples'][-1], flush=True)
        peer.spin_for(SETTLE_S)
        doc['samples'].append(dict(sample(worker, proc.pid, start), settled=True))
    finally:
        peer.close()
        stop_node(proc)
    doc['summary'] = summary(doc['samples'])
    doc['ended'] = time.strftime('%Y-%m-%d %H:%M:%S')
    write_json(out, doc)
    return doc


def summary(samples) -> dict:
    if not samples:
        return {}
    last, first = samples[-1], samples[0]
    return {'duration_min': round(last['t_s'] / 60, 2),
            'rss_slope_mib_per_min': round(rss_slope(samples), 4),
            'rss_mib_first_last': [first['rss_mib'], last['rss_mib']],
            'threads_min_max': [min(s['threads'] for s in samples),
                                max(s['threads'] for s in samples)],
            'fds_min_max': [min(s['fds'] for s in samples), max(s['fds'] for s in samples)],
            'sent': last['sent'], 'answered': last['answered'],
            'node_frames': last['node_frames'], 'node_drops': last['node_drops'],
            'node_alive_at_last_sample': last['node_alive'],
            'load_average_max_1min': max(s['load_average'][0] for s in samples),
            'accounting': accounting(last)}


def accounting(last) -> dict:
    """Where every frame went (module docstring), from a sample; the identities are only
    meaningful on the settled last sample (``settled``)."""
    drops = {k[len('dropped_'):]: int(v) for k, v in last['node_drops'].items()}
    stale = drops.pop('stale', 0)
    causes = {c: n for c, n in drops.items() if n}
    counted = sum(causes.values())
    sent = last['sent']['good'] + last['sent']['malformed']
    received, answered = int(last['node_received'] or 0), int(last['node_frames'] or 0)
    return {'settled': bool(last.get('settled')), 'sent': sent, 'received': received,
            'lost_in_transport': sent - received, 'answered': answered,
            'answered_received_here': last['answered'], 'stale': stale, 'causes': causes,
            'sent_eq_answered_stale_causes': sent == answered + stale + counted,
            'malformed_sent_eq_causes': last['sent']['malformed'] == counted,
            'received_eq_answered_stale_causes': received == answered + stale + counted,
            'every_answer_received': answered == last['answered']}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--minutes', type=float, default=60.0)
    parser.add_argument('--hz', type=float, default=60.0)
    parser.add_argument('--every', type=float, default=10.0, help='seconds between samples')
    parser.add_argument('--best-effort', action='store_true',
                        help='camera publishes best effort, depth 5 (sensor data profile)')
    parser.add_argument('--qos-depth', type=int, default=10,
                        help="the node's qos_depth (10: no frame lost in transport; the "
                             "package default is 1)")
    parser.add_argument('--input-size', type=int, default=None,
                        help="the node's input_size (small enough that it answers every frame)")
    parser.add_argument('--node-nice', type=int, default=0,
                        help="the node's niceness (e.g. -10 on a machine shared with other "
                             'work, as a robot runs its perception ahead of the rest; root)')
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'soak_node_cpu.json'))
    args = parser.parse_args(argv)
    doc = soak(args.minutes, args.hz, args.every, args.out, args.best_effort, args.qos_depth,
               args.input_size, args.node_nice)
    print(doc['summary'])


if __name__ == '__main__':
    main()
