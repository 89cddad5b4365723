"""Overhead of the ROS detector node beyond its engine, on 640x480 bgr8 images (CPU backend).

One frame at a time (no queueing): end-to-end latency = detections received - image stamp;
overhead = end-to-end - the node's own engine time (infer_ms from its diagnostics). Writes
bench/results/node_overhead_cpu.json. Run with `make bench-ros`.
"""
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'test' / 'ros'))
from rospeer import T, Peer, start_node, stop_node  # noqa: E402


def main(frames=30, domain_id=64):
    import cv2
    import rclpy
    from sensor_msgs.msg import Image
    from tx2_infer_core import assets
    from tx2_infer_ros import conversions as conv
    logs = Path('/tmp/tx2_infer_bench_ros')
    logs.mkdir(exist_ok=True)
    proc = start_node(domain_id, logs, args=['-p', 'backend:=cpu', '-p', 'qos_depth:=5'])
    peer = Peer(domain_id, logs)
    try:
        peer.ready()
        assert peer.change_state(T.TRANSITION_CONFIGURE)
        assert peer.change_state(T.TRANSITION_ACTIVATE)
        pub = peer.node.create_publisher(Image, 'image', 5)
        image = cv2.resize(cv2.imread(str(assets.fetch('dog.jpg'))), (640, 480))
        msg = conv.fill_image(Image(), image, 'bgr8')
        peer.spin_for(1.0)
        e2e, engine = [], []
        for i in range(frames + 3):
            n = len(peer.detections)
            msg.header.stamp = peer.node.get_clock().now().to_msg()
            pub.publish(msg)
            assert peer.wait_for(lambda: len(peer.detections) > n, 30), 'no detections'
            m, t = peer.detections[-1]
            if i >= 3:  # warm-up frames
                e2e.append((t - (m.header.stamp.sec + m.header.stamp.nanosec * 1e-9)) * 1e3)
            peer.spin_for(1.1)  # a fresh diagnostics message
            engine.append(float(peer.diag_values()['infer_ms']))
        e2e, overhead = np.array(e2e), np.array(e2e) - np.median(engine)
        result = {'device': platform.processor() or platform.machine(),
                  'python': platform.python_version(), 'rclpy': 'kilted (PyPI wheels)',
                  'numpy': np.__version__, 'opencv': cv2.__version__,
                  'image': '640x480 bgr8', 'model': 'yolov3-tiny 416 fp32 cpu',
                  'frames': int(len(e2e)),
                  'e2e_ms': {'median': float(np.median(e2e)),
                             'p99': float(np.percentile(e2e, 99))},
                  'engine_ms_median': float(np.median(engine)),
                  'overhead_ms': {'median': float(np.median(overhead)),
                                  'p99': float(np.percentile(overhead, 99))},
                  'when': time.strftime('%Y-%m-%d %H:%M:%S')}
        out = ROOT / 'bench' / 'results' / 'node_overhead_cpu.json'
        out.write_text(json.dumps(result, indent=2) + '\n')
        print(json.dumps(result, indent=2))
    finally:
        peer.close()
        stop_node(proc)
        del rclpy


if __name__ == '__main__':
    main()
