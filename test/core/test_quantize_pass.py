"""passes/quantize.py: the rewrite against ORT running the same model in Q/DQ form, the
int8/float bookkeeping as a graph property, declines, plan files, and sanity bounds on real
models (YOLOv3-tiny, YOLOv8, open_nsfw) with min-max scales from one real photo."""
import cv2
import numpy as np
import onnx
import pytest

import int8_cases
from hypothesis import given, settings, strategies as st
from onnx import helper, numpy_helper, TensorProto

from tx2_infer_core import assets, detect, heads, metrics, plan_file
from tx2_infer_core.backends.numpy_backend import NumpyBackend
from tx2_infer_core.int8 import quant_math
from tx2_infer_core.int8.build import build_quantized
from tx2_infer_core.int8.schedule import LayerQuant
from tx2_infer_core.onnx_import import load_onnx
from tx2_infer_core.passes import optimize
from tx2_infer_core.passes.quantize import boundary_problems, quantize_graph
from tx2_infer_core.reference import execute

NSFW_FORMAT = {'color': 'BGR', 'layout': 'NHWC', 'scale': 1.0, 'mean': [104.0, 117.0, 123.0],
               'resize': 'stretch'}


def minmax_schedule(graph, feeds, names=None):
    """{FusedConv: LayerQuant} with each input's scale max|x| / 127 over one real input."""
    env = execute(graph, feeds, keep_all=True)
    return {n.name: LayerQuant(quant_math.scale_from_threshold(np.abs(env[n.inputs[0]]).max()))
            for n in graph.nodes if n.op == 'FusedConv' and (names is None or n.name in names)}


def photo_tensor(graph, name, input_format=None):
    spec = graph.values[graph.inputs[0]]
    image = cv2.imread(str(assets.fetch(name)))
    return {spec.name: detect.preprocess(image, spec.shape, input_format)[0]}


# --- a two-conv model against ORT running its Q/DQ form -----------------------------------

def two_conv_model(rng):
    w1 = rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.2, (6, 4, 3, 3)).astype(np.float32)
    b1, b2 = rng.normal(0, 0.5, 8).astype(np.float32), rng.normal(0, 0.5, 6).astype(np.float32)
    nodes = [helper.make_node('Conv', ['x', 'w1', 'b1'], ['c1'], pads=[1, 1, 1, 1]),
             helper.make_node('Relu', ['c1'], ['r1']),
             helper.make_node('Conv', ['r1', 'w2', 'b2'], ['y'], group=2, strides=[2, 2])]
    return nodes, {'w1': w1, 'b1': b1, 'w2': w2, 'b2': b2}


def onnx_model(nodes, inits, path, outputs=('y',)):
    graph = helper.make_graph(
        nodes, 'm', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 3, 12, 12])],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 21)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return model


def fake_quantized_conv(node, inits, x_scale):
    """Q/DQ nodes and the conv reading them, its weights fake-quantised per output channel
    (the spec's formulas, written here again); the bias stays float."""
    x, w = node.input[0], node.input[1]
    ws = np.abs(inits[w]).reshape(len(inits[w]), -1).max(axis=1) / np.float32(127)
    wq = np.clip(np.rint(inits[w] / ws.reshape(-1, 1, 1, 1).astype(np.float64)), -127, 127)
    weights = {w: (wq * ws.reshape(-1, 1, 1, 1)).astype(np.float32),
               x + '_s': np.float32(x_scale), 'zp': np.int8(0)}
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    nodes = [helper.make_node('QuantizeLinear', [x, x + '_s', 'zp'], [x + '_q']),
             helper.make_node('DequantizeLinear', [x + '_q', x + '_s', 'zp'], [x + '_dq']),
             helper.make_node('Conv', [x + '_dq'] + list(node.input[1:]), node.output, **attrs)]
    return nodes, weights


def qdq_reference(nodes, inits, scales, outputs, x):
    """ORT's ``outputs`` of the model with each conv reading a value of ``scales`` in Q/DQ
    form (``fake_quantized_conv``), run as float ops."""
    q_nodes, q_inits = [], dict(inits)
    for node in nodes:
        if node.op_type == 'Conv' and node.input[0] in scales:
            more, weights = fake_quantized_conv(node, inits, scales[node.input[0]])
            q_nodes += more
            q_inits.update(weights)
        else:
            q_nodes.append(node)
    graph = helper.make_graph(
        q_nodes, 'q', [helper.make_tensor_value_info('x', TensorProto.FLOAT, x.shape)],
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in q_inits.items()])
    return int8_cases.ort_run(graph, {'x': x}, outputs)


@pytest.fixture(scope='module')
def two_convs(tmp_path_factory):
    """(ONNX nodes, weights, optimised graph, input, min-max schedule of both convs)."""
    rng = np.random.default_rng(0)
    nodes, inits = two_conv_model(rng)
    path = tmp_path_factory.mktemp('q') / 'm.onnx'
    onnx_model(nodes, inits, path)
    graph, _ = optimize(load_onnx(path))
    x = rng.normal(0, 1, (1, 3, 12, 12)).astype(np.float32)
    return nodes, inits, graph, x, minmax_schedule(graph, {'x': x})


def test_one_conv_is_within_half_a_bias_step_of_qdq(two_convs):
    """Only the first conv in int8 (float output): it differs from the Q/DQ model run by ORT
    by its int32 bias's rounding, at most half a step of x_scale * w_scale[c]."""
    nodes, inits, graph, x, schedule = two_convs
    first = graph.nodes[0]
    q = quantize_graph(graph, {first.name: schedule[first.name]})
    assert q.summary() == {'QuantizeLinear': 1, 'FusedConvInt8': 1, 'FusedConv': 1}
    got = execute(q, {'x': x}, keep_all=True)[first.outputs[0]]
    want, = qdq_reference(nodes, inits, {'x': schedule[first.name].x_scale},
                          [first.outputs[0]], x)
    step = np.float32(schedule[first.name].x_scale) * np.float32(
        q.nodes[1].attrs['w_scales']).reshape(1, -1, 1, 1)
    assert np.all(np.abs(got - want) <= 0.5 * step + 1e-5 * np.abs(want).max())
    fp32 = execute(graph, {'x': x}, keep_all=True)[first.outputs[0]]
    assert np.abs(got - fp32).max() > 10 * step.max()   # the bound is far below int8 errors


def test_two_chained_convs_match_qdq(two_convs):
    nodes, inits, graph, x, schedule = two_convs
    q, plan = build_quantized(graph, schedule)
    assert q.summary() == {'QuantizeLinear': 1, 'FusedConvInt8': 2}
    mid = q.nodes[1].outputs[0]
    assert q.values[mid].dtype == 'int8'
    assert q.nodes[1].attrs['out_scale'] == q.nodes[2].attrs['x_scale']
    scales = {'x': schedule[graph.nodes[0].name].x_scale,
              'r1': schedule[graph.nodes[1].name].x_scale}
    want_mid, want = qdq_reference(nodes, inits, scales, ['r1_q', 'y'], x)
    backend = NumpyBackend()
    backend.prepare(q, plan)
    got = backend.run({'x': x})['y']
    got_mid = backend.views[mid]
    diff = np.abs(got_mid.astype(np.int32) - want_mid)
    assert diff.max() <= 1 and np.mean(diff) < 0.03
    assert np.abs(got - want).mean() < 0.02 * np.abs(want).mean()


# --- the pass on real models ----------------------------------------------------------------

@pytest.fixture(scope='module')
def yolov3_fp32(yolov3):
    return optimize(yolov3)[0]


def detections(graph, outputs, conf):
    boxes, scores, ids = heads.decode(outputs, graph.meta['head'], conf_threshold=conf)
    return np.column_stack([boxes, scores, ids]) if len(ids) else np.zeros((0, 6))


def test_yolov3_tiny_int8_agrees_with_fp32(yolov3_fp32):
    graph, fmt = yolov3_fp32, yolov3_fp32.meta.get('input_format')
    schedule = minmax_schedule(graph, photo_tensor(graph, 'dog.jpg', fmt))
    q, plan = build_quantized(graph, schedule)
    assert q.summary()['FusedConvInt8'] == len(schedule) == 13
    assert not q.meta['int8']['declined'] and not boundary_problems(q)
    backend = NumpyBackend()
    backend.prepare(q, plan)
    ours, truth = [], []
    for name in assets.PHOTOS[:8]:
        feeds = photo_tensor(graph, name, fmt)
        truth.append(detections(graph, execute(graph, feeds), 0.25))
        ours.append(detections(graph, backend.run(feeds), 0.1))
    score = metrics.map50(ours, truth)
    print(f'yolov3-tiny all-int8 min-max (1 photo): mAP@0.5 vs FP32 = {score:.3f} '
          f'over {sum(map(len, truth))} FP32 boxes on 8 photos')
    assert score >= 0.8


def test_yolov8_int8_runs_and_agrees(yolov8):
    graph = optimize(yolov8)[0]
    graph.meta['head'] = heads.head_from_outputs({n: graph.values[n].shape
                                                  for n in graph.outputs})
    fmt = graph.meta.get('input_format')
    schedule = minmax_schedule(graph, photo_tensor(graph, 'bus.jpg', fmt))
    q, _ = build_quantized(graph, schedule)
    assert q.summary()['FusedConvInt8'] == len(schedule) and not boundary_problems(q)
    ours, truth = [], []
    for name in ('bus.jpg', 'zidane.jpg'):
        feeds = photo_tensor(graph, name, fmt)
        truth.append(detections(graph, execute(graph, feeds), 0.25))
        ours.append(detections(graph, execute(q, feeds), 0.1))
    score = metrics.map50(ours, truth)
    print(f'yolov8-fall all-int8 min-max (1 photo): mAP@0.5 vs FP32 = {score:.3f} '
          f'over {sum(map(len, truth))} FP32 boxes on 2 photos')
    assert score >= 0.5


def test_open_nsfw_int8_keeps_top1(open_nsfw):
    graph = optimize(open_nsfw)[0]
    schedule = minmax_schedule(graph, photo_tensor(graph, 'dog.jpg', NSFW_FORMAT))
    q, _ = build_quantized(graph, schedule)
    assert q.summary()['FusedConvInt8'] == len(schedule) >= 50
    for name in ('dog.jpg', 'bus.jpg', 'zidane.jpg', 'horses.jpg'):
        feeds = photo_tensor(graph, name, NSFW_FORMAT)
        want, got = execute(graph, feeds), execute(q, feeds)
        out = graph.outputs[0]
        print(f'open_nsfw {name}: fp32 {want[out].ravel()} int8 {got[out].ravel()}')
        assert np.argmax(got[out]) == np.argmax(want[out])


# --- bookkeeping, declines, plan files -----------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(st.data())
def test_boundaries_hold_for_any_subset(yolov3_fp32, data):
    """Any subset of layers, any scales (two readers of one tensor may disagree): every int8
    value is written by a quantizing node and read only by int8 convs at its scale."""
    convs = [n.name for n in yolov3_fp32.nodes if n.op == 'FusedConv']
    chosen = data.draw(st.lists(st.sampled_from(convs), unique=True))
    scales = st.sampled_from([0.01, 0.02, 0.05])
    schedule = {name: LayerQuant(data.draw(scales)) for name in chosen}
    q = quantize_graph(yolov3_fp32, schedule)
    assert boundary_problems(q) == []
    int8 = {n for n, v in q.values.items() if v.dtype == 'int8'}
    producers = q.producers()
    for name in int8:   # the same facts, checked here without the pass's own helper
        p = producers[name]
        assert p.op == 'QuantizeLinear' or p.attrs['out_scale'] > 0
    for node in q.nodes:
        floats = node.inputs[1:] if node.op == 'FusedConvInt8' else node.inputs
        assert not int8 & set(floats), node
    assert sum(n.op == 'FusedConvInt8' for n in q.nodes) == len(chosen)


def test_boundary_problems_sees_a_float_reader_of_int8(yolov3_fp32):
    q = quantize_graph(yolov3_fp32, {n.name: LayerQuant(0.02) for n in yolov3_fp32.nodes
                                     if n.op == 'FusedConv'})
    linked = next(n for n in q.nodes if n.op == 'FusedConvInt8' and n.attrs['out_scale'])
    linked.attrs['out_scale'] = 0.0
    assert any('out_scale and output dtype' in p for p in boundary_problems(q))


def test_declines_with_reasons(yolov3_fp32):
    first = next(n for n in yolov3_fp32.nodes if n.op == 'FusedConv')
    pool = next(n for n in yolov3_fp32.nodes if n.op == 'MaxPool')
    schedule = {first.name: LayerQuant(0.02, (0.1,) * 3), pool.name: LayerQuant(0.02),
                'nope': LayerQuant(0.02)}
    q = quantize_graph(yolov3_fp32, schedule)
    assert q.meta['int8']['declined'] == {
        first.name: '3 weight scales for 16 output channels',
        pool.name: 'MaxPool is not quantised (FusedConv only)', 'nope': 'no node of that name'}
    assert 'FusedConvInt8' not in q.summary() and q.summary() == yolov3_fp32.summary()


def test_quantized_plan_saves_and_loads_bit_identical(yolov3_fp32, tmp_path):
    graph = yolov3_fp32
    feeds = photo_tensor(graph, 'horses.jpg', graph.meta.get('input_format'))
    q, plan = build_quantized(graph, minmax_schedule(graph, feeds))
    int8 = [v for v in q.values.values() if v.dtype == 'int8']
    assert int8 and all(v.nbytes == np.prod(v.shape) for v in int8)   # one byte each
    assert all(plan.offsets[v.name] % 256 == 0 for v in int8 if v.name not in plan.inplace)
    path = tmp_path / 'q.tx2plan'
    plan_file.save_plan(path, q, plan.to_dict(), {'precision': 'int8'})
    loaded, plan2, _ = plan_file.load_plan(path)
    assert {k: v.dtype for k, v in loaded.weights.items()} == \
        {k: v.dtype for k, v in q.weights.items()}
    assert {np.dtype(v.dtype).name for v in loaded.weights.values()} >= {'int8', 'int32'}
    outs = []
    for g, p in ((q, plan), (loaded, plan2)):
        backend = NumpyBackend()
        backend.prepare(g, p)
        outs.append(backend.run(feeds))
    for name in graph.outputs:
        np.testing.assert_array_equal(outs[0][name], outs[1][name])
    assert loaded.meta['int8']['schedule'] == q.meta['int8']['schedule']


def test_a_shared_quantize_goes_before_its_first_reader_in_graph_order(open_nsfw):
    """ResNet blocks read one tensor with two convs (branch and shortcut); a schedule listed
    in reverse graph order must still give a graph whose every input exists when read."""
    graph = optimize(open_nsfw)[0]
    convs = [n for n in graph.nodes if n.op == 'FusedConv']
    readers = {}
    for n in convs:
        readers.setdefault(n.inputs[0], []).append(n.name)
    assert any(len(r) > 1 for r in readers.values())   # the case this test is about
    schedule = {n.name: LayerQuant(0.05) for n in reversed(convs)}
    q = quantize_graph(graph, schedule)
    known = set(q.inputs) | set(q.weights)
    for node in q.nodes:
        missing = [x for x in node.inputs if x and x not in known]
        assert not missing, f'{node.name} reads {missing} before they are produced'
        known.update(o for o in node.outputs if o)
