"""Gather with constant indices on CUDA (``cuda/lower_gather.py``, ``kernels/gather.cu``),
without a GPU: graphs lowered for sm_90 and run over an emulated arena (``emulated_arena``)
against the numpy ops, the launches each index list gets, and captcha-crnn's unrolled LSTM,
whose 40 time-step Gathers are views of the sequence (no launch)."""
import sys
from pathlib import Path

import numpy as np
import pytest

from emulated_arena import emulate, reference
from tx2_infer_core.cuda.gather_index import index_run, run_strides
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.ir import Graph, Node, Value

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402
import zoo_launches  # noqa: E402

RNG = np.random.default_rng(14)


def _value(name, shape):
    return Value(name, tuple(shape), 'float32', 'NCHW' if len(shape) == 4 else '')


def gather_graph(x_shape, indices, axis, around=False):
    """x -> Gather(indices, axis) -> y; ``around``: x -> Relu -> Gather -> Relu -> y (the
    gather's input and output are then free to be views)."""
    indices = np.asarray(indices, np.int64)
    want = np.take(np.zeros(x_shape), indices % x_shape[axis], axis=axis).shape
    values = {n: _value(n, s) for n, s in (('x', x_shape), ('y', want))}
    nodes = [Node('Gather', 'gather', ['x', 'i'], ['y'], {'axis': axis})]
    if around:
        values.update(a=_value('a', x_shape), g=_value('g', want))
        nodes = [Node('Relu', 'r0', ['x'], ['a']),
                 Node('Gather', 'gather', ['a', 'i'], ['g'], {'axis': axis}),
                 Node('Relu', 'r1', ['g'], ['y'])]
    return Graph(nodes, ['x'], ['y'], values, {'i': indices})


def run(graph):
    """(emulated output, numpy output, kernels of the Gather node)."""
    feeds = {'x': RNG.standard_normal(graph.values['x'].shape).astype(np.float32)}
    got, lowered = emulate(graph, feeds, {'Gather'})
    kernels = [k.kernel for k in lowered.launches if k.node == 'gather']
    return got['y'], reference(graph, feeds)['y'], kernels


CASES = [  # (x shape, indices, axis, kernels alone, kernels between two Relus)
    ((20, 1, 64), 7, 0, ['unary'], []),                     # captcha-crnn's time step
    ((20, 1, 64), -1, 0, ['unary'], []),
    ((5, 4, 3, 2), [0, 1, 3], 0, ['gather'], ['gather']),    # ONNX test_gather_0
    ((5, 4, 3, 2), [0, 1, 3], 1, ['gather'], ['gather']),    # test_gather_1
    ((3, 3), [[0, 2]], 1, ['unary'], []),                    # test_gather_2d_indices
    ((10,), [0, -9, -10], 0, ['gather'], ['gather']),        # test_gather_negative_indices
    ((6, 8), [1, 2, 3], 1, ['unary'], []),                   # a rising run: a view
    ((6, 8), [[1, 3], [5, 7]], 1, ['unary'], []),            # a run in 2-D indices
    ((6, 8), [6, 4, 2], -1, ['unary'], ['unary']),           # falling: copied, never a view
    ((6, 8), [2, 2, 2], 0, ['unary'], ['unary']),            # repeated: step 0
    ((4, 5, 6), [[3, 0], [1, 1]], -2, ['gather'], ['gather']),
    ((2, 3, 4, 5, 6), [5, 0, 2], 4, ['gather'], ['gather']),
    ((2, 3, 4, 5, 6), [5, 0], 4, ['unary'], ['unary']),      # two indices: a run
]


@pytest.mark.parametrize('around', [False, True], ids=['alone', 'between_relus'])
@pytest.mark.parametrize('case', CASES, ids=[f'{c[0]}-{c[2]}' for c in CASES])
def test_gather_matches_numpy(case, around):
    x_shape, indices, axis, alone, between = case
    got, want, kernels = run(gather_graph(x_shape, indices, axis, around))
    np.testing.assert_array_equal(got, want)
    assert kernels == (between if around else alone)


def test_gather_of_an_nhwc_image():
    """A channel pick between two convolutions: NHWC in, NHWC out (the gather kernel), and a
    channel run (a strided copy: a conv reads no offset view)."""
    for picks, kernel in (([5, 0, 3], 'gather'), ([2, 3, 4], 'unary')):
        w1 = RNG.standard_normal((8, 3, 1, 1)).astype(np.float32)
        w2 = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
        shapes = {'x': (1, 3, 6, 5), 'c': (1, 8, 6, 5), 'g': (1, 3, 6, 5), 'y': (1, 4, 4, 3)}
        values = {n: _value(n, s) for n, s in shapes.items()}
        nodes = [Node('Conv', 'c1', ['x', 'w1'], ['c'], {'kernel_shape': [1, 1]}),
                 Node('Gather', 'gather', ['c', 'i'], ['g'], {'axis': 1}),
                 Node('Conv', 'c2', ['g', 'w2'], ['y'], {'kernel_shape': [3, 3]})]
        graph = Graph(nodes, ['x'], ['y'], values,
                      {'w1': w1, 'w2': w2, 'i': np.array(picks, np.int64)})
        got, want, kernels = run(graph)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert kernels == [kernel]
        slots = lower_graph(graph, 90).slots
        assert slots['c'].nhwc and slots['g'].nhwc


def test_index_run_and_its_strides():
    assert index_run(np.array(4)) == (4, 1)
    assert index_run(np.array([[1, 3], [5, 7]])) == (1, 2)
    assert index_run(np.array([3, 1])) == (3, -2)
    assert index_run(np.array([0, 1, 3])) is None
    assert index_run(np.zeros(0, np.int64)) is None
    # x (5, 8) row-major, x[:, 1:7:2] as (5, 3); a 2x2 index block: two dims for one
    assert run_strides((8, 1), 1, (3,), 1, 2) == (1, (8, 2))
    assert run_strides((8, 1), 1, (2, 2), 1, 2) == (1, (8, 4, 2))
    assert run_strides((4096, 4096, 1), 0, (), 7, 1) == (7 * 4096, (4096, 1))


@pytest.fixture(scope='module')
def captcha():
    model = zoo_data.BY_NAME['captcha-crnn']
    graph = zoo_launches.cuda_graph(model)
    return graph, lower_graph(graph, arch=90)


def test_captcha_time_steps_are_views(captcha):
    """Each of the 40 Gathers x[t] of the (20, 1, 4096) sequence is that step's bytes."""
    graph, lowered = captcha
    gathers = [n for n in graph.nodes if n.op == 'Gather']
    assert len(gathers) == 40
    assert not [k for k in lowered.launches if k.node in {n.name for n in gathers}]
    for node in gathers:
        x, y = lowered.slots[node.inputs[0]], lowered.slots[node.outputs[0]]
        t = int(graph.weights[node.inputs[1]])
        assert x.shape == (20, 1, 4096) and y.shape == (1, 4096)
        assert y.ref.base == x.ref.base and y.contiguous()
        assert y.ref.offset == x.ref.offset + 2 * t * 4096
