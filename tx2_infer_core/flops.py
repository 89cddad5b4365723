"""Floating-point operation counts per node (a multiply-add counts as 2 FLOPs).

Used by ``tx2-infer inspect``. Counts come from value and weight shapes only, so they work on
any graph with static shapes. Ops that only move data (Reshape, Concat, Slice, ...) count 0;
other elementwise-like ops count one FLOP per output element.
"""
import numpy as np

DATA_MOVEMENT = {'Reshape', 'Flatten', 'Squeeze', 'Unsqueeze', 'Transpose', 'Concat', 'Split',
                 'Slice', 'Gather', 'Identity', 'Cast', 'Pad', 'Shape', 'Constant',
                 'ConstantOfShape', 'Range', 'Resize', 'Upsample', 'Dropout', 'Expand', 'Tile'}


def _shape(graph, name):
    if name in graph.weights:
        return tuple(np.shape(graph.weights[name]))
    return tuple(graph.values[name].shape)


def _size(shape):
    return int(np.prod(shape, dtype=np.int64))


def conv_flops(node, graph):
    """2 * (Cin/group * kh * kw) MACs per output element."""
    return 2 * _size(_shape(graph, node.inputs[1])[1:]) * _size(_shape(graph, node.outputs[0]))


def conv_transpose_flops(node, graph):
    """Each input element scatters into (Cout/group * kh * kw) outputs."""
    return 2 * _size(_shape(graph, node.inputs[0])) * _size(_shape(graph, node.inputs[1])[1:])


def gemm_flops(node, graph):
    """2 * M * N * K."""
    a_shape = _shape(graph, node.inputs[0])
    k = a_shape[0] if node.attrs.get('transA', 0) else a_shape[-1]
    return 2 * k * _size(_shape(graph, node.outputs[0]))


def matmul_flops(node, graph):
    """2 * K per output element."""
    return 2 * _shape(graph, node.inputs[0])[-1] * _size(_shape(graph, node.outputs[0]))


def pool_flops(node, graph):
    """One comparison or addition per window element and output."""
    return _size(node.attrs.get('kernel_shape', (1,))) * _size(_shape(graph, node.outputs[0]))


def global_pool_flops(node, graph):
    """One addition per input element."""
    return _size(_shape(graph, node.inputs[0]))


COUNTERS = {
    'Conv': conv_flops, 'FusedConv': conv_flops, 'ConvTranspose': conv_transpose_flops,
    'FusedConvTranspose': conv_transpose_flops,
    'Gemm': gemm_flops, 'MatMul': matmul_flops, 'FusedLinear': matmul_flops,
    'FusedLinearNorm': matmul_flops,
    'MaxPool': pool_flops,
    'AveragePool': pool_flops, 'GlobalAveragePool': global_pool_flops,
    'GlobalMaxPool': global_pool_flops,
}


def node_flops(node, graph):
    """FLOPs of one node of ``graph``."""
    if node.op in COUNTERS:
        return COUNTERS[node.op](node, graph)
    if node.op in DATA_MOVEMENT:
        return 0
    return sum(_size(_shape(graph, out)) for out in node.outputs if out)


def graph_flops(graph):
    """{node name: FLOPs} for every node, in graph order."""
    return {node.name: node_flops(node, graph) for node in graph.nodes}
