"""Gather with constant indices (``cuda/lower_gather.py``, ``kernels/gather.cu``) and the 1-D
convolutions and pools (``cuda/lift_1d.py``) on the GPU against the numpy ops, on the zoo
shapes that needed them: captcha-crnn's time-step Gathers of a (20, 1, 4096) sequence and
oww-melspec's STFT convolutions (1, 1, 21760) -> (1, 257, 133); then captcha-crnn whole
against ONNX Runtime, and oww-melspec's STFT convolutions with the model's weights against
the numpy ops."""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (assert_close, assert_engine_matches_onnxruntime, fp16_round, run_graph,
                      zoo_model_path)
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops import run_node

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402

RNG = np.random.default_rng(14)


def _value(name, shape):
    return Value(name, tuple(shape), 'float32', 'NCHW' if len(shape) == 4 else '')


def chain(x_shape, steps, weights):
    """x -> steps [(op, out shape, inputs after the first, attrs)] -> y (the last)."""
    values, nodes, last = {'x': _value('x', x_shape)}, [], 'x'
    for i, (op, shape, more, attrs) in enumerate(steps):
        name = 'y' if i == len(steps) - 1 else f'v{i}'
        values[name] = _value(name, shape)
        nodes.append(Node(op, f'n{i}', [last] + list(more), [name], dict(attrs)))
        last = name
    return Graph(nodes, ['x'], ['y'], values, dict(weights))


def reference(graph, feeds) -> dict:
    """Every value of ``graph`` by the numpy ops."""
    env = dict(feeds)
    for node in graph.nodes:
        args = [env.get(n, graph.weights.get(n)) if n else None for n in node.inputs]
        env.update(zip(node.outputs, run_node(node, args)))
    return env


def check(label, graph, tol=3e-3, **options):
    x = fp16_round(RNG.standard_normal(graph.values['x'].shape))
    want = reference(graph, {'x': x})['y']
    got = run_graph(graph, {'x': x}, **options)['y']
    assert_close(label, got, want, tol)


GATHERS = [  # (x shape, indices, axis); the indices are constants
    ((20, 1, 4096), np.array(7), 0),                  # captcha-crnn: x[t], a copy or a view
    ((20, 1, 4096), np.array(-1), 0),
    ((5, 4, 3, 2), np.array([0, 1, 3]), 1),           # the gather kernel
    ((10,), np.array([0, -9, -10]), 0),
    ((4, 5, 6), np.array([[3, 0], [1, 1]]), -2),
    ((6, 8), np.array([6, 4, 2]), 1),                 # a falling run: a strided copy
]


@pytest.mark.parametrize('relus', [False, True], ids=['alone', 'between_relus'])
@pytest.mark.parametrize('case', GATHERS,
                         ids=[f'{c[0]}-{c[1].tolist()}-{c[2]}' for c in GATHERS])
def test_gather_matches_numpy(case, relus):
    """Alone (graph input to graph output: a launch) and between two Relus (a rising run
    then is a view of the Relu's output: no launch)."""
    x_shape, idx, axis = case
    y_shape = np.take(np.zeros(x_shape), idx, axis=axis).shape
    steps = [('Gather', y_shape, ['i'], {'axis': axis})]
    if relus:
        steps = [('Relu', x_shape, [], {})] + steps + [('Relu', y_shape, [], {})]
    check(f'Gather {x_shape} axis {axis}', chain(x_shape, steps, {'i': idx}), tol=1e-6)


def test_gather_channels_of_an_nhwc_image():
    """Conv -> Gather(channels) -> Conv: NHWC in and out, the kernel and a channel run."""
    for picks in ([5, 0, 3], [2, 3, 4]):
        w = {'w1': RNG.standard_normal((8, 3, 1, 1)).astype(np.float32),
             'w2': (RNG.standard_normal((4, 3, 3, 3)) / 5).astype(np.float32),
             'i': np.array(picks)}
        graph = chain((1, 3, 12, 10), [
            ('Conv', (1, 8, 12, 10), ['w1'], {'kernel_shape': [1, 1]}),
            ('Gather', (1, 3, 12, 10), ['i'], {'axis': 1}),
            ('Conv', (1, 4, 10, 8), ['w2'], {'kernel_shape': [3, 3]})], w)
        check(f'Conv-Gather{picks}-Conv', graph)


@pytest.mark.parametrize('path', ['tc', 'simt'])
def test_oww_stft_convolution(path):
    """oww-melspec's 1-D FusedConv: one channel, kernel 512, stride 160, 257 outputs."""
    w = {'w': (RNG.standard_normal((257, 1, 512)) / 22).astype(np.float32)}
    graph = chain((1, 1, 21760), [('FusedConv', (1, 257, 133), ['w'],
                                   {'kernel_shape': [512], 'strides': [160], 'pads': [0, 0],
                                    'dilations': [1], 'group': 1, 'activation': ''})], w)
    check(f'1-D FusedConv {path}', graph, 5e-3, conv_path=path)


@pytest.mark.parametrize('path', ['tc', 'simt'])
def test_1d_chain(path):
    """Conv (pads, stride, dilation) -> grouped FusedConv (Relu) -> MaxPool -> AveragePool
    (count_include_pad) -> ConvTranspose (stride, output_padding) -> GlobalAveragePool."""
    def w(*shape):
        return (RNG.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)

    weights = {'w0': w(16, 6, 3), 'b0': w(16), 'w1': w(16, 4, 3), 'w2': w(16, 8, 3)}
    graph = chain((2, 6, 40), [
        ('Conv', (2, 16, 19), ['w0', 'b0'], {'kernel_shape': [3], 'pads': [2, 0],
                                             'strides': [2], 'dilations': [2]}),
        ('FusedConv', (2, 16, 19), ['w1'], {'kernel_shape': [3], 'pads': [1, 1], 'group': 4,
                                            'activation': 'Relu'}),
        ('MaxPool', (2, 16, 10), [], {'kernel_shape': [3], 'strides': [2], 'pads': [1, 1]}),
        ('AveragePool', (2, 16, 10), [], {'kernel_shape': [3], 'pads': [1, 1],
                                          'count_include_pad': 1}),
        ('ConvTranspose', (2, 8, 21), ['w2'], {'kernel_shape': [3], 'strides': [2],
                                               'output_padding': [1], 'pads': [1, 0]}),
        ('GlobalAveragePool', (2, 8, 1), [], {})], weights)
    check(f'1-D chain {path}', graph, 5e-3, conv_path=path)


def test_captcha_crnn_matches_onnxruntime(tmp_path):
    model = zoo_data.BY_NAME['captcha-crnn']
    assert_engine_matches_onnxruntime('captcha-crnn', zoo_model_path(model.name, tmp_path), model)


def test_oww_melspec_stft_matches_numpy(tmp_path):
    """oww-melspec's two STFT convolutions with the model's weights on its recording, the
    graph cut after them. The recording is scaled by 1/64: at full scale (samples up to
    32768) the STFT reaches 7.6e5, past FP16's 65504, so the model as a whole does not fit
    the FP16 arena (its power spectrum even less)."""
    from tx2_infer_core.engine_build import import_model
    from tx2_infer_core.passes import POINTWISE_LEVEL, optimize
    model = zoo_data.BY_NAME['oww-melspec']
    graph = optimize(import_model(zoo_model_path(model.name, tmp_path), model.input_shape),
                     POINTWISE_LEVEL)[0]
    graph.outputs = [n.outputs[0] for n in graph.nodes if n.op == 'FusedConv']
    assert len(graph.outputs) == 2
    graph.prune()
    feeds = {graph.inputs[0]: fp16_round(zoo_data.photo_tensor(model) / 64)}
    want = reference(graph, feeds)
    got = run_graph(graph, feeds)
    for name in graph.outputs:
        assert_close(f'oww-melspec {name}', got[name], want[name], 5e-3)
