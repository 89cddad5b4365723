"""Issue 14 on the GPU: Elu, Selu, Celu, Softplus, ThresholdedRelu and a per-channel PRelu in
the convolution epilogue, against the numpy backend (the unfused graph, FP32).

Every new activation (default and other attributes) on the SIMT half2, WMMA and mma.sync
paths; PRelu per channel and with one slope, on those paths, on depthwise, transposed and
1-D convolutions, after a product by a constant matrix and with residuals before and after
it; the real layers that needed them (madmom-beats' dilated TCN convolution and Elu, MTCNN's
PRelu convolutions and dense layer); HardSwish with the post-activation scale and shift
(PP-LCNetV3's learnable affine block) on every path, depthwise, transposed, after a product
by a constant matrix and before a residual; each new activation alone (the ActParams kernel); MTCNN
R-Net and O-Net whole against ONNX Runtime. ``test/core/test_conv_epilogue_acts.py`` and
``test_conv_epilogue_lowering.py`` check the kernel maths on the host and the lowering.
"""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (assert_close, assert_engine_matches_onnxruntime, core_module, fp16_round,
                      run_conv, run_graph, zoo_model_path)
from tx2_infer_core import reference
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.passes import POINTWISE_LEVEL, optimize

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402


EC = core_module('epilogue_cases')  # its import of unary_cases resolves from test/core
RNG = np.random.default_rng(17)
PATHS = ['simt', 'wmma', 'tc']
# Celu with a negative alpha grows as exp(-x / 0.8) below 0: past FP16 on conv outputs (the
# host test in test/core covers it)
CASES = [c for c in EC.act_cases() if c != ('Celu', {'alpha': -0.8})]


def fp16_graph(graph):
    """``graph`` with FP16-exact weights (what the GPU holds), so only the arithmetic differs."""
    graph.weights = {k: fp16_round(v) if v.dtype == np.float32 else v
                     for k, v in graph.weights.items()}
    return graph


def check(label, graph, path, monkeypatch, tol=3e-3, scale=1.0, threshold=None):
    """The optimised graph (one fused node) on ``path`` against the unfused graph in numpy;
    ``threshold``: ThresholdedRelu's, outputs whose conv value ``c`` lies within 0.02 of it
    left out (the GPU's FP16-accumulated value may fall on the other side)."""
    graph = fp16_graph(graph)
    feeds = {k: fp16_round(v) for k, v in EC.feeds_of(graph, scale).items()}
    optimised, _ = optimize(graph, POINTWISE_LEVEL)
    assert len(optimised.nodes) == 1, optimised.summary()
    out, kernels = run_conv(optimised, feeds, path, monkeypatch)
    ref = reference.execute(graph, feeds, keep_all=True)
    keep = np.ones(out.shape, bool) if threshold is None else \
        np.abs(ref['c'] - threshold) > 0.02
    assert keep.mean() > 0.9
    assert_close(f'{label} {path} {kernels}', out[keep], ref['y'][keep], tol)


def prelu(shape):
    return [Node('PRelu', 'act', ['c', 's'], ['y'])], {
        's': fp16_round(RNG.uniform(-1, 1, shape))}


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('op, attrs', CASES, ids=lambda v: str(v))
def test_new_activation_on_every_conv_path(op, attrs, path, monkeypatch):
    """24 -> 37 channels (odd: the half2 stores' last pair is one channel), 30x34."""
    graph = EC.conv_graph([Node(op, 'act', ['c'], ['y'], dict(attrs))], (1, 24, 30, 34), 37)
    threshold = attrs.get('alpha', 1.0) if op == 'ThresholdedRelu' else None
    check(f'{op} {attrs}', graph, path, monkeypatch, scale=0.5, threshold=threshold)


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('shape', [(1, 37, 1, 1), (1,)], ids=['per_channel', 'scalar'])
def test_prelu_on_every_conv_path(shape, path, monkeypatch):
    tail, extra = prelu(shape)
    check(f'PRelu {shape}', EC.conv_graph(tail, (1, 24, 30, 34), 37, extra=extra), path,
          monkeypatch)


@pytest.mark.parametrize('residual', ['before', 'after'])
def test_prelu_with_a_residual(residual, monkeypatch):
    """ResNet order (Add, then PRelu) and YOLO order (PRelu, then Add: after the act)."""
    _, extra = prelu((1, 24, 1, 1))
    if residual == 'before':
        tail = [Node('Add', 'add', ['c', 'x'], ['a']), Node('PRelu', 'act', ['a', 's'], ['y'])]
    else:
        tail = [Node('PRelu', 'act', ['c', 's'], ['a']), Node('Add', 'add', ['a', 'x'], ['y'])]
    graph = EC.conv_graph(tail, (1, 24, 20, 22), 24, extra=extra)
    for path in ('simt', 'tc', 'wmma'):  # wmma last: it patches the arch for the test
        check(f'PRelu residual {residual}', graph.copy(), path, monkeypatch)


def test_prelu_and_selu_on_depthwise_transposed_and_1d(monkeypatch):
    tail, extra = prelu((32, 1, 1))
    check('depthwise PRelu', EC.conv_graph(tail, (1, 32, 40, 44), 32, extra=extra, group=32),
          'simt', monkeypatch)
    selu = [Node('Selu', 'act', ['c'], ['y'], {'alpha': 1.5, 'gamma': 0.9})]
    for path in ('simt', 'tc'):
        check('convT Selu', EC.conv_graph(selu, (1, 16, 17, 19), 24, op='ConvTranspose'),
              path, monkeypatch)
        tail, extra = prelu((24, 1, 1))
        check('convT PRelu', EC.conv_graph(tail, (1, 16, 17, 19), 24, op='ConvTranspose',
                                           extra=extra), path, monkeypatch)
        tail, extra = prelu((1, 24, 1))
        check('1-D PRelu', EC.conv_graph(tail, (1, 16, 140), 24, extra=extra), path,
              monkeypatch)


def post_affine_tail(scale=0.75, shift=-0.25, act='HardSwish', out='y'):
    """act -> Mul(scale) -> Add(shift): PP-LCNetV3's learnable affine block, which
    fold_post_affine makes the epilogue's post_scale / post_shift."""
    return [Node(act, 'act', ['c'], ['a']), Node('Mul', 'lab_mul', ['a', 'lab_s'], ['sc']),
            Node('Add', 'lab_add', ['sc', 'lab_b'], [out])], {
        'lab_s': np.array(scale, np.float32), 'lab_b': np.array(shift, np.float32)}


@pytest.mark.parametrize('path', PATHS)
def test_post_affine_on_every_conv_path(path, monkeypatch):
    """HardSwish * 0.75 - 0.25 after a 24 -> 37 channel 3x3 conv (SIMT, WMMA, mma.sync)."""
    tail, extra = post_affine_tail()
    check('HardSwish post affine', EC.conv_graph(tail, (1, 24, 30, 34), 37, extra=extra),
          path, monkeypatch, scale=0.5)


@pytest.mark.parametrize('path', ['simt', 'tc'])
def test_post_affine_on_depthwise_transposed_linear_and_after_a_residual(path, monkeypatch):
    tail, extra = post_affine_tail(1.25, 0.5)
    check('depthwise post affine', EC.conv_graph(tail, (1, 32, 40, 44), 32, extra=extra,
                                                 group=32), path, monkeypatch)
    check('convT post affine', EC.conv_graph(tail, (1, 16, 17, 19), 24, op='ConvTranspose',
                                             extra=extra), path, monkeypatch)
    check('linear post affine', EC.linear_graph(tail, 40, extra, rows=(7,), k=64), path,
          monkeypatch)
    tail, extra = post_affine_tail(-0.5, 2.0, out='z')
    tail.append(Node('Add', 'res', ['z', 'x'], ['y']))
    check('post affine then residual', EC.conv_graph(tail, (1, 24, 20, 22), 24, extra=extra),
          path, monkeypatch)


def conv_node(x, w, y, kernel, pads, dilations=(1, 1)):
    return Node('Conv', f'conv_{y}', [x, w, 'b'], [y],
                {'kernel_shape': list(kernel), 'pads': list(pads),
                 'dilations': list(dilations)})


def real_layer(nodes, x_shape, weights):
    graph = Graph(nodes, ['x'], ['y'], {'x': Value('x', x_shape)}, weights)
    reference.infer_shapes(graph)
    return graph


@pytest.mark.parametrize('path', PATHS)
def test_real_layers(path, monkeypatch):
    """madmom-beats' 'tcn_conv_10': 16 -> 16, kernel (5, 1), dilation 8 over 140 frames, Elu;
    MTCNN P-Net's 'conv2d_1': 10 -> 16, 3x3 over 119 x 159, PRelu per channel."""
    w = {'w': RNG.standard_normal((16, 16, 5, 1)) / 9, 'b': RNG.standard_normal(16) / 4}
    tcn = real_layer([conv_node('x', 'w', 'c', (5, 1), (16, 0, 16, 0), (8, 1)),
                      Node('Elu', 'elu', ['c'], ['y'], {'alpha': 1.0})], (1, 16, 140, 1),
                     {k: v.astype(np.float32) for k, v in w.items()})
    check('madmom-beats tcn_conv Elu', tcn, path, monkeypatch)
    w = {'w': RNG.standard_normal((16, 10, 3, 3)) / 9, 'b': RNG.standard_normal(16) / 4,
         's': RNG.uniform(0, 0.5, (1, 16, 1, 1))}
    pnet = real_layer([conv_node('x', 'w', 'c', (3, 3), (0, 0, 0, 0)),
                       Node('PRelu', 'p_re_lu_1', ['c', 's'], ['y'])], (1, 10, 119, 159),
                      {k: v.astype(np.float32) for k, v in w.items()})
    check('mtcnn-pnet conv2d_1 PRelu', pnet, path, monkeypatch)


def test_mtcnn_dense_layer_prelu(monkeypatch):
    """O-Net's 'dense_3': 1152 -> 256, bias, PRelu per column (a FusedLinear GEMM)."""
    extra = {'s': fp16_round(RNG.uniform(0, 0.5, (256,)))}
    graph = EC.linear_graph([Node('PRelu', 'act', ['c', 's'], ['y'])], 256, extra, rows=(1,),
                            k=1152)
    for path in ('simt', 'tc'):
        check('mtcnn-onet dense_3 PRelu', graph.copy(), path, monkeypatch)


@pytest.mark.parametrize('op', EC.NEW)
def test_new_activation_alone(op):
    """MaxPool 1x1 (an NHWC image) -> op: the ActParams kernel (no longer generated)."""
    shape, attrs = (1, 32, 20, 24), EC.ATTRS.get(op, {})
    nodes = [Node('MaxPool', 'img', ['x'], ['b'], {'kernel_shape': [1, 1]}),
             Node(op, 'op', ['b'], ['y'], dict(attrs))]
    values = {n: Value(n, shape, 'float32', 'NCHW') for n in ('x', 'b', 'y')}
    graph = Graph(nodes, ['x'], ['y'], values, {})
    x = {'x': fp16_round(RNG.uniform(-4, 4, shape))}
    got = run_graph(graph, x)['y']
    assert_close(f'{op} alone', got, reference.execute(graph, x)['y'], 3e-3)


@pytest.mark.parametrize('name', ['mtcnn-rnet', 'mtcnn-onet'])
def test_mtcnn_matches_onnxruntime(name, tmp_path):
    """Every PRelu fused (test/core checks the launch counts); P-Net is test_views_cuda's."""
    model = zoo_data.BY_NAME[name]
    assert_engine_matches_onnxruntime(f'epilogue {name}', zoo_model_path(name, tmp_path), model)
