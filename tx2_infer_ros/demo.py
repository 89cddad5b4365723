"""The ROS demo: the detector node, a camera publisher playing real photos and a printing
subscriber as three processes on loopback; drives the lifecycle (configure, activate), runs for
a bounded number of frames or seconds, then prints a summary (frames, fps, latency, drops).

    python -m tx2_infer_ros.demo [--frames 60] [--timeout 120] [--rate 10] [--out DIR]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState

from tx2_infer_ros import ros_env


def _spawn(module, params, env, log_dir, name=None):
    args = [a for k, v in params.items() for a in ('-p', f'{k}:={v}')]
    args += ['-r', f'__node:={name}'] if name else []
    log = open(Path(log_dir) / f'{module}.log', 'w')
    out = None if module == 'detection_printer' else log
    return subprocess.Popen([sys.executable, '-m', f'tx2_infer_ros.{module}', '--ros-args',
                             *args], env=env, stdout=out, stderr=log)


def _transition(node, client, transition_id, timeout):
    future = client.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    if not future.done() or not future.result().success:
        raise RuntimeError(f'lifecycle transition {transition_id} failed (see the node log)')


def drive_lifecycle(domain_id, timeout=300.0):
    """configure then activate /tx2_infer_detector through its change_state service."""
    rclpy.init(domain_id=domain_id)
    node = rclpy.create_node('tx2_infer_demo')
    try:
        client = node.create_client(ChangeState, '/tx2_infer_detector/change_state')
        if not client.wait_for_service(timeout_sec=60):
            raise RuntimeError('the detector node did not come up')
        print('configuring the detector (loads or builds the engine) ...', flush=True)
        _transition(node, client, Transition.TRANSITION_CONFIGURE, timeout)
        _transition(node, client, Transition.TRANSITION_ACTIVATE, 30)
        print('detector active', flush=True)
    finally:
        node.destroy_node()
        rclpy.shutdown()


def _print_summary(summary, elapsed, out):
    print('\n==== tx2_infer ROS demo summary ====')
    print(f"frames with detections: {summary['frames']} in {elapsed:.1f} s, "
          f"{summary['fps']:.2f} fps")
    if summary['frames']:
        print(f"latency (camera stamp -> detections received): p50 "
              f"{summary['latency_p50_ms']:.1f} ms, p99 {summary['latency_p99_ms']:.1f} ms")
    print(f"detector drops per cause: {summary['drops']}")
    print(f"detector: {summary['detector']}")
    print(f"annotated frames saved: {summary['saved_images']} in {out}")


def run(frames=60, timeout=120.0, rate=10.0, out='out/ros_demo', backend='cpu'):
    """Start the three processes, run bounded, stop them, print and return the summary.
    ``backend``: the detector's (cpu: ONNX Runtime when installed, else numpy)."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix='tx2_infer_demo_'))
    domain_id = 10 + os.getpid() % 80
    env = ros_env.child_env(domain_id=domain_id, log_dir=logs)
    ros_env.apply_to_this_process(env)
    summary_path = logs / 'summary.json'
    procs = [_spawn('detector_node', {'backend': backend, 'publish_annotated': 'true'}, env, logs,
                    name='tx2_infer_detector'),
             _spawn('detection_printer', {'save_dir': out, 'summary_path': summary_path},
                    env, logs)]
    start = time.monotonic()
    try:
        drive_lifecycle(domain_id)
        procs.append(_spawn('image_publisher', {'rate': rate, 'count': frames,
                                                'wait_for_subscribers': 1}, env, logs))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and procs[2].poll() is None:
            time.sleep(0.5)  # the publisher exits after its frames
        time.sleep(2.0)  # the last frames
    finally:
        for proc in reversed(procs):
            proc.send_signal(2)
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else \
        {'frames': 0, 'fps': 0.0, 'drops': {}, 'detector': {}, 'saved_images': 0}
    _print_summary(summary, time.monotonic() - start, out)
    print(f'logs: {logs}')
    return summary


def main(argv=None):
    """Command line of the demo."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--frames', type=int, default=60, help='camera frames to publish')
    parser.add_argument('--timeout', type=float, default=120.0, help='seconds at most')
    parser.add_argument('--rate', type=float, default=10.0, help='camera rate (Hz)')
    parser.add_argument('--out', default='out/ros_demo', help='annotated frames folder')
    parser.add_argument('--backend', default='cpu', help='detector backend (default cpu)')
    args = parser.parse_args(argv)
    summary = run(args.frames, args.timeout, args.rate, args.out, args.backend)
    return 0 if summary['frames'] > 0 else 1


if __name__ == '__main__':
    sys.exit(main())
