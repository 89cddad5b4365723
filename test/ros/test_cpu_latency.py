"""The CPU wake-up latency request (``cpu_wake_latency_us``): written as the kernel reads it,
held while the node is active and withdrawn when it deactivates, the kernel's own target read
back as the oracle (where this process may write /dev/cpu_dma_latency)."""
import os
import struct

import pytest

from tx2_infer_ros.cpu_latency import (PM_QOS_DEVICE, WakeLatencyRequest, current_wake_latency,
                                       request_wake_latency)


def test_the_request_is_a_native_int32_held_until_closed(tmp_path):
    path = tmp_path / 'qos'
    path.write_bytes(b'')
    request = WakeLatencyRequest(25, str(path))
    assert path.read_bytes() == struct.pack('=i', 25)
    assert current_wake_latency(str(path)) == 25
    request.close()
    request.close()   # idempotent
    with pytest.raises(OSError):
        os.fstat(request._fd if request._fd is not None else -1)


def test_negative_means_leave_the_system_alone_and_failures_are_logged(tmp_path):
    warnings = []
    assert request_wake_latency(-1, warnings.append, str(tmp_path / 'qos')) is None
    assert warnings == []
    missing = tmp_path / 'missing' / 'qos'
    assert request_wake_latency(0, warnings.append, str(missing)) is None
    assert len(warnings) == 1 and str(missing) in warnings[0] and 'README' in warnings[0]
    assert current_wake_latency(str(missing)) is None


@pytest.mark.skipif(not os.access(PM_QOS_DEVICE, os.R_OK | os.W_OK),
                    reason=f'{PM_QOS_DEVICE} is not writable here')
def test_the_node_holds_the_request_while_active(tmp_path):
    pytest.importorskip('rclpy')
    from rospeer import T, active_node, free_domain_id
    before = current_wake_latency()
    asked = 7 if before is None or before > 7 else max(before - 1, 0)
    with active_node(free_domain_id(), tmp_path,
                     args=['-p', f'cpu_wake_latency_us:={asked}']) as peer:
        assert current_wake_latency() == asked
        assert peer.change_state(T.TRANSITION_DEACTIVATE)
        assert current_wake_latency() == before
        assert peer.change_state(T.TRANSITION_ACTIVATE)
        assert current_wake_latency() == asked
    assert current_wake_latency() == before
