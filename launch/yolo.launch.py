"""Launch the tx2_infer detector: a LifecycleNode that configures and activates itself.

    ros2 launch tx2_infer_ros yolo.launch.py image:=/camera/image_raw namespace:=front \
        model_path:=/path/model.onnx

Parameters come from config/yolo.yaml. Large images with best-effort QoS need the Fast DDS
profile config/fastdds_large_images.xml in FASTDDS_DEFAULT_PROFILES_FILE of every process.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from lifecycle_msgs.msg import Transition


def generate_launch_description():
    """The detector node, its parameters, and configure -> activate on start."""
    config = os.path.join(get_package_share_directory('tx2_infer_ros'), 'config', 'yolo.yaml')
    args = [DeclareLaunchArgument('image', default_value='/camera/image_raw',
                                  description='camera image topic (raw base name)'),
            DeclareLaunchArgument('model_path', default_value='',
                                  description='model file; empty = YOLOv3-tiny (COCO)'),
            DeclareLaunchArgument('namespace', default_value='',
                                  description='namespace of the node and its topics')]
    image = LaunchConfiguration('image')
    # Typed as str: launch reads an untyped substitution as YAML, and '' (the default) would be
    # None, which launch rejects (a path like 'yes' or '1e5' would change type too).
    model_path = ParameterValue(LaunchConfiguration('model_path'), value_type=str)
    # A remap target may be a list of substitutions and text, joined when the launch runs:
    # image:=/camera/image_raw also sends image/compressed to /camera/image_raw/compressed.
    node = LifecycleNode(
        package='tx2_infer_ros', executable='detector_node', name='tx2_infer_detector',
        namespace=LaunchConfiguration('namespace'), output='screen',
        parameters=[config, {'model_path': model_path}],
        remappings=[('image', image), ('image/compressed', [image, '/compressed'])])
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state='configuring', goal_state='inactive',
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]))
    return LaunchDescription(args + [node, activate, configure])
