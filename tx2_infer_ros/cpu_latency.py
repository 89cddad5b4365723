"""A CPU wake-up latency request held while the node is active (Linux PM QoS).

Between frames the node's CPUs go idle; a deep idle state takes tens of microseconds to leave,
and the DDS threads, the executor and every stage of the next frame pay it. On the GPU host
one run with the request was 0.16 ms faster than the run before it, the next 0.10 ms slower
(``bench/results/node_overhead_s12_h200/``): a gain depends on the machine's idle states.
Writing a number of microseconds to ``/dev/cpu_dma_latency`` and keeping the file open asks
the kernel to use only idle states that wake faster (0: none but polling, the most power);
closing the file withdraws the request. ``jetson_clocks`` and tuned's latency profiles do the
same. The file is root's: on a robot, a udev rule (README) lets the node's user write it. No
rclpy here.
"""
import os
import struct

PM_QOS_DEVICE = '/dev/cpu_dma_latency'


class WakeLatencyRequest:
    """The request for ``us`` microseconds, held until ``close``."""

    def __init__(self, us: int, path: str = PM_QOS_DEVICE):
        self.us, self.path = us, path
        self._fd = os.open(path, os.O_WRONLY)
        try:
            os.write(self._fd, struct.pack('=i', us))
        except OSError:
            os.close(self._fd)
            raise

    def close(self) -> None:
        """Withdraw the request (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def request_wake_latency(us: int, warn, path: str = PM_QOS_DEVICE):
    """A held ``WakeLatencyRequest`` for ``us`` >= 0; None for a negative ``us`` (leave the
    system as it is) or when the request cannot be made (``warn`` says why and how)."""
    if us < 0:
        return None
    try:
        return WakeLatencyRequest(us, path)
    except OSError as exc:
        warn(f'cpu_wake_latency_us={us} not applied: {path}: {exc.strerror or exc} '
             '(the node needs write access to it: see the README, "CPU wake-up latency")')
        return None


def current_wake_latency(path: str = PM_QOS_DEVICE):
    """The kernel's current CPU latency target in microseconds (reading the device), or None
    when it cannot be read."""
    try:
        with open(path, 'rb') as f:
            data = f.read(4)
    except OSError:
        return None
    return struct.unpack('=i', data)[0] if len(data) == 4 else None
