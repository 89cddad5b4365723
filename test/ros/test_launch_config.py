"""The launch file compiles (launch is not installable here), and config/yolo.yaml holds every
node parameter with a value its validation accepts."""
import py_compile
from pathlib import Path

import pytest

yaml = pytest.importorskip('yaml')
pytest.importorskip('rcl_interfaces', reason='ROS messages are not installed')
from tx2_infer_ros import params  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_launch_file_compiles():
    py_compile.compile(str(ROOT / 'launch' / 'yolo.launch.py'), doraise=True)


def test_yaml_has_every_parameter_with_a_valid_value():
    values = yaml.safe_load((ROOT / 'config' / 'yolo.yaml').read_text())['/**'][
        'ros__parameters']
    assert set(values) == set(params.SPECS)
    for name, value in values.items():
        assert params.validate(name, value) is None, name
    assert params.resolve_classes(values['classes'], ['person']) is None


def test_fastdds_profile_has_a_16_mib_shm_segment_and_udp():
    text = (ROOT / 'config' / 'fastdds_large_images.xml').read_text()
    assert '<segment_size>16777216</segment_size>' in text and '<type>UDPv4</type>' in text
    assert '<useBuiltinTransports>false</useBuiltinTransports>' in text
