"""A small ONNX model with Einsum attention (test helper): the projections and the head split
an exporter writes, the scores and the weighted values as Einsum. ``test_einsum.py`` builds it
at level 3 and lowers it; ``test/cuda/test_einsum_cuda.py`` runs it on the GPU."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper


def attention_model(rng, seq=6, dim=16, heads=2):
    """x [1, seq, dim] -> Q, K, V projections -> [1, heads, seq, dim / heads] ->
    Einsum('bhid,bhjd->bhij') * scale -> Softmax -> Einsum('bhij,bhjd->bhid') -> [1, seq, dim]."""
    d = dim // heads
    inits = [numpy_helper.from_array((rng.standard_normal((dim, dim)) / 4).astype(np.float32),
                                     w) for w in ('wq', 'wk', 'wv')]
    inits += [numpy_helper.from_array(np.array([1, seq, heads, d], np.int64), 'split'),
              numpy_helper.from_array(np.array([1, seq, dim], np.int64), 'merge'),
              numpy_helper.from_array(np.array(d ** -0.5, np.float32), 'scale')]
    nodes = []
    for p in 'qkv':
        nodes += [helper.make_node('MatMul', ['x', f'w{p}'], [f'{p}0']),
                  helper.make_node('Reshape', [f'{p}0', 'split'], [f'{p}1']),
                  helper.make_node('Transpose', [f'{p}1'], [p], perm=[0, 2, 1, 3])]
    nodes += [helper.make_node('Einsum', ['q', 'k'], ['s'], equation='bhid,bhjd->bhij'),
              helper.make_node('Mul', ['s', 'scale'], ['s1']),
              helper.make_node('Softmax', ['s1'], ['p'], axis=-1),
              helper.make_node('Einsum', ['p', 'v'], ['o'], equation='bhij,bhjd->bhid'),
              helper.make_node('Transpose', ['o'], ['o1'], perm=[0, 2, 1, 3]),
              helper.make_node('Reshape', ['o1', 'merge'], ['y'])]
    graph = helper.make_graph(
        nodes, 'einsum_attention',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, seq, dim])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, seq, dim])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
