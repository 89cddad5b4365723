"""Parameter rules that need no running node: labels_path is checked when set (a regular,
readable, small file; never a FIFO or a device) and needs a rebuild like model_path; the
README's parameter table names every parameter with its default and when it may change."""
import os
import re
from pathlib import Path

import pytest

yaml = pytest.importorskip('yaml')
pytest.importorskip('rcl_interfaces', reason='ROS messages are not installed')
from tx2_infer_ros import params  # noqa: E402


def test_labels_path_empty_or_a_small_text_file_is_accepted(tmp_path):
    names = tmp_path / 'coco.names'
    names.write_text('person\nbicycle\n')
    assert params.validate('labels_path', '') is None
    assert params.validate('labels_path', str(names)) is None


def test_labels_path_missing_directory_fifo_device_or_huge_is_refused(tmp_path):
    fifo = tmp_path / 'fifo'
    os.mkfifo(fifo)
    huge = tmp_path / 'huge.names'
    with open(huge, 'wb') as f:
        f.truncate(params.LABELS_MAX_BYTES + 1)
    for path, words in [(tmp_path / 'missing.names', 'No such file'),
                        (tmp_path, 'not a regular file'), (fifo, 'not a regular file'),
                        ('/dev/zero', 'not a regular file'), (huge, 'bytes')]:
        reason = params.validate('labels_path', str(path))
        assert reason and words in reason and str(path) in reason, (path, reason)


@pytest.mark.skipif(os.geteuid() == 0, reason='root reads every file')
def test_labels_path_unreadable_is_refused(tmp_path):
    names = tmp_path / 'secret.names'
    names.write_text('person\n')
    names.chmod(0)
    assert 'not readable' in params.validate('labels_path', str(names))


def test_labels_path_needs_a_rebuild_like_model_path():
    assert {'model_path', 'labels_path'} <= params.REBUILD
    assert 'rebuild' in params.descriptor('labels_path').additional_constraints


def test_cameras_default_to_the_image_topic_and_outputs_go_to_their_namespace():
    assert params.camera_topics([]) == params.camera_topics(['']) == ['image']
    assert params.camera_topics([' front/image_raw ', '']) == ['front/image_raw']
    for topic, prefix in [('image', ''), ('/image', '/'), ('front/image_raw', 'front/'),
                          ('/robot/cam0/image', '/robot/cam0/'), ('~/image', '~/')]:
        assert params.output_namespace(topic) == prefix, topic
    assert params.validate('cameras', ['front/image_raw', 'rear/image_raw']) is None


def test_cameras_sharing_a_detections_topic_or_invalid_are_refused():
    for cameras, words in [(['cam/left', 'cam/right'], "'cam/detections'"),
                           (['front/image', 'front/image'], "'front/detections'"),
                           (['image', 'other'], "'detections'"),
                           (['front image'], 'not a valid topic name'),
                           (['front/'], 'not a valid topic name')]:
        reason = params.validate('cameras', cameras)
        assert reason and words in reason, (cameras, reason)
    assert 'cameras' in params.RESUBSCRIBE


def test_range_images_empty_or_a_folder_of_images_is_accepted(tmp_path):
    (tmp_path / 'frame.png').write_bytes(b'')      # listed by name; decoded at build
    assert params.validate('range_images', '') is None
    assert params.validate('range_images', str(tmp_path)) is None


def test_range_images_missing_a_file_or_without_images_is_refused(tmp_path):
    notes = tmp_path / 'notes.txt'
    notes.write_text('not an image')
    empty = tmp_path / 'empty'
    empty.mkdir()
    for path, words in [(tmp_path / 'missing', 'is not a folder'), (notes, 'is not a folder'),
                        (empty, 'holds no images')]:
        reason = params.validate('range_images', str(path))
        assert reason and reason.startswith('range_images: ') and words in reason, reason
        assert str(path) in reason


def test_range_images_needs_a_rebuild():
    assert 'range_images' in params.REBUILD
    assert 'rebuild' in params.descriptor('range_images').additional_constraints
    assert params.SPECS['range_images'].default == ''


# ---- the README's parameter table against the code ---------------------------------------
README = Path(__file__).resolve().parents[2] / 'README.md'
ROW = re.compile(r'^\| `(\w+)` \| `([^`]*)` \| (\w+) \|', re.M)


def readme_parameter_rows() -> dict:
    """{name: (default as written, change)} of the README's parameter table."""
    text = README.read_text()
    start = text.index('Parameters (`config/yolo.yaml`)')
    table = text[start:text.index('\n\n', text.index('| parameter |', start))]
    return {m[1]: (m[2], m[3]) for m in ROW.finditer(table)}


def test_readme_parameter_table_has_every_parameter_with_its_default_and_change():
    from tx2_infer_ros import ros_env
    if not ros_env.preload_vision_msgs():
        pytest.skip('vision_msgs is not built: run `make ros-msgs`')
    from tx2_infer_ros.detector_node import LIVE
    rows = readme_parameter_rows()
    assert set(rows) == set(params.SPECS)
    assert set(LIVE) | params.REBUILD | params.RESUBSCRIBE == set(params.SPECS)
    for name, (written, change) in rows.items():
        value = yaml.safe_load(written)
        if isinstance(value, list):     # YAML's [""] for an empty list, as config/yolo.yaml
            value = [v for v in value if v]
        default = params.SPECS[name].default
        assert value == default and type(value) is type(default), (name, written, default)
        wanted = ('rebuild' if name in params.REBUILD else
                  'inactive' if name in params.RESUBSCRIBE else 'live')
        assert change == wanted and (wanted != 'live' or name in LIVE), (name, change)
