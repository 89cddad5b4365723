"""The Darknet importer on the real YOLOv3-tiny, checked against OpenCV's own Darknet importer."""
import logging

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from tx2_infer_core import assets, darknet
from tx2_infer_core.errors import ModelFormatError
from tx2_infer_core.onnx_export import to_onnx

ORACLE_PHOTOS = ['dog.jpg', 'bus.jpg', 'kite.jpg']
OPENCV_BN_EPSILON = 1e-6      # OpenCV's Darknet importer uses 1e-6, Darknet itself 1e-5
TOTAL_FLOATS = 8858734        # parameters of yolov3-tiny.weights after its 20-byte header


def rel_error(ours, ref):
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def session(graph):
    return ort.InferenceSession(to_onnx(graph).SerializeToString(),
                                providers=['CPUExecutionProvider'])


def blob(photo):
    """The same NCHW RGB 416x416 tensor for OpenCV and for our graph."""
    image = cv2.imread(str(assets.fetch(photo)))
    return cv2.dnn.blobFromImage(image, 1 / 255, (416, 416), swapRB=True, crop=False)


@pytest.fixture(scope='module')
def tiny():
    return assets.yolov3_tiny()


@pytest.fixture(scope='module')
def graph(tiny):
    cfg, weights, names = tiny
    return darknet.load_darknet(cfg, weights, names_path=names)


@pytest.fixture(scope='module')
def opencv_net(tiny):
    if not hasattr(cv2.dnn, 'readNetFromDarknet'):
        pytest.skip(f'OpenCV {cv2.__version__} has no Darknet importer (removed in 5.0; '
                    'needs opencv-python-headless<5)')
    cfg, weights, _ = tiny
    return cv2.dnn.readNetFromDarknet(str(cfg), str(weights))


def test_structure_and_meta(graph):
    assert graph.inputs == ['images'] and graph.values['images'].shape == (1, 3, 416, 416)
    assert [graph.values[o].shape for o in graph.outputs] == [(1, 255, 13, 13),
                                                              (1, 255, 26, 26)]
    head = graph.meta['head']
    assert head['type'] == 'darknet_yolo' and head['num_classes'] == 80
    assert [(la['anchors'], la['stride']) for la in head['layers']] == [
        ([[81, 82], [135, 169], [344, 319]], 32), ([[10, 14], [23, 27], [37, 58]], 16)]
    assert graph.meta['labels'][16] == 'dog' and len(graph.meta['labels']) == 80
    assert graph.meta['input_format']['color'] == 'RGB'
    pools = [n for n in graph.nodes if n.op == 'MaxPool']
    assert [n.attrs['pads'] for n in pools] == [[0, 0, 1, 1]] * 6
    stride_one = [n for n in pools if n.attrs['strides'] == [1, 1]]
    assert len(stride_one) == 1 and graph.values[stride_one[0].outputs[0]].shape[2:] == (13, 13)
    assert graph.summary() == {'Conv': 13, 'BatchNormalization': 11, 'LeakyRelu': 11,
                               'MaxPool': 6, 'Resize': 1, 'Concat': 1}
    for node in graph.nodes:
        assert all(o in graph.values for o in node.outputs), node


@pytest.mark.parametrize('photo', ORACLE_PHOTOS)
def test_export_matches_opencv_darknet(tiny, opencv_net, photo):
    """Raw yolo-feeding maps: our export run by ORT vs OpenCV's independent Darknet importer."""
    cfg, weights, _ = tiny
    x = blob(photo)
    opencv_net.setInput(x)
    ref = opencv_net.forward(['conv_15', 'conv_22'])     # OpenCV names layer i 'conv_i'
    same_eps = darknet.load_darknet(cfg, weights, bn_epsilon=OPENCV_BN_EPSILON)
    for ours, expected in zip(session(same_eps).run(None, {'images': x}), ref):
        assert rel_error(ours, expected) <= 1e-4, photo
    # Darknet's own epsilon (1e-5) moves the maps by about 1e-4 relative, no more.
    default = darknet.load_darknet(cfg, weights)
    for ours, expected in zip(session(default).run(None, {'images': x}), ref):
        assert rel_error(ours, expected) <= 1e-3, photo


def test_reference_interpreter_matches_ort(graph):
    from tx2_infer_core import reference
    from tx2_infer_core.ops.registry import OPS
    missing = {n.op for n in graph.nodes} - set(OPS)
    if missing:
        pytest.skip(f'reference ops not registered yet: {sorted(missing)}')
    x = blob('dog.jpg')
    ours = reference.execute(graph, {'images': x})
    for name, expected in zip(graph.outputs, session(graph).run(None, {'images': x})):
        assert rel_error(ours[name], expected) <= 1e-4, name


def test_detections_on_dog(graph):
    from tx2_infer_core import detect
    image = cv2.imread(str(assets.fetch('dog.jpg')))
    x, _ = detect.preprocess(image, (1, 3, 416, 416), graph.meta['input_format'])
    raw = dict(zip(graph.outputs, session(graph).run(None, {'images': x})))
    _, _, class_ids = detect.decode(raw, graph.meta['head'])
    found = {graph.meta['labels'][i] for i in class_ids}
    assert {'dog', 'bicycle'} <= found and found & {'car', 'truck'}, found


def test_input_shape_override(tiny):
    cfg, weights, _ = tiny
    g = darknet.load_darknet(cfg, weights, input_shape=(1, 3, 320, 608))
    assert [g.values[o].shape for o in g.outputs] == [(1, 255, 10, 19), (1, 255, 20, 38)]
    assert [la['stride'] for la in g.meta['head']['layers']] == [32, 16]


# --- malformed input: every problem gets a ModelFormatError naming it --------------------------

def _cfg(tmp_path, tiny, old=None, new=None):
    text = tiny[0].read_text()
    if old is not None:
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / 'broken.cfg'
    path.write_text(text)
    return path


def _line_of(path, needle):
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_unknown_section(tmp_path, tiny):
    cfg = _cfg(tmp_path, tiny, '[upsample]', '[reorg3d]')
    with pytest.raises(ModelFormatError,
                       match=rf'broken.cfg:{_line_of(cfg, "reorg3d")}: unsupported section '
                             r'\[reorg3d\]'):
        darknet.load_darknet(cfg, tiny[1])


def test_bad_number(tmp_path, tiny):
    cfg = _cfg(tmp_path, tiny, 'filters=32', 'filters=3x2')
    with pytest.raises(ModelFormatError, match=rf":{_line_of(cfg, '3x2')}: bad value '3x2' for "
                                               r"'filters'.*layer 2 \[convolutional\]"):
        darknet.load_darknet(cfg, tiny[1])


def test_missing_filters(tmp_path, tiny):
    cfg = _cfg(tmp_path, tiny, 'filters=64\n', '')
    with pytest.raises(ModelFormatError, match=r"missing key 'filters'.*layer 4 \[conv"):
        darknet.load_darknet(cfg, tiny[1])


def test_bad_activation_and_route(tmp_path, tiny):
    cfg = _cfg(tmp_path, tiny, 'activation=leaky', 'activation=gelu')
    with pytest.raises(ModelFormatError, match="unsupported activation 'gelu'"):
        darknet.load_darknet(cfg, tiny[1])
    cfg = _cfg(tmp_path, tiny, 'layers = -1, 8', 'layers = -1, 40')
    with pytest.raises(ModelFormatError, match='layers=40 does not refer to an earlier layer'):
        darknet.load_darknet(cfg, tiny[1])


def test_garbage_line(tmp_path, tiny):
    cfg = _cfg(tmp_path, tiny, '[maxpool]\n', '[maxpool]\nthis is not a key\n')
    with pytest.raises(ModelFormatError, match="expected '\\[section\\]' or 'key=value'"):
        darknet.load_darknet(cfg, tiny[1])


def test_truncated_weights(tmp_path, tiny):
    short = tmp_path / 'short.weights'
    short.write_bytes(tiny[1].read_bytes()[:20 + 4 * 1000000])
    with pytest.raises(ModelFormatError, match=rf'too short: the cfg needs {TOTAL_FLOATS} floats '
                                               r'but the file holds 1000000'):
        darknet.load_darknet(tiny[0], short)
    odd = tmp_path / 'odd.weights'
    odd.write_bytes(tiny[1].read_bytes()[:-2])
    with pytest.raises(ModelFormatError, match='not a whole number of float32'):
        darknet.load_darknet(tiny[0], odd)
    header = tmp_path / 'header.weights'
    header.write_bytes(b'\0' * 10)
    with pytest.raises(ModelFormatError, match='too short for a Darknet weights header'):
        darknet.load_darknet(tiny[0], header)


def test_too_long_weights(tmp_path, tiny, caplog):
    long = tmp_path / 'long.weights'
    long.write_bytes(tiny[1].read_bytes() + b'\0' * 8)
    with pytest.raises(ModelFormatError, match=rf'too long: .*{TOTAL_FLOATS} floats.*2 left over'):
        darknet.load_darknet(tiny[0], long)
    with caplog.at_level(logging.WARNING, logger='tx2_infer.darknet'):
        graph = darknet.load_darknet(tiny[0], long, strict=False)
    assert 'too long' in caplog.text and len(graph.outputs) == 2


def test_missing_files(tmp_path, tiny):
    with pytest.raises(ModelFormatError, match='cfg file not found: .*nope.cfg'):
        darknet.load_darknet(tmp_path / 'nope.cfg', tiny[1])
    with pytest.raises(ModelFormatError, match='weights file not found: .*nope.weights'):
        darknet.load_darknet(tiny[0], tmp_path / 'nope.weights')
    with pytest.raises(ModelFormatError, match='names file not found'):
        darknet.load_darknet(tiny[0], tiny[1], names_path=tmp_path / 'nope.names')


def test_pad_arithmetic():
    assert darknet.maxpool_pads(1) == [0, 0, 1, 1]
    assert darknet.maxpool_output_size(13, 2, 1, 1) == 13
    assert darknet.maxpool_output_size(416, 2, 2, 1) == 208
    assert darknet.conv_output_size(416, 3, 2, 1) == 208


def test_unsupported_key(tmp_path, tiny):
    cfg = _cfg(tmp_path, tiny, 'filters=32', 'filters=32\nstride_x=2')
    with pytest.raises(ModelFormatError, match="'stride_x=2' is not supported.*layer 2"):
        darknet.load_darknet(cfg, tiny[1])


def test_new_coords_yolo_head_is_refused_not_decoded_wrongly(tmp_path, tiny):
    """YOLOv4-csp and YOLOv7 cfgs set new_coords=1 in [yolo]: boxes are decoded from
    already-logistic maps as (2x)^2 anchors, which our head does not do; refused, not ignored."""
    cfg = _cfg(tmp_path, tiny, 'classes=80', 'classes=80\nnew_coords=1')
    with pytest.raises(ModelFormatError, match="'new_coords=1' is not supported"):
        darknet.load_darknet(cfg, tiny[1])
    darknet.load_darknet(_cfg(tmp_path, tiny, 'classes=80', 'classes=80\nnew_coords=0'),
                         tiny[1])


# --- layers YOLOv3-tiny does not use (no real model here has them: deterministic weights) ------

YOLOV4_TINY_LIKE = """[net]
width=32
height=32
channels=3
[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=mish
[convolutional]
filters=8
size=3
stride=1
pad=1
activation=swish
[shortcut]
from=-2
activation=leaky
[route]
layers=-1
groups=2
group_id=1
[route]
layers=-1,-4
[maxpool]
size=2
stride=2
[convolutional]
filters=18
size=1
stride=1
pad=1
activation=linear
[yolo]
mask=0,1,2
anchors=10,14, 23,27, 37.5,58
classes=1
"""


def test_shortcut_groups_mish_swish(tmp_path):
    cfg = tmp_path / 'v4.cfg'
    cfg.write_text(YOLOV4_TINY_LIKE)
    floats = 8 * 4 + 8 * 27 + 8 + 8 * 72 + 18 + 18 * 12
    weights = tmp_path / 'v4.weights'
    params = np.sin(np.arange(floats, dtype=np.float32)) * 0.3
    params[24:32] = 1 + np.abs(params[24:32])          # biases, scales, means, then variances
    weights.write_bytes(np.array([0, 2, 5, 0, 0], '<i4').tobytes() + params.tobytes())
    graph = darknet.load_darknet(cfg, weights)
    assert graph.values['route_3.0'].shape == (1, 4, 16, 16)
    assert graph.values['route_4'].shape == (1, 12, 16, 16)
    assert graph.values[graph.outputs[0]].shape == (1, 18, 8, 8)
    assert graph.meta['head']['layers'][0] == {'output': 'conv_6', 'stride': 4,
                                               'anchors': [[10, 14], [23, 27], [37.5, 58]]}
    from tx2_infer_core.ops.registry import OPS
    missing = {n.op for n in graph.nodes} - set(OPS)
    if missing:
        pytest.skip(f'reference ops not registered yet: {sorted(missing)}')
    from tx2_infer_core import reference
    x = np.cos(np.arange(3 * 32 * 32, dtype=np.float32)).reshape(1, 3, 32, 32)
    expected = session(graph).run(None, {'images': x})[0]
    assert rel_error(reference.execute(graph, {'images': x})['conv_6'], expected) <= 1e-5


@pytest.mark.parametrize('old,new,message', [
    ('layers = -4', 'layers = ,', r"bad value ',' for 'layers'"),
    ('anchors = 10,14', 'anchors = nan,14', "bad value 'nan,14.*for 'anchors'"),
    ('anchors = 10,14', 'anchors = inf,14', "bad value 'inf,14.*for 'anchors'"),
    ('mask = 3,4,5', 'mask = ', "bad value '' for 'mask'"),
    ('height=416', 'height=100000', r"tensor 'leaky_0' .*100000, 416\) .* limit"),
    ('height=416', 'height=1000000', r'input shape \(1, 3, 1000000, 416\).*limit'),
    ('filters=16', 'filters=1000000', r"tensor 'leaky_0' .* more than the limit"),
    ('filters=16', 'filters=100000000000', r"tensor 'conv_0.weight' .* more than the limit"),
    ('stride=2\n', 'stride=2\npadding=10000000\n', r"tensor 'pool_1' .* more than the limit"),
])
def test_hostile_cfg_values_are_model_format_errors(tmp_path, tiny, old, new, message):
    cfg = _cfg(tmp_path, tiny, old, new)
    with pytest.raises(ModelFormatError, match=message):
        darknet.load_darknet(cfg, tiny[1])


def test_the_tensor_limit_is_a_parameter(tiny):
    with pytest.raises(ModelFormatError, match="tensor 'leaky_0' .* limit of 1000000"):
        darknet.load_darknet(tiny[0], tiny[1], max_elements=10**6)


def test_short_weights_for_a_huge_cfg_allocate_nothing(tmp_path, tiny):
    """Weights past the end of the file are zero views until ``finish`` refuses the file."""
    reader = darknet.WeightsReader(tiny[1])
    chunk = reader.take(TOTAL_FLOATS + 10**9, 'everything')
    assert chunk.shape == (TOTAL_FLOATS + 10**9,) and chunk.strides == (0,)
    with pytest.raises(ModelFormatError, match='too short'):
        reader.finish(strict=True)
