"""The launch file compiles and does what it should (run against fake launch modules: launch is
not installable here), and config/yolo.yaml holds every node parameter with a value its
validation accepts."""
import py_compile
from pathlib import Path

import pytest

yaml = pytest.importorskip('yaml')
pytest.importorskip('rcl_interfaces', reason='ROS messages are not installed')
from lifecycle_msgs.msg import Transition  # noqa: E402
from tx2_infer_ros import params  # noqa: E402
import fakelaunch  # noqa: E402

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


def test_yaml_values_are_the_parameter_defaults():
    # The launch file's YAML is what a user gets; the README documents SPECS' defaults.
    values = yaml.safe_load((ROOT / 'config' / 'yolo.yaml').read_text())['/**'][
        'ros__parameters']
    for name, value in values.items():
        if isinstance(value, list):     # [""]: YAML cannot hold an empty list
            value = [v for v in value if v]
        default = params.SPECS[name].default
        assert value == default and type(value) is type(default), (name, value, default)


def test_fastdds_profile_has_a_16_mib_shm_segment_and_udp():
    text = (ROOT / 'config' / 'fastdds_large_images.xml').read_text()
    assert '<segment_size>16777216</segment_size>' in text and '<type>UDPv4</type>' in text
    assert '<useBuiltinTransports>false</useBuiltinTransports>' in text


# ---- the launch file's logic, run against fake launch modules (fakelaunch.py) ---------------
@pytest.fixture
def launch_file(monkeypatch):
    return fakelaunch.load(monkeypatch)


def test_launch_activates_only_after_the_first_configure(launch_file):
    actions = fakelaunch.run(launch_file)
    node, = fakelaunch.of_type(actions, 'LifecycleNode')
    configure, = fakelaunch.of_type(actions, 'EmitEvent')
    assert configure.kwargs['event'].kwargs['transition_id'] == Transition.TRANSITION_CONFIGURE
    register, = fakelaunch.of_type(actions, 'RegisterEventHandler')
    handler = register.args[0]
    assert handler.kwargs['target_lifecycle_node'] is node
    assert (handler.kwargs['start_state'], handler.kwargs['goal_state']) == \
        ('configuring', 'inactive')
    # launch fires a handler on every matching transition unless handle_once is set: without
    # it, the README's deactivate, cleanup, set, configure recipe would end in active.
    assert handler.kwargs.get('handle_once') is True
    activate, = handler.kwargs['entities']
    assert activate.kwargs['event'].kwargs['transition_id'] == Transition.TRANSITION_ACTIVATE


def test_launch_model_path_overrides_the_yaml_only_when_given(launch_file):
    node, = fakelaunch.of_type(fakelaunch.run(launch_file), 'LifecycleNode')
    yaml_file = fakelaunch.SHARE + '/config/yolo.yaml'
    assert node.kwargs['parameters'] == [yaml_file]
    node, = fakelaunch.of_type(fakelaunch.run(launch_file, model_path='/m/yes.onnx'),
                               'LifecycleNode')
    first, given = node.kwargs['parameters']
    assert first == yaml_file
    value = given['model_path']
    assert value.args == ('/m/yes.onnx',) and value.kwargs['value_type'] is str


def test_launch_sets_the_dds_profile_unless_the_user_did(launch_file):
    node, = fakelaunch.of_type(fakelaunch.run(launch_file), 'LifecycleNode')
    assert node.kwargs['additional_env'] == {
        'FASTDDS_DEFAULT_PROFILES_FILE': fakelaunch.SHARE + '/config/fastdds_large_images.xml',
        'RMW_FASTRTPS_USE_QOS_FROM_XML': '1'}
    mine = {'FASTDDS_DEFAULT_PROFILES_FILE': '/home/me/profile.xml'}
    node, = fakelaunch.of_type(fakelaunch.run(launch_file, environment=mine), 'LifecycleNode')
    assert node.kwargs['additional_env'] == {}
    # the README's export of our profile (for the camera) in the launching shell
    ours = {'FASTDDS_DEFAULT_PROFILES_FILE': fakelaunch.SHARE + '/config/fastdds_shm_only.xml'}
    node, = fakelaunch.of_type(fakelaunch.run(launch_file, environment=ours), 'LifecycleNode')
    assert node.kwargs['additional_env'] == {'RMW_FASTRTPS_USE_QOS_FROM_XML': '1'}
    ours['RMW_FASTRTPS_USE_QOS_FROM_XML'] = '0'
    node, = fakelaunch.of_type(fakelaunch.run(launch_file, environment=ours), 'LifecycleNode')
    assert node.kwargs['additional_env'] == {}


def test_launch_remaps_raw_and_compressed_image(launch_file):
    node, = fakelaunch.of_type(fakelaunch.run(launch_file, image='/front/image_raw'),
                               'LifecycleNode')
    assert node.kwargs['remappings'] == [('image', '/front/image_raw'),
                                         ('image/compressed', '/front/image_raw/compressed')]
    assert (node.kwargs['package'], node.kwargs['executable']) == ('tx2_infer_ros',
                                                                   'detector_node')
