"""The activations issue 14 adds to the convolution epilogue, and small graphs that end in
them (a convolution or a product by a constant matrix, then an activation chain), for the
pass, lowering and GPU tests."""
import numpy as np
from unary_cases import ATTRS, NEGATIVE_ATTRS

from tx2_infer_core import reference
from tx2_infer_core.ir import Graph, Node, Value

NEW = ('Elu', 'Selu', 'Celu', 'Softplus', 'ThresholdedRelu')
RNG = np.random.default_rng(1414)


def act_cases():
    """(op, ONNX attributes): defaults, others, negative ones (unary_cases)."""
    return [(op, attrs.get(op, {})) for attrs in ({}, ATTRS, NEGATIVE_ATTRS) for op in NEW
            if not attrs or op in attrs]


def conv_graph(tail, shape=(1, 5, 9, 11), k=5, op='Conv', extra=None, group=1):
    """x -> ``op`` (3x3, pads 1, bias; Conv weights [k, C / group, 3, 3], ConvTranspose's
    [C, k / group, 3, 3]) -> c -> ``tail`` nodes; ``extra`` more constants."""
    ch, kernel = shape[1], (3,) * (len(shape) - 2)
    w_shape = (k, ch // group) + kernel if op == 'Conv' else (ch, k // group) + kernel
    weights = {'w': RNG.standard_normal(w_shape).astype(np.float32) / 4,
               'b': RNG.standard_normal(k).astype(np.float32), **(extra or {})}
    attrs = {'kernel_shape': list(kernel), 'pads': [1] * (2 * len(kernel)), 'group': group}
    nodes = [Node(op, 'conv', ['x', 'w', 'b'], ['c'], attrs)] + list(tail)
    graph = Graph(nodes, ['x'], [nodes[-1].outputs[0]], {'x': Value('x', shape)}, weights)
    reference.infer_shapes(graph)
    return graph


def linear_graph(tail, n=6, extra=None, residual=False, rows=(2, 3), k=8):
    """x (rows, k) -> MatMul(W [k, n]) -> m -> Add(b) -> c -> ``tail`` (``residual``: a second
    input r (rows, n))."""
    weights = {'W': (RNG.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32),
               'b': RNG.standard_normal(n).astype(np.float32), **(extra or {})}
    nodes = [Node('MatMul', 'mm', ['x', 'W'], ['m']), Node('Add', 'bias', ['m', 'b'], ['c'])]
    values = {'x': Value('x', tuple(rows) + (k,)), 'r': Value('r', tuple(rows) + (n,))}
    inputs = ['x', 'r'] if residual else ['x']
    graph = Graph(nodes + list(tail), inputs, [(nodes + list(tail))[-1].outputs[0]],
                  {k: values[k] for k in inputs}, weights)
    reference.infer_shapes(graph)
    return graph


def feeds_of(graph, scale=2.0):
    """Normal inputs of ``graph`` times ``scale`` (float32)."""
    return {name: (RNG.standard_normal(graph.values[name].shape) * scale).astype(np.float32)
            for name in graph.inputs}
