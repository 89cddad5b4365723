"""Fraction of camera frames that reach the detector node's image subscription, per case.

The package's camera (``image_publisher``, its own process) plays photos at 30 Hz, 640x480 and
1280x720 bgr8, with a best-effort (sensor-data) or a reliable publisher. The detector node (its
own process, the package's defaults: qos_reliability auto, depth 1; CPU backend at input 160 so
inference stays cheap) is activated once the camera is in the graph; the camera starts sending
when the node's subscription has matched it, and stops after ``--frames`` frames. Received =
the node's processed frames + its drops (stale, bad frames) from /diagnostics. Profiles: none
(Fast DDS defaults in both processes), node only (what the launch file sets), both (what the
README asks of the camera driver too). Without profiles, the old default (a best_effort
subscription whatever the publisher) is measured against reliable publishers too. Writes
bench/results/ros_delivery_cpu.json; about two minutes. Run with
`python bench/bench_ros_delivery.py` in the venv after `make ros-msgs`.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'test' / 'ros'))
from benchlib import cpu_name, versions, write_json  # noqa: E402
from rospeer import T, Peer, free_domain_id, start_node, stop_node  # noqa: E402
from tx2_infer_ros import ros_env  # noqa: E402

SIZES = ((640, 480), (1280, 720))
RELIABILITIES = ('best_effort', 'reliable')
# (node has the profile, camera has the profile)
PROFILES = {'none': (False, False), 'node_only': (True, False), 'both': (True, True)}


def received(peer) -> int:
    """Frames the node's subscription took so far: processed + dropped (any cause)."""
    values = peer.diag_values()
    return int(values.get('frames', 0)) + sum(int(v) for k, v in values.items()
                                              if k.startswith('dropped_'))


def settled_count(peer, quiet=2) -> int:
    """``received`` once ``quiet`` consecutive diagnostics (1 Hz) agree."""
    last, same = None, 0
    while same < quiet:
        seen = len(peer.diagnostics)
        assert peer.wait_for(lambda: len(peer.diagnostics) > seen, timeout=5), 'no diagnostics'
        count = received(peer)
        same, last = (same + 1, last) if count == last else (0, count)
    return last


def start_camera(domain, logs, size, reliability, frames, rate, profile):
    env = ros_env.child_env(domain_id=domain, log_dir=logs,
                            dds_profile='default' if profile else None)
    params = {'rate': float(rate), 'count': frames, 'width': size[0], 'height': size[1],
              'reliability': reliability, 'wait_for_subscribers': 1}
    cmd = [sys.executable, '-m', 'tx2_infer_ros.image_publisher', '--ros-args']
    for name, value in params.items():
        cmd += ['-p', f'{name}:={value}']
    log = open(Path(logs) / 'camera.log', 'a')
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def run_case(peer, domain, logs, size, reliability, frames, rate, camera_profile,
             node_qos='auto') -> dict:
    """One camera run against the (inactive) node, its qos_reliability ``node_qos``."""
    assert peer.set_params(qos_reliability=node_qos)[0].successful
    before = settled_count(peer)
    camera = start_camera(domain, logs, size, reliability, frames, rate, camera_profile)
    try:
        assert peer.wait_for(lambda: peer.node.count_publishers('/image') > 0, timeout=30)
        assert peer.change_state(T.TRANSITION_ACTIVATE)
        peer.wait_for(lambda: camera.poll() is not None, timeout=frames / rate + 30)
        chosen = peer.diag_values().get('image_reliability', '?')
    finally:
        if camera.poll() is None:
            camera.kill()
        camera.wait()
    got = settled_count(peer) - before
    assert peer.change_state(T.TRANSITION_DEACTIVATE)
    return {'size': f'{size[0]}x{size[1]}', 'publisher': reliability, 'node_qos': node_qos,
            'subscription': chosen,
            'sent': frames, 'received': got, 'fraction': round(got / frames, 3)}


def run_node(domain, logs, node_profile, camera_profiles, frames, rate) -> list:
    """Start the node (with or without the profile), run every case against it."""
    proc = start_node(domain, logs, args=['-p', 'backend:=cpu', '-p', 'input_size:=160'],
                      dds_profile=node_profile)
    peer = Peer(domain, logs)
    rows = []
    try:
        peer.ready()
        assert peer.change_state(T.TRANSITION_CONFIGURE), (logs / 'det.log').read_text()
        for name, camera_profile in camera_profiles:
            cases = [(size, r, 'auto') for size in SIZES for r in RELIABILITIES]
            if not node_profile:
                cases += [(size, 'reliable', 'best_effort') for size in SIZES]
            for size, reliability, node_qos in cases:
                row = run_case(peer, domain, logs, size, reliability, frames, rate,
                               camera_profile, node_qos)
                rows.append({'profile': name, **row})
                print(rows[-1], flush=True)
    finally:
        peer.close()
        stop_node(proc)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=60)
    parser.add_argument('--rate', type=float, default=30.0)
    parser.add_argument('--out', default=str(ROOT / 'bench' / 'results' /
                                             'ros_delivery_cpu.json'))
    args = parser.parse_args(argv)
    logs, domain = Path(tempfile.mkdtemp(prefix='tx2_infer_bench_delivery_')), free_domain_id()
    start = time.monotonic()
    rows = []
    for node_profile in (False, True):
        cameras = [(n, cam) for n, (node, cam) in PROFILES.items() if node == node_profile]
        rows += run_node(domain, logs, node_profile, cameras, args.frames, args.rate)
    found = versions('rclpy', 'ros-rmw-fastrtps-cpp')
    write_json(args.out, {
        'host': socket.gethostname(),
        'device': f'{cpu_name()} (CPU, {os.cpu_count()} cores visible)',
        'python': found['python'], 'rclpy': found['rclpy'] + ' (ROS 2 Kilted PyPI wheels)',
        'rmw': 'rmw_fastrtps_cpp ' + found['ros-rmw-fastrtps-cpp'],
        'camera': f'tx2_infer_ros image_publisher, {args.rate:g} Hz, bgr8 photos, '
                  f'{args.frames} frames per case',
        'node': 'detector_node defaults (qos_reliability auto, qos_depth 1), backend cpu, '
                'input_size 160; node_qos best_effort = the default before auto',
        'profiles': {'none': 'Fast DDS defaults in both processes',
                     'node_only': 'config/fastdds_large_images.xml in the node only '
                                  '(what launch/yolo.launch.py sets)',
                     'both': 'the profile in the node and the camera processes'},
        'cases': rows, 'seconds': round(time.monotonic() - start, 1),
        'when': time.strftime('%Y-%m-%d %H:%M:%S')}, indent=1)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
