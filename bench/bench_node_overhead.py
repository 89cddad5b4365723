"""Overhead of the ROS detector node beyond its engine, per frame, on 640x480 bgr8 images.

The node runs as its own process (CPU backend, ``publish_timing`` on). This process plays the
camera and the consumer: it stamps and publishes one image, waits for that frame's
Detection2DArray and its ``~/frame_timing`` message (matched by header stamp), then waits a
short gap before the next image, so the camera is slower than the node and no frame queues.
Per frame:

    end-to-end = Detection2DArray received here - image stamp
    overhead   = end-to-end - infer (the engine run, as the node timed it)

and where the rest goes: receive (stamp -> the node's subscription callback: serialise,
transport, deserialise), wait, decode, preprocess, postprocess, publish (fill and publish the
Detection2DArray), deliver (node published -> received here), between_stages (the node's
own bookkeeping between the timed stages). 'ros_only' = overhead - preprocess - postprocess,
the cost of being a ROS node rather than a function call. Writes
bench/results/node_overhead_cpu.json. Run with `make bench-ros` (about a minute).
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
from benchlib import command_output, cpu_name, versions, write_json  # noqa: E402
from rospeer import T, Peer, free_domain_id, start_node, stop_node  # noqa: E402
from tx2_infer_ros.cpu_latency import current_wake_latency  # noqa: E402
from tx2_infer_ros.stats import FRAME_TIMES  # noqa: E402

STAGES = tuple(t for t in FRAME_TIMES if t != 'latency')  # the node's timed parts of a frame
PHOTOS = ('dog.jpg', 'bus.jpg', 'horses.jpg')


def camera_messages():
    """Real photos resized to 640x480, as bgr8 ``sensor_msgs/Image`` messages."""
    import cv2
    from sensor_msgs.msg import Image
    from tx2_infer_core import assets
    from tx2_infer_ros import conversions
    return [conversions.fill_image(Image(), cv2.resize(cv2.imread(str(p)), (640, 480)), 'bgr8')
            for p in assets.fetch_photos(list(PHOTOS))]


def publish_raw(pub, frame):
    """Publish serialised ``frame`` (a bytearray) without first copying it into ``bytes``
    (``Publisher.publish`` takes only bytes; its raw publish also reads a bytearray), as a
    C++ driver publishes without that copy; ``bytes(frame)`` where rclpy refuses it."""
    try:
        pub.handle.publish_raw(frame)
    except TypeError:
        pub.publish(bytes(frame))


def stamp_key(header):
    return header.stamp.sec, header.stamp.nanosec


def play(peer, timing, msgs, count, gap, serialised=True):
    """Publish ``count`` frames one at a time -> (rows of per-frame ms, frames lost).

    ``serialised``: the camera publishes the image's serialised bytes, restamped in place (what
    a C++ driver costs), else rclpy message objects (a Python camera: rclpy converts and
    serialises 921 KB per frame). Either way this process receives the Detection2DArray as
    serialised bytes and notes the arrival time before it reads the stamp."""
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image
    from vision_msgs.msg import Detection2DArray
    from tx2_infer_ros import cdr
    pub = peer.node.create_publisher(Image, 'image', qos_profile_sensor_data)
    arrivals = {}

    def on_detections(data):
        at = time.time()
        arrivals[cdr.read_header(cdr.Reader(data))[:2]] = at
    peer.node.create_subscription(Detection2DArray, 'detections', on_detections, 100, raw=True)
    frames = [bytearray(serialize_message(m)) for m in msgs] if serialised else msgs
    peer.spin_for(1.0)  # discovery
    rows, lost = [], 0
    for i in range(count):
        now = peer.node.get_clock().now().to_msg()
        key = now.sec, now.nanosec
        if serialised:
            frame = frames[i % len(frames)]
            cdr.restamp(frame, *key)
            publish_raw(pub, frame)
        else:
            msg = msgs[i % len(msgs)]
            msg.header.stamp = now
            pub.publish(msg)
        if not peer.wait_for(lambda: key in arrivals and key in timing, 20.0):
            lost += 1
            continue
        stamp = key[0] + key[1] * 1e-9
        row = {s: timing[key][f'{s}_ms'] for s in STAGES}
        row['end_to_end'] = (arrivals[key] - stamp) * 1e3
        row['deliver'] = row['end_to_end'] - timing[key]['latency_ms']
        row['between_stages'] = timing[key]['latency_ms'] - sum(row[s] for s in STAGES)
        row['overhead'] = row['end_to_end'] - row['infer']
        row['ros_only'] = row['overhead'] - row['preprocess'] - row['postprocess']
        rows.append(row)
        peer.spin_for(gap)
    return rows, lost


def summary(rows) -> dict:
    """key -> {median, p99, mean} in ms over the rows."""
    out = {}
    for key in rows[0]:
        values = np.array([r[key] for r in rows])
        out[key] = {'median': round(float(np.median(values)), 3),
                    'p99': round(float(np.percentile(values, 99)), 3),
                    'mean': round(float(values.mean()), 3)}
    return out


def environment() -> dict:
    """CPU model, core count, GPU (if any), load and the versions that matter."""
    import cv2
    found = versions('rclpy', 'ros-rmw-fastrtps-cpp')
    gpu = command_output(['nvidia-smi', '--query-gpu=name', '--format=csv,noheader'])
    return {'device': f'{cpu_name()} (CPU, {os.cpu_count()} cores visible)' +
                      (f', GPU {gpu.splitlines()[0]}' if gpu else ''),
            'python': found['python'],
            'rclpy': found['rclpy'] + ' (ROS 2 Kilted PyPI wheels)',
            'rmw': 'rmw_fastrtps_cpp ' + found['ros-rmw-fastrtps-cpp'],
            'numpy': np.__version__, 'opencv': cv2.__version__}


def run(frames, warmup, gap, backend='cpu', serialised=True, peer_executor='auto',
        params=()):
    """Start the node (with ``params``, 'name:=value' each), play the frames, return the
    result dict."""
    from diagnostic_msgs.msg import DiagnosticArray
    logs, domain = Path(tempfile.mkdtemp(prefix='tx2_infer_bench_ros_')), free_domain_id()
    settings = [f'backend:={backend}', 'publish_timing:=true', *params]
    proc = start_node(domain, logs, args=[a for p in settings for a in ('-p', p)])
    peer = Peer(domain, logs, detections=False, executor=peer_executor)
    timing = {}

    def on_timing(array):
        timing[stamp_key(array.header)] = {kv.key: float(kv.value)
                                           for kv in array.status[0].values}
    try:
        peer.ready()
        peer.node.create_subscription(DiagnosticArray, '/det/frame_timing', on_timing, 10)
        assert peer.change_state(T.TRANSITION_CONFIGURE), (logs / 'det.log').read_text()
        assert peer.change_state(T.TRANSITION_ACTIVATE)
        load_start = os.getloadavg()
        wake = current_wake_latency()  # the kernel's CPU latency target while the node runs
        rows, lost = play(peer, timing, camera_messages(), warmup + frames, gap, serialised)
        load_end = os.getloadavg()
        info = peer.diag_values()
    finally:
        peer.close()
        stop_node(proc)
    rows = rows[warmup:]
    return {**environment(),
            'load_average_1min': [round(load_start[0], 2), round(load_end[0], 2)],
            'model': f"yolov3-tiny (Darknet, COCO), {info.get('input_shape')} "
                     f"{info.get('precision')}, backend {info.get('backend')}",
            'image': '640x480 bgr8 (' + ', '.join(PHOTOS) + '), best_effort, '
                     'Fast DDS profile config/' +
                     Path(os.environ['FASTDDS_DEFAULT_PROFILES_FILE']).name,
            'camera': ('serialised bytes restamped in place, published without a copy '
                       '(a C++ driver\'s cost)'
                       if serialised else 'rclpy Image messages (a Python camera)'),
            'receiver': 'raw subscription: arrival time noted before the bytes are read; '
                        f'{peer.executor_name} executor',
            'method': 'one frame at a time (next image published after the previous '
                      f'detections came back plus {gap} s), per-frame times matched by stamp',
            'frames': len(rows), 'warmup_frames': warmup, 'lost_frames': lost,
            'node_params': settings,
            'cpu_wake_latency_us_while_active': wake,
            'goal_overhead_ms': 2.0,
            'overhead_ms': summary(rows)['overhead'],
            'end_to_end_ms': summary(rows)['end_to_end'],
            'ros_only_ms': summary(rows)['ros_only'],
            'stages_ms': {k: v for k, v in summary(rows).items()
                          if k in STAGES + ('deliver', 'between_stages')},
            'when': time.strftime('%Y-%m-%d %H:%M:%S')}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=200)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--gap', type=float, default=0.05, help='seconds between frames')
    parser.add_argument('--backend', default='cpu', help="the node's backend (cpu, numpy, cuda)")
    parser.add_argument('--dds-profile', default='fastdds_large_images.xml',
                        help="a Fast DDS profile of config/ for every process (e.g. "
                             "fastdds_shm_only.xml)")
    parser.add_argument('--python-camera', action='store_true',
                        help='publish rclpy Image messages instead of serialised bytes')
    parser.add_argument('--peer-executor', default='auto', choices=('auto', 'events', 'single'),
                        help="this process's executor (camera and consumer); auto = events "
                             'where rclpy has it')
    parser.add_argument('--param', action='append', default=[],
                        help="a node parameter, 'name:=value' (repeatable), e.g. track:=false")
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' /
                                             'node_overhead_cpu.json'))
    args = parser.parse_args(argv)
    from tx2_infer_ros import ros_env
    os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(ros_env.config_file(args.dds_profile))
    result = run(args.frames, args.warmup, args.gap, args.backend, not args.python_camera,
                 args.peer_executor, args.param)
    result['executor'] = os.environ.get('TX2_INFER_EXECUTOR', 'auto') + \
        ' (TX2_INFER_EXECUTOR; auto = events where rclpy has it)'
    result['node_dds_env'] = {k: v for k, v in ros_env.child_env().items()
                              if k in (ros_env.PROFILE_VARIABLE, ros_env.QOS_FROM_XML)}
    from tx2_infer_ros import heap
    result['node_frame_block_bytes'] = heap.frame_block()
    write_json(args.out, result, indent=2)
    print(json.dumps(result, indent=2))
    print(f"overhead beyond the engine: median {result['overhead_ms']['median']:.2f} ms, "
          f"p99 {result['overhead_ms']['p99']:.2f} ms (goal <= 2 ms); written to {args.out}")


if __name__ == '__main__':
    main()
