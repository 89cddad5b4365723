"""Issue 14's CUDA gaps on the GPU against the numpy backend: the generated unary ops (Shrink,
Round, Acosh, ...: one generated kernel each, alone, after an NHWC image op and fused into a
chain; Elu and Selu, now activations, alone in the ActParams kernel and in a chain), Pad in
modes reflect, wrap and edge, ReduceMax/Min/Sum/Mean over a run of axes and over everything (a
rank-0 value), a Clip whose bound is computed at run time; then the zoo models that needed
them (madmom-beats, silero-vad, oww-melspec: its FP16 range fitted at build) against ONNX
Runtime.
``test/core/test_cuda_generated_unary.py``, ``test_cuda_pad.py`` and ``test_cuda_reduce.py``
check the same lowerings without a GPU."""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_close, core_module, fp16_round, run_graph, zoo_model_path
from tx2_infer_core import reference
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.passes import POINTWISE_LEVEL, optimize

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402

RNG = np.random.default_rng(14)


UC = core_module('unary_cases')


def graph_of(nodes, shapes, inputs=('x',), outputs=('y',), weights=None):
    """A graph of ``nodes`` over values {name: shape} (4-D ones NCHW)."""
    values = {n: Value(n, tuple(s), 'float32', 'NCHW' if len(s) == 4 else '')
              for n, s in shapes.items()}
    return Graph(list(nodes), list(inputs), list(outputs), values, dict(weights or {}))


def compare(label, graph, x, tol=3e-3):
    """Every output of ``graph`` on the GPU against the numpy backend on the same inputs."""
    want = reference.execute(graph, x)
    got = run_graph(graph, x)
    for name in graph.outputs:
        assert_close(f'{label} {name}', got[name], want[name], tol)
    return got, want


def unary_input(op, shape):
    """FP16 values inside ``op``'s range, every half integer of it among them."""
    lo, hi = UC.RANGES.get(op, (-4.0, 4.0))
    x = RNG.uniform(lo, hi, int(np.prod(shape))).astype(np.float32)
    halves = np.arange(np.ceil(2 * lo), np.floor(2 * hi) + 1) / 2
    x[:len(halves)] = halves
    return fp16_round(x.reshape(shape))


# Generated unary ops -------------------------------------------------------------------------

@pytest.mark.parametrize('op', UC.GENERATED)
def test_generated_op_after_an_image_op(op):
    """MaxPool 1x1 (an NHWC image) -> op, with attributes other than the defaults."""
    shape = (1, 32, 20, 24)
    nodes = [Node('MaxPool', 'img', ['x'], ['b'], {'kernel_shape': [1, 1]}),
             Node(op, 'op', ['b'], ['y'], UC.ATTRS.get(op, {}))]
    compare(op, graph_of(nodes, {'x': shape, 'b': shape, 'y': shape}),
            {'x': unary_input(op, shape)})


def test_madmom_beats_elu():
    """'elu_11': Elu over a row-major (142, 79, 16) tensor."""
    shape = (142, 79, 16)
    graph = graph_of([Node('Elu', 'elu_11', ['x'], ['y'], {'alpha': 1.0})],
                     {'x': shape, 'y': shape})
    compare('madmom-beats elu_11', graph, {'x': unary_input('Elu', shape)})


def test_chain_of_generated_ops_is_one_launch():
    shape = (2, 24, 10)
    nodes = [Node('Elu', 'n1', ['x'], ['a'], {'alpha': 0.5}), Node('Selu', 'n2', ['a'], ['b']),
             Node('Shrink', 'n3', ['b'], ['c'], {'lambd': 0.3, 'bias': 0.1}),
             Node('Atan', 'n4', ['c'], ['y'])]
    graph = graph_of(nodes, {n: shape for n in 'xabcy'})
    fused, _ = optimize(graph.copy(), POINTWISE_LEVEL)
    assert [n.op for n in fused.nodes] == ['FusedPointwise']
    x = {'x': unary_input('Elu', shape)}
    assert_close('generated chain y', run_graph(fused, x)['y'],
                 reference.execute(graph, x)['y'], 3e-3)


def test_gelu_tanh_form():
    shape = (4, 64, 48)
    graph = graph_of([Node('Gelu', 'g', ['x'], ['y'], {'approximate': 'tanh'})],
                     {'x': shape, 'y': shape})
    compare('Gelu tanh', graph, {'x': unary_input('Gelu', shape)})


# Pad -------------------------------------------------------------------------------------------

def pad_graph(shape, pads, mode, image=False):
    rank = len(shape)
    out = tuple(n + pads[d] + pads[d + rank] for d, n in enumerate(shape))
    nodes = [Node('Pad', 'pad', ['b' if image else 'x', 'p'], ['y'], {'mode': mode})]
    if image:
        nodes.insert(0, Node('MaxPool', 'img', ['x'], ['b'], {'kernel_shape': [1, 1]}))
    shapes = dict({'x': shape, 'y': out}, **({'b': shape} if image else {}))
    return graph_of(nodes, shapes, weights={'p': np.array(pads, np.int64)})


PADS = {
    'silero-vad reflect': ((48, 576), [0, 128, 0, 128], 'reflect', False),
    'reflect every axis': ((3, 5, 7), [1, 2, 3, 2, 1, 3], 'reflect', False),
    'wrap every axis': ((3, 5, 7), [3, 0, 2, 1, 5, 7], 'wrap', False),
    'edge every axis': ((3, 5, 7), [2, 0, 9, 1, 3, 0], 'edge', False),
    'reflect nhwc': ((1, 16, 9, 12), [0, 3, 2, 1, 0, 4, 1, 5], 'reflect', True),
}


@pytest.mark.parametrize('name', sorted(PADS))
def test_pad_is_exact(name):
    """A Pad copies FP16 values: exactly numpy's on FP16 inputs."""
    shape, pads, mode, image = PADS[name]
    graph = pad_graph(shape, pads, mode, image)
    x = {'x': fp16_round(RNG.standard_normal(shape))}
    got = run_graph(graph, x)['y']
    np.testing.assert_array_equal(got, reference.execute(graph, x)['y'])


# Reductions ----------------------------------------------------------------------------------

REDUCE_OPS = ('ReduceMax', 'ReduceMin', 'ReduceSum', 'ReduceMean')


@pytest.mark.parametrize('op', REDUCE_OPS)
def test_reduction_to_a_scalar_read_back_by_a_broadcast(op):
    """oww-melspec's shape: op over all of (1, 1, 133, 32), keepdims=0 (a rank-0 value),
    subtracted from the input (the scalar read by a broadcast)."""
    shape = (1, 1, 133, 32)
    nodes = [Node(op, 'red', ['x'], ['m'], {'keepdims': 0}), Node('Sub', 'sub', ['x', 'm'], ['y'])]
    graph = graph_of(nodes, {'x': shape, 'm': (), 'y': shape})
    x = {'x': fp16_round(RNG.uniform(0.5, 1.5, shape))}  # sums far from 0
    compare(f'{op} to a scalar', graph, x)


def test_scalar_graph_output():
    """A rank-0 graph output comes back as a rank-0 array."""
    shape = (1, 1, 133, 32)
    graph = graph_of([Node('ReduceSum', 'red', ['x'], ['y'], {'keepdims': 0})],
                     {'x': shape, 'y': ()})
    got, _ = compare('ReduceSum scalar output', graph,
                     {'x': fp16_round(RNG.uniform(0.5, 1.5, shape))})
    assert got['y'].shape == ()


CASES = {
    'middle axis': ((2, 5, 7), (2, 7), {'axes': [1], 'keepdims': 0}),
    'last axes': ((8, 60, 40), (8, 1, 1), {'axes': [-2, -1]}),
    'everything kept': ((1, 16, 40, 40), (1, 1, 1, 1), {}),   # a sum within FP16's range
}


@pytest.mark.parametrize('op', REDUCE_OPS)
@pytest.mark.parametrize('name', sorted(CASES))
def test_reduction_over_a_run_of_axes(name, op):
    shape, out, attrs = CASES[name]
    graph = graph_of([Node(op, 'red', ['x'], ['y'], attrs)], {'x': shape, 'y': out})
    compare(f'{op} {name}', graph, {'x': fp16_round(RNG.uniform(0.5, 1.5, shape))})


@pytest.mark.parametrize('op', REDUCE_OPS)
def test_reduction_of_an_nhwc_image(op):
    """MaxPool 1x1 (NHWC) -> op over the channels, and over everything."""
    shape = (2, 24, 10, 12)
    nodes = [Node('MaxPool', 'img', ['x'], ['b'], {'kernel_shape': [1, 1]}),
             Node(op, 'per_pixel', ['b'], ['c'], {'axes': [1]}),
             Node(op, 'all', ['b'], ['s'], {})]
    graph = graph_of(nodes, {'x': shape, 'b': shape, 'c': (2, 1, 10, 12), 's': (1, 1, 1, 1)},
                     outputs=('c', 's'))
    compare(f'{op} of an NHWC image', graph, {'x': fp16_round(RNG.uniform(0.5, 1.5, shape))})


def test_reductions_into_nhwc_outputs():
    """An SE block's ReduceMean(H, W, keepdims) before a 1x1 conv (an NHWC output) and CBAM's
    channel max and mean written into their slices of a Concat before a 3x3 conv."""
    shape = (2, 32, 12, 14)
    weights = {'w1': (RNG.standard_normal((32, 32, 1, 1)) / 6).astype(np.float32),
               'w2': (RNG.standard_normal((1, 2, 3, 3)) / 3).astype(np.float32)}
    nodes = [Node('MaxPool', 'img', ['x'], ['b'], {'kernel_shape': [1, 1]}),
             Node('ReduceMean', 'se', ['b'], ['m'], {'axes': [2, 3]}),
             Node('Conv', 'fc', ['m', 'w1'], ['s'], {'kernel_shape': [1, 1]}),
             Node('ReduceMax', 'cmax', ['b'], ['cm'], {'axes': [1]}),
             Node('ReduceMean', 'cmean', ['b'], ['ca'], {'axes': [1]}),
             Node('Concat', 'cat', ['cm', 'ca'], ['c'], {'axis': 1}),
             Node('Conv', 'sa', ['c', 'w2'], ['a'], {'kernel_shape': [3, 3], 'pads': [1] * 4})]
    shapes = {'x': shape, 'b': shape, 'm': (2, 32, 1, 1), 's': (2, 32, 1, 1),
              'cm': (2, 1, 12, 14), 'ca': (2, 1, 12, 14), 'c': (2, 2, 12, 14),
              'a': (2, 1, 12, 14)}
    graph = graph_of(nodes, shapes, outputs=('s', 'a'), weights=weights)
    compare('SE and CBAM reductions', graph, {'x': fp16_round(RNG.standard_normal(shape))},
            tol=1e-2)


def test_clip_with_a_bound_computed_at_run_time():
    """oww-melspec's tail: Clip(x, max(x) - 80, inf) over (1, 1, 133, 32) dB values."""
    shape = (1, 1, 133, 32)
    nodes = [Node('ReduceMax', 'max', ['x'], ['m'], {'keepdims': 0}),
             Node('Sub', 'sub', ['m', 'k'], ['lo']),
             Node('Clip', 'clip', ['x', 'lo', 'hi'], ['y'])]
    graph = graph_of(nodes, {'x': shape, 'm': (), 'lo': (), 'y': shape},
                     weights={'k': np.array(80, np.float32), 'hi': np.array(np.inf, np.float32)})
    x = {'x': fp16_round(RNG.uniform(-150, 40, shape))}
    got, want = compare('Clip at max - 80', graph, x)
    assert (want['y'] > x['x']).any()  # the bound clips something


# Zoo models ------------------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['madmom-beats', 'silero-vad', 'oww-melspec'])
def test_zoo_model_matches_onnxruntime(name, tmp_path):
    """The models these gaps refused, on their recording, every output within 2e-2; the FP16
    range measured on the same recording at build (``range_feeds``: oww-melspec's STFT power,
    7e11, is stored rescaled; ``test_fp16_range_cuda.py``)."""
    import onnxruntime as ort
    from tx2_infer_core.engine import Engine, import_model
    model = zoo_data.BY_NAME[name]
    path = zoo_model_path(name, tmp_path)
    graph = import_model(path, model.input_shape)
    feeds = zoo_data.feeds(model, [graph.values[n] for n in graph.inputs])  # states at zero
    engine = Engine.build(path, input_shape=model.input_shape, backend='cuda',
                          precision='fp16', range_feeds=feeds)
    try:
        got = engine.run(feeds)
    finally:
        engine.close()
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    want = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    for out, ref in want.items():
        assert_close(f'{name} {out}', got[out], ref, 2e-2)
