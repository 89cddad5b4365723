"""Real models quantised for the INT8 kernel tests and benches (no GPU needed here).

``quantised(graph, feeds)`` quantises every FusedConv the pass accepts with min-max scales of
the real activations (``feeds``: preprocessed photos); ``layer_cases(qgraph, feeds)`` cuts each
FusedConvInt8 of the result into a one-conv graph with the real input it saw:

    x (float, fp16-exact) -> QuantizeLinear(x_scale) -> FusedConvInt8 [-> DequantizeLinear] -> y

whose float input quantises back to exactly the int8 tensor of the whole model's run (the
value times its scale, rounded to fp16, is within 1/16 of a unit of it).
"""
import numpy as np

from tx2_infer_core import assets, detect
from tx2_infer_core.int8.build import build_quantized
from tx2_infer_core.int8.calibrate import conv_inputs, tensor_runner
from tx2_infer_core.int8.sensitivity import full_schedule
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.reference import execute

PHOTOS = ('dog.jpg', 'street.jpg', 'bus.jpg')


def photo_feeds(graph, names=PHOTOS[:1]) -> list:
    """[{input: tensor}] of real photos preprocessed for ``graph`` (letterbox, RGB, 0..1)."""
    import cv2
    spec = graph.values[graph.inputs[0]]
    feeds = []
    for name in names:
        image = cv2.imread(str(assets.fetch(name)), cv2.IMREAD_COLOR)
        feeds.append({spec.name: detect.preprocess(image, spec.shape)[0].astype(np.float32)})
    return feeds


def yolov3_tiny(size=416):
    """YOLOv3-tiny (Darknet) at ``size``, optimised (FusedConv with LeakyRelu)."""
    from tx2_infer_core.engine import _default_meta, import_model
    from tx2_infer_core.passes import optimize
    cfg, weights, _ = assets.yolov3_tiny()
    graph = import_model(cfg, (1, 3, size, size), weights)
    _default_meta(graph)
    return optimize(graph, 2)[0]


def open_nsfw():
    """open_nsfw (a ResNet-50 at 224x224, ONNX), optimised (residual FusedConvs)."""
    from tx2_infer_core.engine import import_model
    from tx2_infer_core.passes import optimize
    return optimize(import_model(assets.fetch('open_nsfw.onnx')), 2)[0]


def quantised(graph, feeds) -> tuple:
    """(int8 graph, schedule): every accepted FusedConv in int8, min-max activation scales
    (max |x| over ``feeds`` / 127)."""
    run = tensor_runner(graph, conv_inputs(graph))
    tops = {}
    for f in feeds:
        for name, value in run(f).items():
            tops[name] = max(tops.get(name, 0.0), float(np.abs(value).max()))
    schedule = full_schedule(graph, tops)
    return build_quantized(graph, schedule)[0], schedule


def _value(name, shape, dtype):
    return Value(name, tuple(int(d) for d in shape), dtype, 'NCHW' if len(shape) == 4 else '')


def one_conv_graph(node, weights, x_shape, y_shape, y_dtype, res=None) -> Graph:
    """x (float) -> QuantizeLinear -> ``node`` (a FusedConvInt8) [-> DequantizeLinear] -> y;
    ``res`` (name, shape, dtype) a residual graph input."""
    scale = np.float32(node.attrs['x_scale'])
    w = dict(weights, x_scale=np.array(scale, np.float32), x_zp=np.array(0, np.int8))
    values = {'x': _value('x', x_shape, 'float32'), 'x_q': _value('x_q', x_shape, 'int8')}
    nodes = [Node('QuantizeLinear', 'quantize', ['x', 'x_scale', 'x_zp'], ['x_q'])]
    inputs = list(node.inputs[1:3]) + ([res[0]] if res else [])
    conv_out = 'y' if y_dtype == 'float32' else 'y_q'
    nodes.append(Node('FusedConvInt8', node.name, ['x_q'] + inputs, [conv_out],
                      dict(node.attrs)))
    values[conv_out] = _value(conv_out, y_shape, y_dtype)
    graph_inputs = ['x']
    if res:
        values[res[0]] = _value(res[0], res[1], res[2])
        graph_inputs.append(res[0])
    if conv_out == 'y_q':
        w.update(y_scale=np.array(np.float32(node.attrs['out_scale']), np.float32),
                 y_zp=np.array(0, np.int8))
        nodes.append(Node('DequantizeLinear', 'dequantize', ['y_q', 'y_scale', 'y_zp'], ['y']))
        values['y'] = _value('y', y_shape, 'float32')
    for name, arr in w.items():
        values[name] = _value(name, np.shape(arr), np.asarray(arr).dtype.name)
    return Graph(nodes, graph_inputs, ['y'], values, w, name=node.name)


def fp16(x):
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def layer_cases(qgraph, feeds) -> list:
    """[(name, one-conv graph, feeds, int8 input, reference int8-or-float output)] of every
    FusedConvInt8 of ``qgraph`` on the real activations of ``feeds`` (one frame; a residual is
    fed fp16-rounded, as the GPU arena holds it)."""
    env = execute(qgraph, feeds, keep_all=True)
    cases = []
    for node in qgraph.nodes:
        if node.op != 'FusedConvInt8':
            continue
        x_q = env[node.inputs[0]]
        weights = {n: qgraph.weights[n] for n in node.inputs[1:3] if n}
        y = qgraph.values[node.outputs[0]]
        res = None
        f = {'x': fp16(x_q.astype(np.float32) * np.float32(node.attrs['x_scale']))}
        if len(node.inputs) > 3 and node.inputs[3]:
            r = node.inputs[3]
            res = ('r', env[r].shape, 'float32')
            f['r'] = fp16(env[r])
        graph = one_conv_graph(node, weights, x_q.shape, y.shape, y.dtype, res)
        ref = execute(graph, f, keep_all=True)
        assert np.array_equal(ref['x_q'], x_q), f'{node.name}: the float input does not ' \
                                                'quantise back to its int8 tensor'
        cases.append((node.name, graph, f, x_q, ref['y_q' if 'y_q' in ref else 'y']))
    return cases
