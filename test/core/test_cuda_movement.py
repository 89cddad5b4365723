"""The data movement ops on CUDA (``cuda/lower_movement.py``: Expand, Tile, DepthToSpace,
SpaceToDepth, CastLike, EyeLike as strided copies), without a GPU.

The dims a copy merges; the launches of each op; every ONNX node case over the emulated arena
(``logic_emulator``: the copies as launched) with its real dtypes and as the GPU conformance
test builds it, passing or refused by name; NHWC images in and out (after a Conv or a MaxPool,
into a Conv), a channel slice of a placed Split read in place; the refusals.
"""
import numpy as np
import pytest
import test_onnx_node_conformance as cpu
from logic_emulator import case_graph, emulate
from node_cases import GPU, data_sets

from tx2_infer_core import reference
from tx2_infer_core.cuda.lower_movement import merge_dims
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Graph, Node, Value

RNG = np.random.default_rng(43)
OPS = ('Expand', 'Tile', 'DepthToSpace', 'SpaceToDepth', 'CastLike', 'EyeLike')


def test_merge_dims():
    # row-major on both sides: one dim; size-1 dims dropped
    assert merge_dims((2, 1, 3, 4), (12, 12, 4, 1), (12, 12, 4, 1)) == ((24,), (1,), (1,))
    # a broadcast dim (stride 0) merges with nothing that steps
    assert merge_dims((5, 3, 4), (0, 4, 1), (12, 4, 1)) == ((5, 12), (0, 1), (12, 1))
    # a transposed side keeps the dims apart
    assert merge_dims((3, 4), (1, 3), (4, 1)) == ((3, 4), (1, 3), (4, 1))
    assert merge_dims((1, 1), (5, 7), (9, 9)) == ((), (), ())


def graph_of(nodes, shapes, inputs, outputs, weights=None, dtypes=None):
    """A graph of ``nodes`` over values {name: shape} (4-D float ones NCHW)."""
    dtypes = dict(dtypes or {})
    values = {n: Value(n, tuple(s), dtypes.get(n, 'float32'), 'NCHW' if len(s) == 4 else '')
              for n, s in shapes.items()}
    return Graph(list(nodes), list(inputs), list(outputs), values, dict(weights or {}))


def one_node(op, x_shape, y_shape, attrs=None, weights=None, dtype='float32'):
    node = Node(op, 'n0', ['x'] + list(weights or {}), ['y'], dict(attrs or {}))
    return graph_of([node], {'x': x_shape, 'y': y_shape}, ['x'], ['y'], weights,
                    {'x': dtype, 'y': dtype})


def kernels(graph):
    return [k.kernel for k in lower_graph(graph, arch=90).launches]


def test_launches_of_each_op():
    assert kernels(one_node('Expand', (40, 1), (40, 40), weights={
        's': np.array([40, 40])})) == ['unary']
    tile = one_node('Tile', (2, 3, 4, 5), (14, 18, 16, 10), weights={
        'r': np.array([7, 6, 4, 2])})
    assert kernels(tile) == ['unary'] * 5  # the first block, then one per tiled dim
    assert kernels(one_node('Tile', (1, 1, 384), (8, 1, 384), weights={
        'r': np.array([8, 1, 1])})) == ['unary'] * 2
    assert kernels(one_node('DepthToSpace', (1, 12, 5, 6), (1, 3, 10, 12),
                            {'blocksize': 2})) == ['unary']
    assert kernels(one_node('SpaceToDepth', (1, 3, 10, 12), (1, 12, 5, 6),
                            {'blocksize': 2, 'mode': 'CRD'})) == ['unary']
    assert kernels(one_node('CastLike', (3, 8), (3, 8), weights={
        't': np.zeros(1, np.float16)})) == ['unary']
    eye = lower_graph(one_node('EyeLike', (4, 6), (4, 6), {'k': -1}), arch=62).launches
    assert [k.kernel for k in eye] == ['unary'] and eye[0].fields['x'].base == 'weights'


def _run_case(folder, op, conformance_style):
    """'pass', 'refused: <message>' or 'n/a' for every data set of a case; a wrong answer
    fails."""
    status = 'n/a'
    for graph, acts, expected in data_sets(folder, None if conformance_style else case_graph):
        if graph is None:
            return 'n/a'
        try:
            got, _ = emulate(graph, acts, {op})
        except UnsupportedOpError as err:
            message = str(err).split('; supported:')[0]
            assert f"'{op}' at node '{graph.nodes[0].name}'" in message, message
            return f'refused: {message}'
        for name, want in expected.items():
            assert GPU.close(got[name], np.asarray(want, np.float64)), (folder.name, name)
        status = 'pass'
    return status


CASES = {f.name: (f, op) for op, found in cpu.collect_cases().items() if op in OPS
         for f in found}


@pytest.mark.parametrize('style', ['real dtypes', 'as the GPU conformance test'])
@pytest.mark.parametrize('name', sorted(CASES))
def test_onnx_node_case_passes_or_is_refused_by_name(name, style):
    """Every case passes; CastLike to another type than float16/32/64 is refused, naming it."""
    folder, op = CASES[name]
    status = _run_case(folder, op, style != 'real dtypes')
    if status.startswith('refused'):
        assert op == 'CastLike' and 'target type' in status, status
    else:
        assert status in ('pass', 'n/a')


def test_node_cases_pass_in_number():
    results = [_run_case(f, op, False) for f, op in CASES.values()]
    assert results.count('pass') >= 15, results
    refused = [r for r in results if r.startswith('refused')]
    assert refused and all('only float16, float32 and double' in r for r in refused)


# NHWC images, channel slices ----------------------------------------------------------------

def assert_emulated_matches(graph, feeds, launched):
    got, lowered = emulate(graph, feeds, launched)
    want = reference.execute(graph, feeds)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=2e-3, atol=2e-3, err_msg=name)
    return lowered


@pytest.mark.parametrize('mode', ['DCR', 'CRD'])
def test_depth_to_space_after_a_conv_into_a_conv(mode):
    """ESPCN's sub-pixel layer: Conv (NHWC) -> DepthToSpace -> Conv (NHWC) and out."""
    w1 = RNG.standard_normal((12, 4, 3, 3)).astype(np.float32) / 6
    w2 = RNG.standard_normal((2, 3, 1, 1)).astype(np.float32)
    nodes = [Node('Conv', 'c1', ['x', 'w1'], ['a'], {'pads': [1, 1, 1, 1]}),
             Node('DepthToSpace', 'd2s', ['a'], ['b'], {'blocksize': 2, 'mode': mode}),
             Node('Conv', 'c2', ['b', 'w2'], ['y'])]
    graph = graph_of(nodes, {'x': (1, 4, 5, 6), 'a': (1, 12, 5, 6), 'b': (1, 3, 10, 12),
                             'y': (1, 2, 10, 12)}, ['x'], ['y', 'b'], {'w1': w1, 'w2': w2})
    lowered = assert_emulated_matches(graph, {'x': RNG.standard_normal((1, 4, 5, 6))
                                              .astype(np.float32)}, {'DepthToSpace'})
    assert lowered.slots['a'].nhwc


@pytest.mark.parametrize('mode', ['DCR', 'CRD'])
def test_space_to_depth_from_an_image_into_a_conv(mode):
    """YOLOv5's Focus as one op: MaxPool (NHWC) -> SpaceToDepth -> Conv."""
    w = RNG.standard_normal((8, 12, 1, 1)).astype(np.float32) / 4
    nodes = [Node('MaxPool', 'img', ['x'], ['a'], {'kernel_shape': [1, 1]}),
             Node('SpaceToDepth', 's2d', ['a'], ['b'], {'blocksize': 2, 'mode': mode}),
             Node('Conv', 'conv', ['b', 'w'], ['y'])]
    graph = graph_of(nodes, {'x': (2, 3, 8, 12), 'a': (2, 3, 8, 12), 'b': (2, 12, 4, 6),
                             'y': (2, 8, 4, 6)}, ['x'], ['y', 'b'], {'w': w})
    lowered = assert_emulated_matches(graph, {'x': RNG.standard_normal((2, 3, 8, 12))
                                              .astype(np.float32)}, {'SpaceToDepth'})
    assert lowered.slots['b'].nhwc


def test_expand_and_tile_of_images_and_a_channel_slice():
    """A Split output stored as a channel view of its NHWC input, read in place by Expand and
    DepthToSpace; Tile of an NHWC image."""
    nodes = [Node('MaxPool', 'img', ['x'], ['a'], {'kernel_shape': [1, 1]}),
             Node('Split', 'split', ['a', 'parts'], ['p', 'q'], {'axis': 1}),
             Node('Expand', 'expand', ['p', 'shape'], ['e']),
             Node('DepthToSpace', 'd2s', ['q'], ['d'], {'blocksize': 2}),
             Node('Tile', 'tile', ['a', 'reps'], ['t'])]
    shapes = {'x': (1, 12, 1, 5), 'a': (1, 12, 1, 5), 'p': (1, 8, 1, 5), 'q': (1, 4, 1, 5),
              'e': (3, 8, 4, 5), 'd': (1, 1, 2, 10), 't': (2, 12, 2, 5)}
    weights = {'parts': np.array([8, 4]), 'shape': np.array([3, 8, 4, 5]),
               'reps': np.array([2, 1, 2, 1])}
    graph = graph_of(nodes, shapes, ['x'], ['e', 'd', 't'], weights)
    lowered = assert_emulated_matches(graph, {'x': RNG.standard_normal(shapes['x'])
                                              .astype(np.float32)},
                                      {'Expand', 'DepthToSpace', 'Tile', 'Split'})
    assert lowered.slots['q'].channel_off == 8  # a view: no Split copy
    assert not [k for k in lowered.launches if k.node == 'split']


# Refusals -------------------------------------------------------------------------------------

REFUSALS = {
    'DepthToSpace mode': (one_node('DepthToSpace', (1, 8, 2, 3), (1, 2, 4, 6),
                                   {'blocksize': 2, 'mode': 'RDC'}), "mode='RDC'"),
    'DepthToSpace channels': (one_node('DepthToSpace', (1, 6, 2, 3), (1, 1, 4, 6),
                                       {'blocksize': 2}), '6 channels'),
    'SpaceToDepth pixels': (one_node('SpaceToDepth', (1, 2, 5, 6), (1, 8, 2, 3),
                                     {'blocksize': 2}), '5 x 6 pixels'),
    'CastLike to int32': (one_node('CastLike', (3, 4), (3, 4), weights={
        't': np.zeros(0, np.int32)}), 'target type int32'),
    'EyeLike of rank 3': (one_node('EyeLike', (2, 3, 3), (2, 3, 3)), 'output of rank 3'),
    'Tile past six dims': (one_node('Tile', (2, 3, 2, 3, 2, 3), (6, 9, 6, 9, 6, 9), weights={
        'r': np.full(6, 3)}), 'a copy over 7 dims'),
    'Expand of an int64 input': (one_node('Expand', (3, 1), (3, 4), weights={
        's': np.array([3, 4])}, dtype='int64'), 'int64 graph input'),
}


@pytest.mark.parametrize('name', sorted(REFUSALS))
def test_refusals_name_the_node_and_the_reason(name):
    graph, reason = REFUSALS[name]
    with pytest.raises(UnsupportedOpError, match=f"'{graph.nodes[0].op}' at node 'n0'") as err:
        lower_graph(graph, arch=90)
    assert reason in str(err.value)
