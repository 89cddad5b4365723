"""Several cameras, one node: per-camera latency and drops at 30 Hz, 640x480 bgr8.

The detector node runs as its own process with ``cameras`` set to N topics
(``cam0/image`` ...). This process plays N cameras, each publishing real photos at ``--hz``
(serialised bytes restamped in place, best effort, the cameras' phases spread over a
period) for ``--seconds``, and receives each camera's Detection2DArray as serialised bytes
(arrival time noted first). Per camera: frames sent, answered, latency (image stamp ->
detections received here) median and p99, and the node's own per-camera counts (frames,
drops by cause) from ``/diagnostics``. Writes JSON (``--out``). ``--batch N`` sets the
node's ``batch`` (an engine for N images: the cameras' waiting frames run together) and
``--batch-wait-ms`` its ``batch_wait_ms``; the default 1 serves the cameras round-robin.

    python bench/bench_cameras.py [--cameras 4] [--hz 30] [--seconds 30] [--backend cuda]
                                  [--batch 4] [--batch-wait-ms 0]
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'test' / 'ros'))
from bench_node_overhead import camera_messages, environment  # noqa: E402
from benchlib import write_json  # noqa: E402
from rospeer import T, Peer, free_domain_id, start_node, stop_node  # noqa: E402


def camera_status(peer, topic) -> dict:
    """The node's latest /diagnostics values for the camera on ``topic``."""
    for array in reversed(peer.diagnostics):
        for status in array.status:
            if topic in status.name:
                return {kv.key: kv.value for kv in status.values}
    return {}


def play(peer, topics, hz, seconds):
    """Publish on every topic at ``hz`` until ``seconds`` pass -> (sent, arrivals, stamps)."""
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray
    from tx2_infer_ros import cdr
    arrivals = {t: {} for t in topics}

    def receiver(topic):
        def on_detections(data):
            at = time.time()
            arrivals[topic][cdr.read_header(cdr.Reader(data))[:2]] = at
        return on_detections
    pubs = {}
    for topic in topics:
        pubs[topic] = peer.node.create_publisher(Image, topic, qos_profile_sensor_data)
        prefix = topic.rsplit('/', 1)[0] + '/'
        peer.node.create_subscription(Detection2DArray, prefix + 'detections',
                                      receiver(topic), 100, raw=True)
    frames = [bytearray(serialize_message(m)) for m in camera_messages()]
    peer.spin_for(2.0)  # discovery
    period = 1.0 / hz
    start = time.monotonic()
    due = {t: start + k * period / len(topics) for k, t in enumerate(topics)}
    sent = {t: [] for t in topics}
    end = start + seconds
    while time.monotonic() < end:
        topic = min(due, key=due.get)
        wait = due[topic] - time.monotonic()
        if wait > 0:
            peer.executor.spin_once(timeout_sec=wait)
            continue
        now = peer.node.get_clock().now().to_msg()
        frame = frames[len(sent[topic]) % len(frames)]
        cdr.restamp(frame, now.sec, now.nanosec)
        try:
            pubs[topic].publish(bytes(frame))
            sent[topic].append((now.sec, now.nanosec))
        except Exception:  # noqa: BLE001 - history full: the camera drops it
            pass
        due[topic] += period
    peer.spin_for(1.0)  # the last answers
    return sent, arrivals


def per_camera(sent, arrivals) -> dict:
    """Latency (ms) of each answered frame and the counts."""
    stamps = set(sent)
    lat = np.array([(arrivals[k] - (k[0] + k[1] * 1e-9)) * 1e3 for k in arrivals
                    if k in stamps])
    answered = len(lat)
    out = {'sent': len(sent), 'answered': answered,
           'answered_fraction': round(answered / max(len(sent), 1), 3)}
    if answered:
        out['latency_ms'] = {'median': round(float(np.median(lat)), 3),
                             'p99': round(float(np.percentile(lat, 99)), 3),
                             'max': round(float(lat.max()), 3)}
    return out


def run(cameras, hz, seconds, backend, batch=1, batch_wait_ms=0.0):
    from diagnostic_msgs.msg import DiagnosticArray  # noqa: F401 (Peer subscribes)
    logs, domain = Path(tempfile.mkdtemp(prefix='tx2_infer_bench_cams_')), free_domain_id()
    topics = [f'cam{k}/image' for k in range(cameras)]
    proc = start_node(domain, logs, args=['-p', f'backend:={backend}', '-p',
                                          f"cameras:=[{','.join(topics)}]",
                                          '-p', f'batch:={batch}',
                                          '-p', f'batch_wait_ms:={float(batch_wait_ms)}'])
    peer = Peer(domain, logs, detections=False)
    try:
        peer.ready()
        assert peer.change_state(T.TRANSITION_CONFIGURE), (logs / 'det.log').read_text()
        assert peer.change_state(T.TRANSITION_ACTIVATE)
        peer.spin_for(1.0)
        load_start = os.getloadavg()
        sent, arrivals = play(peer, topics, hz, seconds)
        load_end = os.getloadavg()
        peer.spin_for(1.5)  # one more /diagnostics
        node_counts = {t: camera_status(peer, t) for t in topics}
        info = peer.diag_values()
    finally:
        peer.close()
        stop_node(proc)
    cams = {t: {**per_camera(sent[t], arrivals[t]), 'node': node_counts[t]} for t in topics}
    return {**environment(),
            'load_average_1min': [round(load_start[0], 2), round(load_end[0], 2)],
            'model': f"yolov3-tiny, {info.get('input_shape')} {info.get('precision')}, "
                     f"backend {info.get('backend')}",
            'cameras': cameras, 'hz_per_camera': hz, 'seconds': seconds,
            'batch': batch, 'batch_wait_ms': batch_wait_ms,
            'batches': info.get('batches'), 'padded_slots': info.get('padded_slots'),
            'image': '640x480 bgr8 real photos, best effort, serialised bytes restamped',
            'dds_profile': Path(os.environ['FASTDDS_DEFAULT_PROFILES_FILE']).name,
            'method': 'each camera at its own phase; latency = image stamp -> detections '
                      'received here (raw subscription); the node keeps the freshest frame '
                      'per camera and serves the cameras round-robin' + (
                          f', up to {batch} cameras a batch' if batch > 1 else ''),
            'per_camera': cams, 'when': time.strftime('%Y-%m-%d %H:%M:%S')}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--cameras', type=int, default=4)
    parser.add_argument('--hz', type=float, default=30.0)
    parser.add_argument('--seconds', type=float, default=30.0)
    parser.add_argument('--backend', default='cpu')
    parser.add_argument('--batch', type=int, default=1,
                        help="the node's batch: > 1 runs the cameras' frames together")
    parser.add_argument('--batch-wait-ms', type=float, default=0.0,
                        help="the node's batch_wait_ms (batch > 1)")
    parser.add_argument('--dds-profile', default='fastdds_large_images.xml',
                        help='a Fast DDS profile of config/ for every process')
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'cameras_cpu.json'))
    args = parser.parse_args(argv)
    from tx2_infer_ros import ros_env
    os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(ros_env.config_file(args.dds_profile))
    result = run(args.cameras, args.hz, args.seconds, args.backend, args.batch,
                 args.batch_wait_ms)
    write_json(args.out, result, indent=2)
    print(json.dumps(result['per_camera'], indent=1))
    for topic, cam in result['per_camera'].items():
        lat = cam.get('latency_ms', {})
        print(f"{topic}: sent {cam['sent']}, answered {cam['answered']}, latency median "
              f"{lat.get('median')} ms, p99 {lat.get('p99')} ms")


if __name__ == '__main__':
    main()
