"""The executor choice (``tx2_infer_ros/executors.py``): the pure resolution, and the real node
process run with each executor (``TX2_INFER_EXECUTOR``, inherited by the child): it says which
at start-up, walks its lifecycle, takes a parameter, answers a frame, publishes diagnostics,
resubscribes on re-activate and exits cleanly on Ctrl-C."""
from pathlib import Path

import cv2
import pytest

from rospeer import T, active_node, free_domain_id
from sensor_msgs.msg import Image

from tx2_infer_core import assets
from tx2_infer_ros import conversions, executors
from tx2_infer_ros.executors import ENV_VARIABLE, resolve_executor

DOMAIN = free_domain_id()
HAS_EVENTS = executors.events_executor_class() is not None


@pytest.mark.parametrize('name, available, expected', [
    ('auto', True, 'events'), ('auto', False, 'single'), ('', True, 'events'),
    (None, False, 'single'), ('events', True, 'events'), ('single', True, 'single'),
    ('single', False, 'single'), (' Events ', True, 'events')])
def test_resolve_executor(name, available, expected):
    assert resolve_executor(name, available) == expected


def test_unknown_or_missing_executor_fails_loudly():
    with pytest.raises(ValueError, match='TX2_INFER_EXECUTOR.*multi'):
        resolve_executor('multi', True)
    with pytest.raises(RuntimeError, match='no rclpy.experimental.EventsExecutor'):
        resolve_executor('events', False)


def photo_message():
    image = cv2.resize(cv2.imread(str(assets.fetch_photos(['dog.jpg'])[0])), (320, 240))
    return conversions.fill_image(Image(), image, 'bgr8')


@pytest.mark.parametrize('name', ['single', pytest.param('events', marks=pytest.mark.skipif(
    not HAS_EVENTS, reason='this rclpy has no EventsExecutor'))])
def test_node_runs_on_the_chosen_executor(name, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VARIABLE, name)
    log = Path(tmp_path) / 'det.log'
    with active_node(DOMAIN, tmp_path, args=['-p', 'publish_annotated:=false']) as peer:
        assert f'executor: {name}' in log.read_text()
        assert peer.set_params(conf_threshold=0.2)[0].successful
        # Re-activate: the subscription and timers are destroyed and made again while spinning.
        assert peer.change_state(T.TRANSITION_DEACTIVATE)
        assert peer.change_state(T.TRANSITION_ACTIVATE)
        msg = photo_message()
        assert peer.wait_for(lambda: peer.image_pub.get_subscription_count() > 0)
        for _ in range(3):
            msg.header.stamp = peer.node.get_clock().now().to_msg()
            peer.image_pub.publish(msg)
            if peer.wait_for(lambda: peer.detections, timeout=20.0):
                break
        assert peer.detections, log.read_text()[-3000:]
        assert any(d.results[0].hypothesis.class_id == '16'  # COCO dog
                   for d in peer.detections[0][0].detections)
        assert peer.wait_for(lambda: int(peer.diag_values().get('frames', 0)) >= 1, 5.0)
    # active_node asserted the exit code (0) after Ctrl-C.


def test_a_bad_choice_ends_the_node_with_one_line_and_status_2(tmp_path, monkeypatch):
    import subprocess
    import sys
    from tx2_infer_ros import ros_env
    env = ros_env.child_env(domain_id=free_domain_id(), log_dir=tmp_path)
    env[ENV_VARIABLE] = 'fast'
    run = subprocess.run([sys.executable, '-m', 'tx2_infer_ros.detector_node'], env=env,
                         capture_output=True, text=True, timeout=60)
    out = run.stdout + run.stderr
    assert run.returncode == 2, out[-2000:]
    assert f"{ENV_VARIABLE}='fast'" in out and 'Traceback' not in out
