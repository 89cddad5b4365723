"""The package's Fast DDS profiles load in Fast DDS itself (a value it does not know drops the
WHOLE file, silently but for a log line: the large shared-memory segment with it), and the
processes we start get the profile and rmw's "QoS from XML" switch together."""
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip('rclpy', reason='ROS is not installed')
from rospeer import free_domain_id  # noqa: E402
from tx2_infer_ros import ros_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PROFILES = sorted(p.name for p in (ROOT / 'config').glob('fastdds_*.xml'))
NODE = '''
import rclpy
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node('profile_check')
node.create_subscription(Image, 'image', lambda m: None, 10)
node.create_publisher(Image, 'image_out', 10)
node.destroy_node()
rclpy.shutdown()
print('created')
'''


def fastdds_errors(profile_path, tmp_path):
    """What Fast DDS says when a node with an image reader and writer starts on the profile."""
    env = ros_env.child_env(domain_id=free_domain_id(), log_dir=tmp_path)
    env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(profile_path)
    env['RMW_FASTRTPS_USE_QOS_FROM_XML'] = '1'
    run = subprocess.run([sys.executable, '-c', NODE], env=env, capture_output=True,
                         text=True, timeout=60)
    assert 'created' in run.stdout, run.stderr[-2000:]
    return [line for line in (run.stdout + run.stderr).splitlines() if 'XMLPARSER' in line]


@pytest.mark.parametrize('name', PROFILES)
def test_profile_loads_without_a_parser_error(name, tmp_path):
    assert fastdds_errors(ROOT / 'config' / name, tmp_path) == []


def test_a_value_fastdds_does_not_know_is_caught(tmp_path):
    """The check above can fail: the C++ enum name where the XML wants 'DYNAMIC_REUSABLE'
    (the mistake that once dropped the whole profile without anyone noticing)."""
    bad = tmp_path / 'bad.xml'
    text = (ROOT / 'config' / PROFILES[0]).read_text()
    assert '>DYNAMIC_REUSABLE<' in text
    bad.write_text(text.replace('>DYNAMIC_REUSABLE<', '>DYNAMIC_REUSABLE_MEMORY_MODE<'))
    assert fastdds_errors(bad, tmp_path) != []


def test_child_env_puts_children_on_our_profile_with_qos_from_xml(monkeypatch):
    monkeypatch.delenv('FASTDDS_DEFAULT_PROFILES_FILE', raising=False)
    monkeypatch.delenv('RMW_FASTRTPS_USE_QOS_FROM_XML', raising=False)
    env = ros_env.child_env()
    assert Path(env['FASTDDS_DEFAULT_PROFILES_FILE']).name == 'fastdds_large_images.xml'
    assert env['RMW_FASTRTPS_USE_QOS_FROM_XML'] == '1'
    env = ros_env.child_env(dds_profile='fastdds_shm_only.xml')
    assert Path(env['FASTDDS_DEFAULT_PROFILES_FILE']).name == 'fastdds_shm_only.xml'
    assert env['RMW_FASTRTPS_USE_QOS_FROM_XML'] == '1'
    env = ros_env.child_env(dds_profile=None)
    assert 'FASTDDS_DEFAULT_PROFILES_FILE' not in env
    assert 'RMW_FASTRTPS_USE_QOS_FROM_XML' not in env


def test_child_env_keeps_a_users_own_profile_as_it_is(monkeypatch):
    monkeypatch.setenv('FASTDDS_DEFAULT_PROFILES_FILE', '/home/me/profile.xml')
    monkeypatch.delenv('RMW_FASTRTPS_USE_QOS_FROM_XML', raising=False)
    env = ros_env.child_env()
    assert env['FASTDDS_DEFAULT_PROFILES_FILE'] == '/home/me/profile.xml'
    assert 'RMW_FASTRTPS_USE_QOS_FROM_XML' not in env
