"""The node's lifecycle walked through its real change_state/get_state services, with two failed
configures (bad parameter, missing model), their recovery, and rebuild parameters refused while
active. The node runs as its own process with ``backend`` left at ``auto`` (config/yolo.yaml's
value): it must pick cuda where a GPU answers and cpu elsewhere."""
import pytest

from tx2_infer_core import assets
from tx2_infer_core.engine import resolve_backend
from rospeer import T, Peer, free_domain_id, start_node, stop_node

DOMAIN = free_domain_id()


@pytest.fixture(scope='module')
def peer(tmp_path_factory):
    logs = tmp_path_factory.mktemp('ros_lifecycle')
    proc = start_node(DOMAIN, logs, args=['-p', 'conf_threshold:=2.0',
                                          '-p', 'model_path:=/nonexistent/model.onnx'])
    p = Peer(DOMAIN, logs)
    p.ready()
    p.log = logs / 'det.log'
    yield p
    p.close()
    assert stop_node(proc) == 0, (logs / 'det.log').read_text()[-3000:]


def test_failed_configure_then_recovery_and_full_walk(peer):
    assert peer.state() == 'unconfigured'
    # 1: the bad override given on the command line fails configure, naming the parameter.
    assert not peer.change_state(T.TRANSITION_CONFIGURE)
    assert peer.state() == 'unconfigured'
    assert 'conf_threshold' in peer.log.read_text()
    assert peer.set_params(conf_threshold=0.3)[0].successful
    # 2: the missing model fails configure with its path in the log.
    assert not peer.change_state(T.TRANSITION_CONFIGURE)
    assert peer.state() == 'unconfigured'
    assert "'/nonexistent/model.onnx' does not exist" in peer.log.read_text()
    # Recovery: the default model (YOLOv3-tiny), then the whole state machine.
    assert peer.set_params(model_path='')[0].successful
    assert peer.get_params('backend')[0].string_value == 'auto'
    assert peer.change_state(T.TRANSITION_CONFIGURE)
    assert peer.state() == 'inactive'
    backend = resolve_backend('auto')     # cuda, else ort (numpy without onnxruntime)
    assert f"configured: {{'backend': '{backend}'" in peer.log.read_text()
    assert peer.change_state(T.TRANSITION_ACTIVATE)
    assert peer.state() == 'active'

    refused = peer.set_params(input_size=320)[0]
    assert not refused.successful and 'deactivate' in refused.reason
    refused = peer.set_params(qos_depth=5)[0]
    assert not refused.successful and 'deactivate' in refused.reason
    refused = peer.set_params(labels_path=str(peer.log))[0]  # a readable file: only refused
    assert not refused.successful and 'deactivate' in refused.reason  # for being active

    assert peer.change_state(T.TRANSITION_DEACTIVATE)
    assert peer.state() == 'inactive'
    assert peer.change_state(T.TRANSITION_CLEANUP)
    assert peer.state() == 'unconfigured'
    assert peer.set_params(input_size=320)[0].successful  # applied on the next configure
    assert peer.change_state(T.TRANSITION_CONFIGURE)
    assert 'input_shape\': \'1x3x320x320' in peer.log.read_text()
    # An NHWC model (open_nsfw, 1x224x224x3): input_size keeps the model's layout.
    assert peer.change_state(T.TRANSITION_CLEANUP)
    assert peer.set_params(model_path=str(assets.fetch('open_nsfw.onnx')), input_size=224,
                           backend='cpu')[0].successful
    assert peer.change_state(T.TRANSITION_CONFIGURE)
    assert "'precision': 'fp32', 'frame_path': 'host', 'model': 'open_nsfw.onnx', " \
        "'input_shape': '1x224x224x3'" in peer.log.read_text()
    assert peer.change_state(T.TRANSITION_ACTIVATE)
    assert peer.change_state(T.TRANSITION_ACTIVE_SHUTDOWN)
    assert peer.state() == 'finalized'


def test_invalid_values_are_rejected_with_a_reason(peer):
    for name, value, words in [('backend', 'tpu', 'one of'), ('input_size', 100, 'step'),
                               ('precision', 'int4', 'unknown precision'),
                               ('conf_threshold', 1.5, ''), ('qos_reliability', 'x', 'one of'),
                               ('labels_path', '/nonexistent/coco.names', 'No such file'),
                               ('labels_path', '/dev/zero', 'not a regular file')]:
        result = peer.set_params(**{name: value})[0]
        assert not result.successful, name
        assert words in result.reason and result.reason, (name, result.reason)
