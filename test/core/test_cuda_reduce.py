"""ReduceMean, ReduceSum, ReduceMax, ReduceMin on CUDA (``cuda/lower_nn.py`` lower_reduce)
without a GPU: the ``global_reduce`` launches run on the host (``launch_emulator.py``) against
the numpy ops, over a run of axes of row-major and NHWC inputs, all axes into a scalar
(oww-melspec's ReduceMax) among them; the refusals name the node and the value."""
import numpy as np
import pytest
from launch_emulator import emulate

from tx2_infer_core import reference
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Graph, Node, Value

RNG = np.random.default_rng(9)
OPS = ('ReduceMean', 'ReduceSum', 'ReduceMax', 'ReduceMin')


def reduce_graph(op, shape, axes=None, keepdims=1, as_input=False, image=False, noop=0):
    """x [-> MaxPool 1x1: an NHWC image] -> op(axes) -> y."""
    rank = len(shape)
    kept = [a % rank for a in axes] if axes else ([] if noop else range(rank))
    out = tuple(1 if d in kept else n for d, n in enumerate(shape) if keepdims or d not in kept)
    layout = 'NCHW' if rank == 4 else ''
    values = {'x': Value('x', shape, 'float32', layout), 'y': Value('y', out, 'float32', '')}
    attrs, weights, inputs = {'keepdims': keepdims}, {}, ['x']
    if noop:
        attrs['noop_with_empty_axes'] = 1
    if as_input:
        weights['axes'] = np.array(axes or [], np.int64)
        inputs.append('axes')
    elif axes is not None:
        attrs['axes'] = list(axes)
    nodes = [Node(op, 'red', inputs, ['y'], attrs)]
    if image:
        values['b'] = Value('b', shape, 'float32', 'NCHW')
        nodes.insert(0, Node('MaxPool', 'img', ['x'], ['b'], {'kernel_shape': [1, 1]}))
        nodes[1].inputs[0] = 'b'
    return Graph(nodes, ['x'], ['y'], values, weights)


def check(graph):
    """The emulated launches give the numpy op; returns the reduction's launches."""
    x = {'x': RNG.standard_normal(graph.values['x'].shape).astype(np.float32)}
    got, launches = emulate(graph, set(OPS), x)
    want = reference.execute(graph, x)['y']
    assert got['y'].shape == want.shape
    np.testing.assert_allclose(got['y'], want, rtol=1e-5, atol=1e-5)
    return [k for k in launches if k.node == 'red']


def test_oww_melspec_max_of_everything_is_a_scalar():
    """'ReduceMax_24': the maximum of a (1, 1, 133, 32) tensor, keepdims=0: a rank-0 value
    with its own slot in the arena."""
    graph = reduce_graph('ReduceMax', (1, 1, 133, 32), keepdims=0)
    assert graph.values['y'].shape == ()
    launches = check(graph)
    assert [k.kernel for k in launches] == ['global_reduce']
    f = launches[0].fields
    assert (f['N'], f['HW'], f['C']) == (1, 133 * 32, 1)
    lowered = lower_graph(graph, arch=62)
    assert lowered.slots['y'].shape == () and 'y' in lowered.plan.offsets


CASES = {
    'all axes keepdims': ((1, 1, 133, 32), {}),
    'all axes as input': ((4, 6, 5), {'axes': [], 'as_input': True, 'keepdims': 0}),
    'middle axis': ((2, 5, 7), {'axes': [1], 'keepdims': 0}),
    'last axes negative': ((3, 4, 5), {'axes': [-2, -1]}),
    'first axes as input': ((3, 4, 5), {'axes': [0, 1], 'as_input': True, 'keepdims': 0}),
    'nhwc pixels': ((1, 8, 5, 6), {'axes': [2, 3], 'keepdims': 0, 'image': True}),
    'nhwc channels': ((2, 8, 5, 6), {'axes': [1], 'image': True}),
    'nhwc everything': ((2, 8, 5, 6), {'keepdims': 0, 'image': True}),
    'nhwc per image': ((2, 8, 5, 6), {'axes': [1, 2, 3], 'image': True}),
    'noop': ((3, 4), {'axes': [], 'as_input': True, 'noop': 1}),
}


@pytest.mark.parametrize('op', OPS)
@pytest.mark.parametrize('name', sorted(CASES))
def test_reductions_match_numpy(name, op):
    shape, kw = CASES[name]
    launches = check(reduce_graph(op, shape, **kw))
    assert [k.kernel for k in launches] == ['unary' if kw.get('noop') else 'global_reduce']


def _image_net(shape, nodes, values, weights, outputs):
    """x -> MaxPool 1x1 (an NHWC image b) -> ``nodes``."""
    values = dict({'x': shape, 'b': shape}, **values)
    values = {n: Value(n, s, 'float32', 'NCHW' if len(s) == 4 else '') for n, s in values.items()}
    nodes = [Node('MaxPool', 'img', ['x'], ['b'], {'kernel_shape': [1, 1]})] + nodes
    return Graph(nodes, ['x'], outputs, values, weights)


def test_nhwc_outputs_of_an_se_and_a_cbam_block():
    """Outputs stored NHWC: an SE block's ReduceMean(H, W, keepdims) before a 1x1 conv, and
    CBAM's channel max and mean written straight into their slices of a Concat (placement)."""
    shape = (2, 16, 6, 7)
    weights = {'w1': RNG.standard_normal((16, 16, 1, 1)).astype(np.float32),
               'w2': RNG.standard_normal((1, 2, 3, 3)).astype(np.float32)}
    nodes = [Node('ReduceMean', 'se', ['b'], ['m'], {'axes': [2, 3]}),
             Node('Conv', 'fc', ['m', 'w1'], ['s'], {'kernel_shape': [1, 1]}),
             Node('ReduceMax', 'cmax', ['b'], ['cm'], {'axes': [1]}),
             Node('ReduceMean', 'cmean', ['b'], ['ca'], {'axes': [1]}),
             Node('Concat', 'cat', ['cm', 'ca'], ['c'], {'axis': 1}),
             Node('Conv', 'sa', ['c', 'w2'], ['a'], {'kernel_shape': [3, 3], 'pads': [1] * 4})]
    values = {'m': (2, 16, 1, 1), 's': (2, 16, 1, 1), 'cm': (2, 1, 6, 7), 'ca': (2, 1, 6, 7),
              'c': (2, 2, 6, 7), 'a': (2, 1, 6, 7)}
    graph = _image_net(shape, nodes, values, weights, ['s', 'a'])
    x = {'x': RNG.standard_normal(shape).astype(np.float32)}
    got, launches = emulate(graph, set(OPS) | {'Concat'}, x)
    want = reference.execute(graph, x)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)
    slots = lower_graph(graph, arch=90).slots
    assert slots['m'].nhwc and slots['cm'].nhwc and slots['cm'].strides[3] == 2  # in c
    assert not [k for k in launches if k.node == 'cat']  # placed: no copy


REFUSED = {
    'apart': (((2, 3, 4), {'axes': [0, 2]}), 'axes \\[0, 2\\]: a run of adjacent axes'),
    'nhwc batch': (((2, 8, 5, 6), {'axes': [0], 'image': True}), 'axes \\[0\\]: a run'),
    'empty': (((2, 0, 4), {'axes': [1]}), 'an empty input \\(2, 0, 4\\)'),
}


@pytest.mark.parametrize('name', sorted(REFUSED))
def test_refusals_name_node_and_value(name):
    (shape, kw), why = REFUSED[name]
    with pytest.raises(UnsupportedOpError, match=f"'ReduceSum' at node 'red'.*{why}"):
        lower_graph(reduce_graph('ReduceSum', shape, **kw), arch=90)
