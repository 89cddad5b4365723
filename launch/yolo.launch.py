"""Launch the tx2_infer detector: a LifecycleNode that configures and activates itself once.

    ros2 launch tx2_infer_ros yolo.launch.py image:=/camera/image_raw namespace:=front \
        model_path:=/path/model.onnx

Parameters come from config/yolo.yaml; ``model_path:=`` overrides the YAML's only when given.
The node is configured, then activated the first time it reaches inactive; a later configure
(the deactivate, cleanup, set, configure recipe) leaves it inactive. The node's process gets
FASTDDS_DEFAULT_PROFILES_FILE = config/fastdds_large_images.xml and
RMW_FASTRTPS_USE_QOS_FROM_XML=1 unless a profile is already set; the camera driver's process
needs the same profile for large best-effort images (README).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from lifecycle_msgs.msg import Transition

PACKAGE = 'tx2_infer_ros'
PROFILE_VARIABLE = 'FASTDDS_DEFAULT_PROFILES_FILE'
PROFILE = 'fastdds_large_images.xml'
QOS_FROM_XML = 'RMW_FASTRTPS_USE_QOS_FROM_XML'


def node_parameters(config, model_path):
    """The YAML, then ``model_path`` only when given (else the YAML's own value holds). Typed
    as str: launch reads an untyped value as YAML ('yes' or '1e5' would change type)."""
    if not model_path:
        return [config]
    return [config, {'model_path': ParameterValue(model_path, value_type=str)}]


def dds_environment(environment, config_dir):
    """Extra environment of the node's process: our Fast DDS profile unless the user set one;
    with a profile of ours, rmw is told to take the readers' memory policy from it (the
    profile's comment says why)."""
    profile = environment.get(PROFILE_VARIABLE)
    extra = {} if profile else {PROFILE_VARIABLE: os.path.join(config_dir, PROFILE)}
    ours = os.path.realpath(os.path.dirname(profile or extra[PROFILE_VARIABLE])) == \
        os.path.realpath(config_dir)
    if ours and QOS_FROM_XML not in environment:
        extra[QOS_FROM_XML] = '1'
    return extra


def lifecycle_actions(node):
    """Configure now, and activate on the first configuring -> inactive transition only."""
    def change(transition_id):
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                           transition_id=transition_id))
    activate_once = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state='configuring', goal_state='inactive',
        entities=[change(Transition.TRANSITION_ACTIVATE)], handle_once=True))
    return [activate_once, change(Transition.TRANSITION_CONFIGURE)]


def launch_setup(context, *args, **kwargs):
    """The node and its lifecycle actions, from the launch arguments' values."""
    share = get_package_share_directory(PACKAGE)
    image = LaunchConfiguration('image').perform(context)
    model_path = LaunchConfiguration('model_path').perform(context)
    environment = getattr(context, 'environment', os.environ)
    node = LifecycleNode(
        package=PACKAGE, executable='detector_node', name='tx2_infer_detector',
        namespace=LaunchConfiguration('namespace'), output='screen',
        parameters=node_parameters(os.path.join(share, 'config', 'yolo.yaml'), model_path),
        remappings=[('image', image), ('image/compressed', image + '/compressed')],
        additional_env=dds_environment(environment, os.path.join(share, 'config')))
    return [node] + lifecycle_actions(node)


def generate_launch_description():
    """Launch arguments, then the node (built once their values are known)."""
    args = [DeclareLaunchArgument('image', default_value='/camera/image_raw',
                                  description='camera image topic (raw base name)'),
            DeclareLaunchArgument('model_path', default_value='',
                                  description='model file; empty = config/yolo.yaml\'s'),
            DeclareLaunchArgument('namespace', default_value='',
                                  description='namespace of the node and its topics')]
    return LaunchDescription(args + [OpaqueFunction(function=launch_setup)])
