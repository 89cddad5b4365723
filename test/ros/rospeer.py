"""Test helpers: start the detector node as its own process and talk to it as a real ROS peer
(lifecycle services, parameter services, topics) from the test process."""
import atexit
import contextlib
import fcntl
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy is not installed (pip install ros-rclpy)')
from tx2_infer_ros import executors, ros_env  # noqa: E402

if not ros_env.preload_vision_msgs():
    pytest.skip('vision_msgs is not built: run `make ros-msgs`', allow_module_level=True)

from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402

T = Transition
_HELD_DOMAINS = []  # lock files of the domain ids this process took
_STARTED = []       # detector nodes this process started (``stop_leftovers``)


@atexit.register
def stop_leftovers():
    """Kill the nodes still running when the test process ends: a fixture whose setup failed
    never reaches its ``stop_node``, and its node, left in the domain id the next run takes
    again, answered that run's requests as a second 'det' (test_qos failed on it each run)."""
    for proc in _STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def free_domain_id(first=10, last=100) -> int:
    """A ROS domain id that no other test or bench on this machine is using (sessions may run
    side by side): an exclusive lock on a file per id, held until this process exits."""
    for domain in range(first, last + 1):
        path = Path(tempfile.gettempdir()) / f'tx2_infer_ros_domain_{domain}.lock'
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _HELD_DOMAINS.append(fd)
        return domain
    raise RuntimeError(f'no free ROS domain id in {first}..{last}')


def start_node(domain_id, log_dir, name='det', args=(), dds_profile=True, nice=0):
    """The detector node as a child process with its own env; logs go to log_dir/node.log.
    ``dds_profile``: with our Fast DDS profile (else Fast DDS defaults); ``nice``: its
    scheduling niceness (negative: ahead of other work on a shared machine; needs root)."""
    env = ros_env.child_env(domain_id=domain_id, log_dir=log_dir,
                            dds_profile='default' if dds_profile else None)
    cmd = [sys.executable, '-m', 'tx2_infer_ros.detector_node', '--ros-args',
           '-r', f'__node:={name}', *args]
    if nice:
        cmd = ['nice', '-n', str(int(nice))] + cmd
    log = open(Path(log_dir) / f'{name}.log', 'w')
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    _STARTED.append(proc)
    return proc


def stop_node(proc):
    """SIGINT (as Ctrl-C), then kill if it does not exit."""
    proc.send_signal(2)
    try:
        return proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


@contextlib.contextmanager
def active_node(domain_id, log_dir, args=()):
    """The real node (backend cpu, reliable QoS of depth 10, ``args`` after) started, brought to
    active through its lifecycle services, with a Peer that publishes raw images on 'image'
    (``peer.image_pub``); stopped at the end, which must exit cleanly."""
    proc = start_node(domain_id, log_dir, args=['-p', 'backend:=cpu', '-p', 'qos_depth:=10',
                                                '-p', 'qos_reliability:=reliable', *args])
    peer = Peer(domain_id, log_dir)
    try:
        peer.ready()
        assert peer.change_state(T.TRANSITION_CONFIGURE)
        assert peer.change_state(T.TRANSITION_ACTIVATE)
        from sensor_msgs.msg import Image
        peer.image_pub = peer.node.create_publisher(Image, 'image', 10)
        yield peer
    finally:
        peer.close()
        code = stop_node(proc)
    assert code == 0, f'exit code {code}: ' + (Path(log_dir) / 'det.log').read_text()[-3000:]


def rss_mb(pid) -> float:
    """Resident memory of a process in MiB."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return 0.0


class Peer:
    """An rclpy node in the test process facing the detector node ``name``."""

    def __init__(self, domain_id, log_dir, name='det', detections=True, executor='single'):
        ros_env.apply_to_this_process(ros_env.child_env(domain_id, log_dir))
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('test_peer', context=self.context)
        # 'single' (tests) or 'events' / 'auto' (benchmarks: a consumer as fast as the node)
        events = executors.events_executor_class()
        self.executor_name = executors.resolve_executor(executor, events is not None)
        self.executor = (events if self.executor_name == 'events'
                         else SingleThreadedExecutor)(context=self.context)
        self.executor.add_node(self.node)
        self.target = name
        self._change = self.node.create_client(ChangeState, f'/{name}/change_state')
        self._get = self.node.create_client(GetState, f'/{name}/get_state')
        self.params = AsyncParameterClient(self.node, name)
        self.detections, self.diagnostics = [], []
        if detections:  # False: the caller subscribes itself (e.g. raw, for timing)
            self.node.create_subscription(Detection2DArray, 'detections', self._on_det, 100)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics.append,
                                      10)

    def _on_det(self, msg):
        self.detections.append((msg, time.time()))

    def spin_for(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def wait(self, future, timeout=180.0):
        end = time.monotonic() + timeout
        while not future.done() and time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)
        assert future.done(), f'no answer within {timeout} s'
        return future.result()

    def ask(self, request, timeout=180.0, retry_s=10.0):
        """The answer to an idempotent service call, ``request()`` making its future, sent
        again every ``retry_s`` s: ``ready()`` knows only that the node's request readers
        matched this client, and a request answered before the node's reply writer has
        matched it too is answered into the void (a CI run waited 180 s on one)."""
        end = time.monotonic() + timeout
        while True:
            future = request()
            if self.wait_for(future.done, timeout=min(retry_s, end - time.monotonic())):
                return future.result()
            assert time.monotonic() < end, f'no answer within {timeout} s'

    def wait_for(self, predicate, timeout=30.0):
        end = time.monotonic() + timeout
        while not predicate() and time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)
        return predicate()

    def wait_reliable_readers(self, publishers, timeout=30.0, settle=0.3) -> bool:
        """Wait until each of ``publishers`` (reliable) is matched by exactly one reader, a
        reliable one, for ``settle`` s. With qos_reliability auto the node subscribes
        best_effort first and resubscribes within a second of seeing reliable publishers;
        a frame published across that swap is lost by design, so tests that count every
        frame wait for it here."""
        from rclpy.qos import ReliabilityPolicy

        def matched():
            for pub in publishers:
                infos = self.node.get_subscriptions_info_by_topic(pub.topic_name)
                if (pub.get_subscription_count() != 1 or len(infos) != 1
                        or infos[0].qos_profile.reliability != ReliabilityPolicy.RELIABLE):
                    return False
            return True
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.wait_for(matched, timeout=end - time.monotonic()):
                self.spin_for(settle)
                if matched():
                    return True
        return False

    def ready(self, timeout=30.0):
        assert self._change.wait_for_service(timeout_sec=timeout), 'node did not come up'
        assert self._get.wait_for_service(timeout_sec=timeout)
        assert self.params.wait_for_services(timeout_sec=timeout)

    def change_state(self, transition_id) -> bool:
        req = ChangeState.Request(transition=Transition(id=transition_id))
        return self.wait(self._change.call_async(req)).success

    def state(self) -> str:
        return self.ask(lambda: self._get.call_async(GetState.Request())).current_state.label

    def set_params(self, **values):
        """Set parameters one by one through the real service -> list of SetParametersResult."""
        params = [Parameter(k, Parameter.Type.STRING_ARRAY, v) if v == [] else
                  Parameter(k, value=v) for k, v in values.items()]
        return self.ask(lambda: self.params.set_parameters(params)).results

    def get_params(self, *names):
        return list(self.ask(lambda: self.params.get_parameters(list(names))).values)

    def diag_values(self):
        """key -> value of the node's latest diagnostics."""
        for array in reversed(self.diagnostics):
            for status in array.status:
                if status.name.startswith(self.target):
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
