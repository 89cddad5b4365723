"""The detector node's parameters: defaults, descriptors (description, ranges) and validation.

Kept apart from the node so the rules are one table. ``REBUILD`` parameters need a new engine:
they are refused while the node is active and take effect on the next configure.
"""
import os
import re
import stat
from dataclasses import dataclass
from typing import Optional

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType)
from rclpy.parameter import Parameter

from tx2_infer_core.detect_params import DEFAULTS
from tx2_infer_core.engine import BACKENDS, CUDA_FP32_NOTE, PRECISIONS, precision_error
from tx2_infer_core.range_inputs import source_error
from tx2_infer_core.tracking import TrackParams
from tx2_infer_ros.cdr import KEYPOINT_THRESHOLD

INPUT_TYPES = ('raw', 'compressed')
DEFAULT_TOPIC = 'image'
_TOPIC = re.compile(r'^[~/]?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$')
RELIABILITIES = ('auto', 'best_effort', 'reliable')
LABELS_MAX_BYTES = 1 << 20  # a label file is a few KiB; refuse anything that could be a mistake
TRACK_DEFAULTS = TrackParams()


@dataclass(frozen=True)
class Spec:
    """One parameter: default, ROS type, description, and its allowed values or range."""

    default: object
    type: int
    description: str
    choices: tuple = ()
    low: Optional[float] = None
    high: Optional[float] = None
    step: float = 0


_S, _I, _D = ParameterType.PARAMETER_STRING, ParameterType.PARAMETER_INTEGER, \
    ParameterType.PARAMETER_DOUBLE
_B, _SA = ParameterType.PARAMETER_BOOL, ParameterType.PARAMETER_STRING_ARRAY

SPECS = {
    'model_path': Spec('', _S, 'Model: ONNX (.onnx), Darknet (.cfg, weights beside it) or '
                               'plan (.tx2plan); empty = Darknet YOLOv3-tiny (COCO)'),
    'labels_path': Spec('', _S, 'Class names, one per line; empty = the model\'s own '
                                '(COCO for the default model)'),
    'batch': Spec(1, _I, 'Images per engine run: > 1 builds the engine for a batch and runs '
                         "the cameras' waiting frames together (one per camera, up to batch); "
                         'a .tx2plan brings its own', low=1, high=16, step=1),
    'batch_wait_ms': Spec(0.0, _D, 'batch > 1: after the first frame arrives, wait up to this '
                                   "long for the other cameras' frames (0 = never wait)",
                          low=0.0, high=1000.0),
    'input_size': Spec(0, _I, 'Square network input size in pixels (multiple of 32); '
                              '0 = the model\'s own', low=0, high=4096, step=32),
    'backend': Spec('auto', _S, 'Inference backend: auto (cuda if available and its kernels '
                                'run the model, else cpu), cpu '
                                '(ort if onnxruntime is installed, else numpy), numpy, ort, cuda',
                    choices=BACKENDS),
    'precision': Spec('fp32', _S, f"Engine precision: {', '.join(PRECISIONS)} ({CUDA_FP32_NOTE}"
                                  ': fp32 there is reported as fp16; int8/mixed calibrate on '
                                  'real frames)', choices=PRECISIONS),
    'accuracy_budget': Spec(0.005, _D, 'precision mixed: the agreement with FP32 (mAP@0.5 or '
                                       'top-1) INT8 layers may lose', low=0.0, high=0.5),
    'calibration_images': Spec('', _S, 'precision int8/mixed: a folder of >= 8 real images of '
                                       'the scene; empty = the bundled photos and video'),
    'range_images': Spec('', _S, 'cuda, precision fp16/fp32: a folder of real images of the '
                                 'scene the FP16 range is measured on at build (values that '
                                 'would overflow FP16 are stored rescaled); empty = none'),
    'conf_threshold': Spec(DEFAULTS.conf_threshold, _D, 'Minimum detection score', low=0.0,
                           high=1.0),
    'iou_threshold': Spec(DEFAULTS.iou_threshold, _D, 'IoU above which NMS suppresses a box',
                          low=0.0, high=1.0),
    'max_detections': Spec(DEFAULTS.max_detections, _I, 'Most detections published per frame',
                           low=1, high=1000, step=1),
    'classes': Spec([], _SA, 'Only report these classes (names or ids); empty = all'),
    'cameras': Spec([], _SA, 'Image topics, one camera each (detections on <topic namespace>/'
                             'detections); empty = the one topic image'),
    'input_type': Spec('raw', _S, 'Subscribe to sensor_msgs/Image (raw) or '
                                  'sensor_msgs/CompressedImage (compressed, jpeg/png)',
                       choices=INPUT_TYPES),
    'qos_reliability': Spec('auto', _S, 'Image subscription reliability; auto = match the '
                                        "publishers' (reliable if all are, else best_effort; "
                                        'best_effort until one is seen)', choices=RELIABILITIES),
    'qos_depth': Spec(1, _I, 'Image subscription history depth', low=1, high=100, step=1),
    'publish_annotated': Spec(False, _B, 'Also publish the annotated image on annotated_image'),
    'keypoint_threshold': Spec(KEYPOINT_THRESHOLD, _D, 'Pose models: least visibility of a '
                               "keypoint published (a 'keypoint/<index>' hypothesis) and "
                               'drawn', low=0.0, high=1.0),
    'cpu_wake_latency_us': Spec(-1, _I, 'While active, keep the CPUs out of idle states '
                                        'slower to wake than this many microseconds (Linux '
                                        'PM QoS, /dev/cpu_dma_latency; needs write access '
                                        'to it): lower frame latency, more power. -1 = leave '
                                        'the system as it is', low=-1, high=1000000, step=1),
    'publish_timing': Spec(False, _B, 'Publish each frame\'s stage times on ~/frame_timing '
                                      '(diagnostic_msgs/DiagnosticArray with the image header)'),
    'track': Spec(True, _B, 'Give each detection a track ID (Detection2D.id; "" if untracked): '
                            'one ByteTrack-class tracker per camera, reset on cleanup'),
    'track_buffer': Spec(TRACK_DEFAULTS.buffer, _I, 'Frames a lost track is kept before '
                         'its ID is dropped', low=1, high=1000, step=1),
    'track_high_threshold': Spec(TRACK_DEFAULTS.high_threshold, _D, 'Score from which a '
                                 'detection is matched first and may start a track; lower '
                                 'ones (above conf_threshold) only extend tracks', low=0.0,
                                 high=1.0),
    'track_match_iou': Spec(TRACK_DEFAULTS.match_iou, _D, "Least IoU between a track's "
                            'predicted box and a high-score detection to match', low=0.0,
                            high=1.0),
    'depth_topic': Spec('', _S, 'Aligned depth image (16UC1 mm or 32FC1 m) for the first '
                                'camera; 3D positions on detections_3d beside its detections; '
                                'empty = off'),
    'depth_info_topic': Spec('', _S, "The depth image's CameraInfo; empty = camera_info "
                                     'beside depth_topic'),
    'depth_slop': Spec(0.02, _D, 'Most seconds between the stamps of a colour and a depth frame '
                                 'paired', low=0.0, high=1.0),
    'depth_inner': Spec(0.5, _D, "Central fraction of a box (per side) whose valid depths' "
                                 'median is its depth', low=0.05, high=1.0),
}

REBUILD = frozenset({'model_path', 'labels_path', 'input_size', 'batch', 'backend',
                     'precision',
                     'accuracy_budget', 'calibration_images', 'range_images'})
# Changing these while active needs new subscriptions: applied on the next activate.
RESUBSCRIBE = frozenset({'cameras', 'batch_wait_ms', 'input_type', 'qos_reliability',
                         'qos_depth', 'cpu_wake_latency_us',
                         'depth_topic', 'depth_info_topic', 'depth_slop', 'depth_inner'})


def descriptor(name) -> ParameterDescriptor:
    """The ``ParameterDescriptor`` of parameter ``name`` (description, type and range)."""
    spec = SPECS[name]
    desc = ParameterDescriptor(name=name, type=spec.type, description=spec.description)
    if spec.choices:
        desc.additional_constraints = 'one of: ' + ', '.join(spec.choices)
    if spec.low is not None and spec.type == _D:
        desc.floating_point_range = [FloatingPointRange(from_value=float(spec.low),
                                                        to_value=float(spec.high))]
    elif spec.low is not None:
        desc.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high),
                                           step=int(spec.step))]
    if name in REBUILD:
        desc.additional_constraints += ('; ' if desc.additional_constraints else '') + \
            'needs a rebuild: deactivate and cleanup, then configure again'
    return desc


def initial_value(name):
    """The value to declare ``name`` with: its default, or for a string array its type (rclpy
    would take ``[]`` for a byte array); see ``typed_default``."""
    spec = SPECS[name]
    return Parameter.Type.STRING_ARRAY if spec.type == _SA else spec.default


def typed_default(name) -> Parameter:
    """The default of ``name`` as a typed ``Parameter`` (for string arrays left unset)."""
    return Parameter(name, Parameter.Type.STRING_ARRAY, list(SPECS[name].default))


def validate(name, value) -> Optional[str]:
    """None if ``value`` is allowed for parameter ``name``, else the reason it is not."""
    spec = SPECS.get(name)
    if spec is None:
        return f"unknown parameter '{name}'"
    if name == 'precision':
        return precision_error(value)
    if name == 'labels_path':
        return labels_path_error(value)
    if name == 'calibration_images' and value and not os.path.isdir(value):
        return f"calibration_images: '{value}' is not a folder"
    if name == 'range_images' and value:
        return range_images_error(value)

    if name == 'cameras':
        return cameras_error(value)
    if name in ('depth_topic', 'depth_info_topic') and value and not _TOPIC.match(value):
        return f"{name}: '{value}' is not a valid topic name"
    if spec.choices and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}, got {value!r}"
    if spec.low is not None and not spec.low <= value <= spec.high:
        return f'{name} must be in [{spec.low}, {spec.high}], got {value}'
    if name == 'input_size' and value % 32:
        return f'input_size must be 0 or a multiple of 32, got {value}'
    return None


def labels_path_error(path) -> Optional[str]:
    """None if ``path`` is empty or a readable regular file of at most ``LABELS_MAX_BYTES``
    (never a FIFO or a device, which would block or never end), else the reason."""
    if not path:
        return None
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"labels_path '{path}': {exc.strerror}"
    if not stat.S_ISREG(info.st_mode):
        return f"labels_path '{path}' is not a regular file"
    if info.st_size > LABELS_MAX_BYTES:
        return (f"labels_path '{path}' is {info.st_size} bytes; a label file (one class name "
                f'per line) is at most {LABELS_MAX_BYTES}')
    if not os.access(path, os.R_OK):
        return f"labels_path '{path}' is not readable"
    return None


def range_images_error(folder) -> Optional[str]:
    """None if ``folder`` is a folder holding images, else the reason."""
    if not os.path.isdir(folder):
        return f"range_images: '{folder}' is not a folder"
    reason = source_error(folder)
    return f'range_images: {reason}' if reason else None


def camera_topics(cameras) -> list:
    """The image topics of the ``cameras`` parameter; blank entries are ignored (YAML cannot
    hold an empty list: ``[""]``), none means the one topic ``image``."""
    topics = [str(c).strip() for c in cameras if str(c).strip()]
    return topics or [DEFAULT_TOPIC]


def output_namespace(topic) -> str:
    """The namespace prefix of a camera's outputs: 'front/image_raw' -> 'front/',
    '/cam0/image' -> '/cam0/', 'image' -> '', '/image' -> '/'."""
    head = topic.rpartition('/')[0]
    return head + '/' if head else ('/' if topic.startswith('/') else '')


def cameras_error(cameras) -> Optional[str]:
    """None if the ``cameras`` parameter is usable, else the reason: every topic a valid ROS
    name, no topic twice, and no two cameras publishing on the same detections topic."""
    topics = camera_topics(cameras)
    for topic in topics:
        if not _TOPIC.match(topic):
            return f"cameras: '{topic}' is not a valid topic name"
    outputs = {}
    for topic in topics:
        other = outputs.setdefault(output_namespace(topic), topic)
        if other != topic or topics.count(topic) > 1:
            return (f"cameras: '{other}' and '{topic}' would both publish on "
                    f"'{output_namespace(topic)}detections'; give each camera its own "
                    'namespace (e.g. front/image_raw, rear/image_raw)')
    return None


def resolve_classes(classes, labels) -> Optional[list]:
    """Class filter (names or ids as text) -> sorted class ids, or None for all classes.

    Blank entries are ignored (YAML cannot hold an empty list: ``[""]`` means all). Raises
    ``ValueError`` naming an unknown class.
    """
    classes = [c for c in classes if str(c).strip()]
    if not classes:
        return None
    ids = set()
    for item in classes:
        text = str(item).strip()
        if text.isdigit():
            ids.add(int(text))
        elif labels and text in labels:
            ids.add(labels.index(text))
        else:
            known = ', '.join(labels[:10]) + (', ...' if labels and len(labels) > 10 else '')
            raise ValueError(f"unknown class '{text}' in classes; use an id or one of the "
                             f'labels ({known or "the model has no labels"})')
    return sorted(ids)
