"""Pad on CUDA (``cuda/lower_pad.py``) without a GPU: the copy launches of every mode run on
the host (``launch_emulator.py``) against the numpy Pad, row-major and NHWC, silero-vad's
reflect pad among them; the refusals name the node and the value."""
import numpy as np
import pytest
from launch_emulator import emulate

from tx2_infer_core import reference
from tx2_infer_core.cuda.lower_pad import border_sources
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Graph, Node, Value

RNG = np.random.default_rng(8)


def pad_graph(shape, pads, mode, value=None, axes=None, before=None):
    """x [-> before (an NCHW image op)] -> Pad(pads, value, axes) -> y."""
    pads = np.asarray(pads, np.int64)
    rank = len(shape)
    full = [0] * (2 * rank)
    for i, a in enumerate(axes if axes is not None else range(rank)):
        full[a], full[a + rank] = pads[i], pads[i + len(pads) // 2]
    out = tuple(n + full[d] + full[d + rank] for d, n in enumerate(shape))
    weights = {'p': pads}
    inputs = ['x', 'p', 'v' if value is not None else '', 'a' if axes is not None else '']
    if value is not None:
        weights['v'] = np.array(value, np.float32)
    if axes is not None:
        weights['a'] = np.array(axes, np.int64)
    layout = 'NCHW' if rank == 4 else ''
    values = {n: Value(n, s, 'float32', layout) for n, s in (('x', shape), ('y', out))}
    nodes = [Node('Pad', 'pad', [n for n in inputs], ['y'], {'mode': mode})]
    if before:
        values['b'] = Value('b', shape, 'float32', layout)
        nodes.insert(0, Node(before, 'img', ['x'], ['b'], {'kernel_shape': [1, 1]}))
        nodes[1].inputs[0] = 'b'
    while nodes[-1].inputs[-1] == '':
        nodes[-1].inputs.pop()
    return Graph(nodes, ['x'], ['y'], values, weights)


def check(graph):
    """The emulated launches give the numpy Pad; returns the Pad's launches."""
    x = {'x': RNG.standard_normal(graph.values['x'].shape).astype(np.float32)}
    got, launches = emulate(graph, {'Pad'}, x)
    np.testing.assert_array_equal(got['y'], reference.execute(graph, x)['y'])
    return [k for k in launches if k.node == 'pad']


def test_silero_vad_reflect_pad():
    """'/stft/padding/Pad': (48, 576) padded by 128 on both ends of the last axis."""
    launches = check(pad_graph((48, 576), [0, 128, 0, 128], 'reflect'))
    assert [k.kernel for k in launches] == ['unary'] * 3  # inside, then the two borders


CASES = {
    'reflect every axis': ((3, 5, 7), [1, 2, 3, 2, 1, 3], 'reflect', {}),
    'reflect widest': ((3, 5, 7), [2, 4, 6, 2, 4, 6], 'reflect', {}),
    'wrap every axis': ((3, 5, 7), [3, 0, 2, 1, 5, 7], 'wrap', {}),
    'edge every axis': ((3, 5, 7), [2, 0, 9, 1, 3, 0], 'edge', {}),
    'constant': ((3, 5, 7), [1, 0, 2, 0, 3, 1], 'constant', {'value': 2.5}),
    'reflect by axes': ((2, 40), [7, 9], 'reflect', {'axes': [-1]}),
    'reflect nhwc image': ((1, 8, 5, 6), [0, 0, 2, 1, 0, 0, 1, 5], 'reflect',
                           {'before': 'MaxPool'}),
    'reflect nhwc channels': ((1, 8, 5, 6), [0, 3, 0, 0, 0, 7, 0, 0], 'reflect',
                              {'before': 'MaxPool'}),
    'wrap nhwc image': ((1, 8, 5, 6), [0, 0, 5, 6, 0, 0, 5, 6], 'wrap', {'before': 'MaxPool'}),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_pad_modes_match_numpy(name):
    shape, pads, mode, kw = CASES[name]
    check(pad_graph(shape, pads, mode, **kw))


def test_border_sources():
    """(first output row, rows, first source row, step) of an axis of 4 rows padded 2, 3."""
    assert border_sources('edge', 2, 4, 3) == [(0, 2, 2, 0), (6, 3, 5, 0)]
    assert border_sources('reflect', 2, 4, 3) == [(0, 2, 4, -1), (6, 3, 4, -1)]
    assert border_sources('wrap', 2, 4, 3) == [(0, 2, 4, 1), (6, 3, 2, 1)]
    assert border_sources('wrap', 0, 4, 0) == []


REFUSED = {
    'reflect too wide': ((3, 5), [0, 5, 0, 0], 'reflect',
                         'axis 1 of size 5 takes pads of at most 4'),
    'wrap too wide': ((3, 5), [4, 0, 0, 0], 'wrap', 'axis 0 of size 3 takes pads of at most 3'),
    'negative': ((3, 5), [0, -1, 0, 2], 'edge', 'negative pads'),
    'unknown mode': ((3, 5), [0, 1, 0, 1], 'mirror',
                     'mode=mirror: only constant, edge, reflect, wrap'),
}


@pytest.mark.parametrize('name', sorted(REFUSED))
def test_refusals_name_node_and_value(name):
    shape, pads, mode, why = REFUSED[name]
    graph = pad_graph(shape, [0] * 2 * len(shape), mode)
    graph.weights['p'] = np.array(pads, np.int64)
    with pytest.raises(UnsupportedOpError, match=f"'Pad' at node 'pad'.*{why}"):
        emulate(graph, {'Pad'}, {})
