"""Engines built for a batch of N images (``input_shape`` N x 3 x H x W) on the real detectors.

Oracle: ONNX Runtime running each image alone at batch 1 (the original .onnx for the ONNX
models, our batch-1 engine's ONNX export for Darknet YOLOv3-tiny). Image b of a batch-N run
must give the outputs of its batch-1 run (relative error <= 1e-4) on real photos. Fixed
batch-1 exports (yolov8-fall) are rebuilt for N by ``rebatch.py``.
"""
import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tx2_infer_core import assets, detect
from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import ModelFormatError
from tx2_infer_core.onnx_export import to_onnx
from tx2_infer_core.rebatch import fixed_batch, rebatch

PHOTOS = ['bus.jpg', 'zidane.jpg', 'dog.jpg', 'horses.jpg']


def model_path(name):
    if name == 'yolov3-tiny':
        return str(assets.yolov3_tiny()[0])
    return str(assets.fetch(name))


SIZES = {'yolov3-tiny': 416, 'yolov8-fall.onnx': 640, 'nudenet-320n.onnx': 320}


def photo_batch(n, size):
    """(n, 3, size, size) float32: the first n photos letterboxed as the YOLO models take."""
    shape = (1, 3, size, size)
    return np.concatenate([detect.preprocess(cv2.imread(str(assets.fetch(p))), shape)[0]
                           for p in PHOTOS[:n]])


def session(model):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=['CPUExecutionProvider'])


def oracle(name, size):
    """ORT at batch 1: the original model, or for Darknet our batch-1 import's export."""
    if name == 'yolov3-tiny':
        one = Engine.build(model_path(name), (1, 3, size, size), optimize=False)
        return session(to_onnx(one.graph)), one.graph.outputs
    model = onnx.load(model_path(name))
    return session(model), [o.name for o in model.graph.output]


def rel_error(ours, ref):
    ref = np.asarray(ref, np.float64)
    return float(np.linalg.norm(np.asarray(ours, np.float64) - ref) / np.linalg.norm(ref))


CASES = [('yolov3-tiny', 2, 'numpy'), ('yolov3-tiny', 4, 'numpy'), ('yolov3-tiny', 4, 'ort'),
         ('yolov8-fall.onnx', 2, 'numpy'),
         ('yolov8-fall.onnx', 4, 'ort'), ('nudenet-320n.onnx', 2, 'numpy'),
         ('nudenet-320n.onnx', 4, 'ort')]


@pytest.mark.parametrize('name,batch,backend', CASES)
def test_batch_engine_matches_batch_one_per_image(name, batch, backend):
    size = SIZES[name]
    engine = Engine.build(model_path(name), (batch, 3, size, size), backend=backend)
    spec = engine.input_specs[0]
    assert tuple(spec.shape) == (batch, 3, size, size)
    x = photo_batch(batch, size)
    ours = engine.run({spec.name: x})
    sess, names = oracle(name, size)
    input_name = sess.get_inputs()[0].name
    for b in range(batch):
        ref = dict(zip(names, sess.run(names, {input_name: x[b:b + 1]})))
        for out in engine.graph.outputs:
            assert ours[out].shape[0] == batch
            err = rel_error(ours[out][b:b + 1], ref[out])
            assert err <= 1e-4, f'{name} image {b} {out}: relative error {err:.2e}'
    # the images differ, so a batch that repeated image 0 would have failed above
    first = engine.graph.outputs[0]
    assert rel_error(ours[first][1], ours[first][0]) > 1e-2


def test_rebatch_keeps_batch_one_and_frees_the_head_reshapes():
    model = onnx.load(model_path('yolov8-fall.onnx'))
    assert fixed_batch(model) == 1
    assert rebatch(model, 1) is model
    four = rebatch(model, 4)
    assert fixed_batch(four) == 4 and fixed_batch(model) == 1      # the original untouched
    onnx.checker.check_model(four)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in four.graph.initializer}
    shapes = [inits[n.input[1]] for n in four.graph.node if n.op_type == 'Reshape']
    assert shapes and all(s[0] == 0 for s in shapes)


def test_fixed_batch_that_cannot_follow_is_refused_with_the_node(tmp_path):
    """A Concat with a batch-1 constant cannot carry a batch: a ModelFormatError."""
    h = onnx.helper
    const = onnx.numpy_helper.from_array(np.zeros((1, 2), np.float32), 'c')
    graph = h.make_graph(
        [h.make_node('Concat', ['x', 'c'], ['y'], axis=1, name='joins_a_constant')], 'g',
        [h.make_tensor_value_info('x', onnx.TensorProto.FLOAT, [1, 2])],
        [h.make_tensor_value_info('y', onnx.TensorProto.FLOAT, [1, 4])], [const])
    path = tmp_path / 'concat.onnx'
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid('', 17)]), str(path))
    Engine.build(str(path), (1, 2))
    with pytest.raises(ModelFormatError):
        Engine.build(str(path), (3, 2))
