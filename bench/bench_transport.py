"""The floor under the node's 'receive' time: one serialised message from one process to
another, stamp -> subscription callback, with nothing else in either process.

A publisher process sends serialised ``sensor_msgs/Image`` bytes (restamped in place) at
``--hz``; this process receives them raw in a plain rclpy node (``--lifecycle``: a lifecycle
node, whose executor also waits on its ~12 services) spun by a SingleThreadedExecutor, and
notes stamp -> callback. Sizes: a 1x1 image and 640x480 bgr8; with our Fast DDS profile
(shared memory + UDP, as the launch file runs the node), shared memory only, and Fast DDS
defaults. Writes JSON (``--out``).

    python bench/bench_transport.py [--frames 300] [--executor events] [--node-heap] \
        [--profiles 'shm + udp'] [--out bench/results/transport_cpu.json]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'test' / 'ros'))
from bench_node_overhead import environment  # noqa: E402
from benchlib import write_json  # noqa: E402
from rospeer import free_domain_id  # noqa: E402
from tx2_infer_ros import ros_env  # noqa: E402

PUBLISHER = r'''
import sys, time
import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from tx2_infer_ros import cdr
side, frames, hz = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rclpy.init()
node = rclpy.create_node('transport_camera')
pub = node.create_publisher(Image, 'image', qos_profile_sensor_data)
frame = bytearray(cdr.image_bytes(0, 0, 'cam', np.zeros((side, side * 4 // 3 if side > 1 else 1,
                                                        3), np.uint8), 'bgr8'))
while pub.get_subscription_count() == 0:
    time.sleep(0.05)
time.sleep(1.0)
for _ in range(frames):
    now = node.get_clock().now().to_msg()
    cdr.restamp(frame, now.sec, now.nanosec)
    try:  # the bytearray itself, as a C++ driver publishes (no bytes copy after the stamp)
        pub.handle.publish_raw(frame)
    except TypeError:
        pub.publish(bytes(frame))
    time.sleep(1.0 / hz)
'''


PROFILES = {'fastdds defaults': None, 'shm + udp': 'fastdds_large_images.xml',
            'shm only': 'fastdds_shm_only.xml'}


def receive(frames, side, hz, profile, lifecycle, executor_name='single'):
    """Latencies (ms) of ``frames`` messages from a publisher process, received by a
    ``executor_name`` executor ('single' or 'events', the node's where rclpy has it)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from tx2_infer_ros import executors
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from tx2_infer_ros import cdr
    domain = free_domain_id()
    env = ros_env.child_env(domain_id=domain, log_dir=tempfile.mkdtemp(prefix='tx2_tr_'),
                            dds_profile=PROFILES[profile])
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    if lifecycle:
        from rclpy.lifecycle import LifecycleNode
        node = LifecycleNode('transport_sink', context=context)
    else:
        node = rclpy.create_node('transport_sink', context=context,
                                 start_parameter_services=False, enable_rosout=False)
    lat = []

    def on_image(data):
        at = time.time()
        sec, nanosec, _ = cdr.read_header(cdr.Reader(data))
        lat.append((at - sec - nanosec * 1e-9) * 1e3)
    node.create_subscription(Image, 'image', on_image, qos_profile_sensor_data, raw=True)
    events = executors.events_executor_class() if executor_name == 'events' else None
    executor = (events or SingleThreadedExecutor)(context=context)
    executor.add_node(node)
    proc = subprocess.Popen([sys.executable, '-c', PUBLISHER, str(side), str(frames), str(hz)],
                            env=env)
    end = time.monotonic() + frames / hz + 20
    while proc.poll() is None and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    proc.kill()
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)
    os.environ.clear()
    os.environ.update(saved)
    return lat


def summary(lat, frames) -> dict:
    lat = np.array(lat[5:]) if len(lat) > 5 else np.array(lat)
    return {'received': int(len(lat)) + min(5, len(lat)), 'sent': frames,
            'median_ms': round(float(np.median(lat)), 3) if len(lat) else None,
            'p99_ms': round(float(np.percentile(lat, 99)), 3) if len(lat) else None}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=300)
    parser.add_argument('--hz', type=float, default=30.0)
    parser.add_argument('--lifecycle', action='store_true',
                        help='also receive in a lifecycle node (more entities to wait on)')
    parser.add_argument('--executor', default='single', choices=('single', 'events'),
                        help="the receiver's executor (events: the node's, where rclpy has it)")
    parser.add_argument('--node-heap', action='store_true',
                        help="receive with the node's malloc policy (tx2_infer_ros/heap.py: "
                             'frame-sized blocks reused, not mapped per message)')
    parser.add_argument('--profiles', default=','.join(PROFILES),
                        help='which of the Fast DDS profiles, comma-separated')
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' / 'transport_cpu.json'))
    args = parser.parse_args(argv)
    if args.node_heap:
        from tx2_infer_ros import heap
        heap.reuse_freed_memory()  # before the first big allocation, as the node does
    cases = []
    for side in (1, 480):
        for profile in args.profiles.split(','):
            for lifecycle in (False, True)[:1 + args.lifecycle]:
                lat = receive(args.frames, side, args.hz, profile, lifecycle, args.executor)
                case = {'image': '1x1' if side == 1 else '640x480 bgr8',
                        'fastdds_profile': PROFILES[profile] or 'none (defaults)',
                        'subscriber': 'lifecycle node' if lifecycle else 'plain node',
                        'executor': args.executor, 'node_heap': args.node_heap,
                        **summary(lat, args.frames)}
                print(case, flush=True)
                cases.append(case)
    write_json(args.out, {**environment(), 'what': __doc__.splitlines()[0], 'hz': args.hz,
                          'cases': cases, 'when': time.strftime('%Y-%m-%d %H:%M:%S')},
               indent=2)


if __name__ == '__main__':
    main()
