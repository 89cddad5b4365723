"""The CUDA backend on one-node graphs against the numpy ops, plus the no-allocation and
CUDA-graph guarantees."""
import numpy as np
import pytest

from conftest import assert_close, fp16_round, one_node_graph
from tx2_infer_core.backends.cuda_backend import CudaBackend
from tx2_infer_core.ir import Node, Value
from tx2_infer_core.ops import run_node, traits

RNG = np.random.default_rng(1)
X4 = (1, 32, 20, 24)


def _run(graph, feeds, **kw):
    backend = CudaBackend(**kw)
    backend.prepare(graph)
    try:
        return backend.run(feeds)['y']
    finally:
        backend.close()


def _check(graph, tol=3e-3):
    feeds = {n: fp16_round(RNG.standard_normal(graph.values[n].shape)) for n in graph.inputs}
    node = graph.nodes[0]
    args = [feeds.get(n, graph.weights.get(n)) if n else None for n in node.inputs]
    ref = run_node(node, args)[0]
    out = _run(graph, feeds)
    assert_close(f'{node.op} {graph.outputs[0]} {ref.shape}', out, ref, tol)


CASES = [
    ('Relu', {'x': X4}, X4, {}, {}),
    ('LeakyRelu', {'x': X4}, X4, {}, {'alpha': 0.1}),
    ('Sigmoid', {'x': X4}, X4, {}, {}),
    ('Exp', {'x': (4, 50)}, (4, 50), {}, {}),
    ('Add', {'x': X4, 'z': X4}, X4, {}, {}),
    ('Mul', {'x': X4}, X4, {'c': RNG.standard_normal((32, 1, 1)).astype(np.float32)}, {}),
    ('Sub', {'x': (2, 5, 7)}, (2, 5, 7), {'c': RNG.standard_normal(7).astype(np.float32)}, {}),
    ('Div', {'x': X4, 'z': (1, 1, 20, 24)}, X4, {}, {}),
    ('PRelu', {'x': X4}, X4, {'c': RNG.uniform(0.05, 0.5, (32, 1, 1)).astype(np.float32)}, {}),
    ('MaxPool', {'x': X4}, (1, 32, 10, 12), {}, {'kernel_shape': [2, 2], 'strides': [2, 2]}),
    ('MaxPool', {'x': X4}, X4, {}, {'kernel_shape': [5, 5], 'pads': [2, 2, 2, 2]}),
    ('AveragePool', {'x': X4}, (1, 32, 10, 12), {},
     {'kernel_shape': [3, 3], 'strides': [2, 2], 'pads': [1, 1, 1, 1]}),
    ('GlobalAveragePool', {'x': X4}, (1, 32, 1, 1), {}, {}),
    ('GlobalAveragePool', {'x': (2, 24, 120, 160)}, (2, 24, 1, 1), {}, {}),  # few channels
    ('Transpose', {'x': X4}, (1, 20, 24, 32), {}, {'perm': [0, 2, 3, 1]}),
    ('Flatten', {'x': (1, 32, 2, 3)}, (1, 192), {}, {'axis': 1}),
    ('Softmax', {'x': (2, 8, 100)}, (2, 8, 100), {}, {'axis': -1}),
    ('Softmax', {'x': (1, 4, 16, 60)}, (1, 4, 16, 60), {}, {'axis': 1}),
    ('LayerNormalization', {'x': (1, 128, 128)}, (1, 128, 128),
     {'g': RNG.standard_normal(128).astype(np.float32),
      'bb': RNG.standard_normal(128).astype(np.float32)}, {'axis': -1}),
    ('LayerNormalization', {'x': (4, 6, 10)}, (4, 6, 10),
     {'g': RNG.standard_normal((6, 10)).astype(np.float32)}, {'axis': 1}),
    ('ReduceMean', {'x': X4}, (1, 32, 1, 1), {}, {'axes': [2, 3]}),
    ('ReduceMean', {'x': (2, 5, 7)}, (2, 7), {}, {'axes': [1], 'keepdims': 0}),
    ('MatMul', {'x': (1, 128, 64)}, (1, 128, 96),
     {'w': (RNG.standard_normal((64, 96)) / 8).astype(np.float32)}, {}),
    ('MatMul', {'x': (1, 2, 128, 64), 'z': (1, 2, 64, 128)}, (1, 2, 128, 128), {}, {}),
    ('Gemm', {'x': (1, 2048)}, (1, 1000),
     {'w': (RNG.standard_normal((1000, 2048)) / 45).astype(np.float32),
      'b': RNG.standard_normal(1000).astype(np.float32)}, {'transB': 1}),
]


@pytest.mark.parametrize('case', CASES, ids=[f'{c[0]}{i}' for i, c in enumerate(CASES)])
def test_op_matches_numpy(case):
    op, inputs, out_shape, weights, attrs = case
    _check(one_node_graph(op, inputs, out_shape, weights, attrs))


# every op with a kernel code in ops/traits.py (a new activation or unary op is tested here)
KERNEL_OPS = sorted((set(traits.codes(traits.ACTIVATION)) - {'SiLU', 'Clip'})
                    | set(traits.codes(traits.UNARY)))
POSITIVE_OPS = {'Log', 'Sqrt', 'Reciprocal'}


@pytest.mark.parametrize('op', KERNEL_OPS)
def test_kernel_op_alone_and_fused_matches_numpy(op):
    """The op alone on an NHWC image, and (activations) fused into a convolution."""
    x = fp16_round(RNG.standard_normal(X4) * 2)
    if op in POSITIVE_OPS:
        x = fp16_round(np.abs(x) + 0.5)
    attrs = {a: d * 0.5 + 0.05 for a, d in traits.TRAITS[op].params}
    g = one_node_graph(op, {'x': X4}, X4, {}, attrs)
    ref = run_node(g.nodes[0], [x])[0]
    assert_close(f'{op} y {ref.shape}', _run(g, {'x': x}), ref, 3e-3)
    if traits.TRAITS[op].kind != traits.ACTIVATION:
        return
    w = RNG.standard_normal((32, 32, 3, 3)).astype(np.float32) / 24
    conv = one_node_graph('FusedConv', {'x': X4}, X4, {'w': w},
                          dict(traits.activation_values(op, attrs), kernel_shape=[3, 3],
                               pads=[1, 1, 1, 1], activation=op))
    ref = run_node(conv.nodes[0], [x, w])[0]
    assert_close(f'FusedConv+{op} y {ref.shape}', _run(conv, {'x': x}), ref, 3e-3)


def test_resize_nearest_and_linear():
    for mode in ('nearest', 'linear'):
        g = one_node_graph('Resize', {'x': X4}, (1, 32, 40, 48),
                           {'roi': np.zeros(0, np.float32),
                            'scales': np.array([1, 1, 2, 2], np.float32)},
                           {'mode': mode})
        _check(g)


def test_reduce_mean_over_nhwc_pixels():
    """open_nsfw's tail: an NHWC image (a MaxPool output) averaged over H and W."""
    g = one_node_graph('MaxPool', {'x': X4}, (1, 32, 10, 12), {},
                       {'kernel_shape': [2, 2], 'strides': [2, 2]})
    g.outputs = ['m']
    g.values['m'] = Value('m', (1, 32), 'float32', '')
    g.nodes.append(Node('ReduceMean', 'n1', ['y'], ['m'], {'axes': [2, 3], 'keepdims': 0}))
    x = fp16_round(RNG.standard_normal(X4))
    ref = x.reshape(1, 32, 10, 2, 12, 2).max(axis=(3, 5)).mean(axis=(2, 3))
    backend = CudaBackend()
    backend.prepare(g)
    try:
        assert_close('MaxPool+ReduceMean m', backend.run({'x': x})['m'], ref, 3e-3)
    finally:
        backend.close()


def test_concat_of_two_activations():
    g = one_node_graph('Concat', {'x': X4, 'z': (1, 16, 20, 24)}, (1, 48, 20, 24), {},
                       {'axis': 1})
    _check(g)


def test_no_device_allocation_per_frame_and_graph_equals_eager():
    g = one_node_graph('FusedConv', {'x': (1, 16, 32, 32)}, (1, 32, 32, 32),
                       {'w': RNG.standard_normal((32, 16, 3, 3)).astype(np.float32) / 12},
                       {'kernel_shape': [3, 3], 'pads': [1, 1, 1, 1], 'activation': 'Relu'})
    x = fp16_round(RNG.standard_normal((1, 16, 32, 32)))
    backend = CudaBackend()
    backend.prepare(g)
    try:
        before = backend.device_allocations
        assert before == 2  # the arena and the weight buffer
        outs = [backend.run({'x': x})['y'] for _ in range(20)]
        assert backend.device_allocations == before
        assert all(np.array_equal(o, outs[0]) for o in outs)
    finally:
        backend.close()
    eager = _run(g, {'x': x}, use_graph=False)
    assert np.array_equal(eager, outs[0])
