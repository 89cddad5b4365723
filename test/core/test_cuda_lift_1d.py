"""1-D convolutions and pools on CUDA as 2-D ones with H = 1 (``cuda/lift_1d.py``), without a
GPU: the rewrite's attributes, the graphs it makes run over an emulated arena (the 2-D twins by
the numpy ops, the Unsqueeze/Squeeze copies by their real launches) against the 1-D graph, the
copies that become views, and oww-melspec's STFT convolutions."""
import sys
from pathlib import Path

import numpy as np
import pytest

from emulated_arena import emulate, reference
from tx2_infer_core.cuda.lift_1d import attrs_2d, lift_1d
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.ir import Graph, Node, Value

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402
import zoo_launches  # noqa: E402

RNG = np.random.default_rng(1)
COPIES = {'Unsqueeze', 'Squeeze'}


def test_attrs_2d():
    conv = {'kernel_shape': [5], 'strides': [2], 'dilations': [3], 'pads': [1, 4], 'group': 2,
            'activation': 'Relu'}
    assert attrs_2d(conv) == {'kernel_shape': [1, 5], 'strides': [1, 2], 'dilations': [1, 3],
                              'pads': [0, 1, 0, 4], 'group': 2, 'activation': 'Relu'}
    convt = {'output_padding': [1], 'output_shape': [9], 'auto_pad': 'SAME_UPPER'}
    assert attrs_2d(convt) == {'output_padding': [0, 1], 'output_shape': [1, 9],
                               'auto_pad': 'SAME_UPPER'}
    assert attrs_2d({'pads': [], 'strides': None}) == {'pads': [], 'strides': None}


class _Net:
    """x (N, C, L) and a chain of 1-D ops: ``add(op, inputs, out shape, weights, **attrs)``."""

    def __init__(self, shape):
        self.values = {'x': Value('x', shape, 'float32', '')}
        self.nodes, self.weights = [], {}

    def add(self, op, inputs, shape, weights=(), **attrs):
        name = f'v{len(self.nodes)}'
        self.values[name] = Value(name, shape, 'float32', '')
        for i, w in enumerate(weights):
            self.weights[f'{name}_w{i}'] = np.asarray(w, np.float32)
        names = list(inputs) + [f'{name}_w{i}' for i in range(len(weights))]
        self.nodes.append(Node(op, f'n{len(self.nodes)}', names, [name], attrs))
        return name

    def graph(self, outputs):
        return Graph(self.nodes, ['x'], outputs, self.values, self.weights)


def _w(*shape):
    return RNG.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))


def conv_chain():
    """Conv (pads, stride, dilation) -> FusedConv (groups, residual, Relu) -> MaxPool ->
    AveragePool (count_include_pad) -> ConvTranspose -> GlobalAveragePool; the FusedConv's
    output is read by a pool and, as its residual, by nothing else: every 3-D value between
    the 1-D ops is read only by lifted ops."""
    g = _Net((2, 6, 40))
    a = g.add('Conv', ['x'], (2, 8, 19), [_w(8, 6, 3), _w(8)], kernel_shape=[3], pads=[2, 0],
              strides=[2], dilations=[2])
    b = g.add('FusedConv', [a], (2, 8, 19), [_w(8, 2, 3), _w(8)], kernel_shape=[3],
              pads=[1, 1], group=4, activation='Relu')
    c = g.add('FusedConv', [b], (2, 8, 19), [_w(8, 8, 1)], kernel_shape=[1])
    g.nodes[-1].inputs += ['', b]  # a residual: another lifted op's output
    d = g.add('MaxPool', [c], (2, 8, 10), kernel_shape=[3], strides=[2], pads=[1, 1])
    e = g.add('AveragePool', [d], (2, 8, 10), kernel_shape=[3], pads=[1, 1],
              count_include_pad=1)
    f = g.add('ConvTranspose', [e], (2, 4, 21), [_w(8, 4, 3)], kernel_shape=[3], strides=[2],
              output_padding=[1], pads=[1, 0])
    return g.graph([g.add('GlobalAveragePool', [f], (2, 4, 1)), e])


def test_lift_leaves_the_graph_alone():
    graph = conv_chain()
    lifted, count = lift_1d(graph)
    assert count == 7
    assert [len(graph.values[n.outputs[0]].shape) for n in graph.nodes] == [3] * 7
    assert len(lifted.nodes) == 7 + 1 + 2  # x unsqueezed once; e and the output squeezed
    assert lift_1d(lifted) == (lifted, 0)


def test_conv_chain_matches_the_1d_graph():
    graph = conv_chain()
    feeds = {'x': RNG.standard_normal((2, 6, 40)).astype(np.float32)}
    lifted = lift_1d(graph)[0]
    got, lowered = emulate(lifted, feeds, COPIES)
    want = reference(graph, feeds)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)
    ops = {n.name: n.op for n in lifted.nodes}
    kernels = [(ops[k.node], k.kernel) for k in lowered.launches]
    # x and the output e change layout (row-major <-> NHWC); no copy between the ops, none
    # for the pooled (2, 4, 1): one pixel a channel, NHWC is row-major
    assert [k for k in kernels if k[0] in COPIES] == [('Unsqueeze', 'unary'),
                                                      ('Squeeze', 'unary')]
    geo = next(k.fields for k in lowered.launches if k.node == 'n0')
    assert (geo['H'], geo['R'], geo['sh'], geo['ph'], geo['dh']) == (1, 1, 1, 0, 1)
    assert (geo['W'], geo['S'], geo['sw'], geo['pw'], geo['dw']) == (40, 3, 2, 2, 2)


def test_one_channel_input_is_its_own_image():
    """oww-melspec's form: a (1, 1, L) wave into a strided STFT conv: no copy in."""
    g = _Net((1, 1, 2000))
    y = g.add('Conv', ['x'], (1, 33, 13), [_w(33, 1, 64)], kernel_shape=[64], strides=[160])
    graph = g.graph([g.add('Relu', [y], (1, 33, 13))])
    feeds = {'x': RNG.standard_normal((1, 1, 2000)).astype(np.float32)}
    lifted = lift_1d(graph)[0]
    got, lowered = emulate(lifted, feeds, COPIES)
    np.testing.assert_allclose(got['v1'], reference(graph, feeds)['v1'], rtol=1e-5, atol=1e-5)
    copy_nodes = {n.name for n in lifted.nodes if n.op in COPIES}
    assert not [k for k in lowered.launches if k.node in copy_nodes]


def test_oww_melspec_stft_convolutions():
    """The zoo model's two (1, 1, 21760) -> (1, 257, 133) convolutions (kernel 512, stride
    160) lower on the tensor-core path with no copy around them, and compute what the 1-D
    graph computes up to its mel spectrogram (the ReduceMax after it is not ours)."""
    graph = zoo_launches.cuda_graph(zoo_data.BY_NAME['oww-melspec'])
    convs = [n for n in graph.nodes if n.op == 'FusedConv']
    assert [graph.values[n.outputs[0]].shape for n in convs] == [(1, 257, 133)] * 2
    reduce_max = next(n for n in graph.nodes if n.op == 'ReduceMax')
    graph.outputs = [reduce_max.inputs[0]]
    graph.prune()
    lifted = lift_1d(graph)[0]
    feeds = {graph.inputs[0]: zoo_data.photo_tensor(zoo_data.BY_NAME['oww-melspec'])}
    got, lowered = emulate(lifted, feeds, COPIES)
    want = reference(graph, feeds)[graph.outputs[0]]
    np.testing.assert_allclose(got[graph.outputs[0]], want, rtol=1e-4, atol=1e-4)
    ops = {n.name: n.op for n in lifted.nodes}
    assert not [k for k in lowered.launches if ops[k.node] in COPIES]
    assert {k.kernel for k in lowered.launches if k.node in {n.name for n in convs}} == \
        {'conv_mma_gather_64x64_cl'}  # split K, one cluster launch (sm_90)


@pytest.mark.parametrize('arch', [62, 90])
def test_1d_ops_lower_on_every_arch(arch):
    kernels = {k.kernel for k in lower_graph(conv_chain(), arch).launches}
    assert {'pool2d', 'global_reduce'} <= kernels
    assert any(k.startswith('convt_') for k in kernels)
