"""Cases of the normalisations, the ops along an axis, the reductions of global_reduce's new
ops and the Lp pools on CUDA, shared by ``test_cuda_norm_axis.py`` (lowered and emulated on the
host) and ``test/cuda/test_h_ops2_cuda.py`` (on the GPU): each a one-node graph, optionally
behind or before a 1x1 MaxPool so its input or output is an NHWC image."""
import numpy as np

from tx2_infer_core.ir import Graph, Node, Value

RNG = np.random.default_rng(2024)
S = (2, 8, 5, 6)  # a small NCHW image


def scale_bias(count, seed=0):
    """Per-channel (or per-group) scale and bias constants."""
    rng = np.random.default_rng(seed)
    return {'scale': (1 + 0.5 * rng.standard_normal(count)).astype(np.float32),
            'bias': rng.standard_normal(count).astype(np.float32)}


def sample(kind, shape, rng=RNG):
    """Input data: 'normal', 'positive' (LogSum), 'near_one' (products), 'ties' (integers
    0..3: equal maxima for ArgMax/ArgMin/Hardmax)."""
    if kind == 'positive':
        return rng.uniform(0.1, 2.0, shape).astype(np.float32)
    if kind == 'near_one':
        return (1 + 0.05 * rng.standard_normal(shape)).astype(np.float32)
    if kind == 'ties':
        return rng.integers(0, 4, shape).astype(np.float32)
    return (0.5 + rng.standard_normal(shape)).astype(np.float32)


# name: (op, input shape, output shape, attrs, constants (inputs after x), data kind)
CASES = {
    'instance norm': ('InstanceNormalization', S, S, {'epsilon': 1e-3}, scale_bias(8), ''),
    'instance norm 3-D': ('InstanceNormalization', (2, 6, 30), (2, 6, 30), {},
                          scale_bias(6), ''),
    'group norm': ('GroupNormalization', S, S, {'num_groups': 4}, scale_bias(8), ''),
    'group norm per group': ('GroupNormalization', S, S, {'num_groups': 2, 'epsilon': 1e-2},
                             scale_bias(2), ''),
    'group norm 3-D': ('GroupNormalization', (2, 8, 12), (2, 8, 12), {'num_groups': 8},
                       scale_bias(8), ''),
    'lrn': ('LRN', S, S, {'size': 5, 'alpha': 1e-2, 'beta': 0.75, 'bias': 2.0}, {}, ''),
    'lrn even size': ('LRN', S, S, {'size': 4}, {}, ''),
    'mvn': ('MeanVarianceNormalization', S, S, {}, {}, ''),
    'mvn channels': ('MeanVarianceNormalization', S, S, {'axes': [1]}, {}, ''),
    'mvn apart': ('MeanVarianceNormalization', S, S, {'axes': [0, 1, 3]}, {}, ''),
    'l1 norm channels': ('LpNormalization', S, S, {'axis': 1, 'p': 1}, {}, ''),
    'l2 norm last': ('LpNormalization', S, S, {'axis': -1}, {}, ''),
    'l2 norm rows': ('LpNormalization', (6, 20), (6, 20), {'axis': 0, 'p': 2}, {}, ''),
    'rms norm': ('RMSNormalization', S, S, {'axis': 1},
                 {'scale': RNG.standard_normal((8, 1, 6)).astype(np.float32)}, ''),
    'rms norm tokens': ('RMSNormalization', (2, 7, 64), (2, 7, 64), {'epsilon': 1e-6},
                        {'scale': RNG.standard_normal(64).astype(np.float32)}, ''),
    'argmax channels': ('ArgMax', S, (2, 1, 5, 6), {'axis': 1}, {}, 'ties'),
    'argmin rows last': ('ArgMin', S, (2, 8, 6), {'axis': 2, 'keepdims': 0,
                                                  'select_last_index': 1}, {}, 'ties'),
    'argmax last': ('ArgMax', (4, 100), (4,), {'axis': -1, 'keepdims': 0}, {}, ''),
    'hardmax channels': ('Hardmax', S, S, {'axis': 1}, {}, 'ties'),
    'hardmax last': ('Hardmax', (3, 40), (3, 40), {}, {}, ''),
    'cumsum channels': ('CumSum', S, S, {}, {'axis': np.array(1)}, ''),
    'cumsum exclusive reverse': ('CumSum', S, S, {'exclusive': 1, 'reverse': 1},
                                 {'axis': np.array(-1, np.int32)}, ''),
    'cumsum long': ('CumSum', (3, 100), (3, 100), {'exclusive': 1}, {'axis': np.array(1)},
                    ''),
    'cumprod rows': ('CumProd', S, S, {'reverse': 1}, {'axis': np.array(2)}, 'near_one'),
    'reduce l1': ('ReduceL1', S, (2, 8, 1, 1), {'axes': [2, 3]}, {}, ''),
    'reduce l2 channels': ('ReduceL2', S, (2, 5, 6), {'axes': [1], 'keepdims': 0}, {}, ''),
    'reduce sum square': ('ReduceSumSquare', S, (1, 1, 1, 1), {}, {}, ''),
    'reduce log sum': ('ReduceLogSum', (3, 4, 5), (3, 4), {'keepdims': 0},
                       {'axes': np.array([2])}, 'positive'),
    'reduce log sum exp': ('ReduceLogSumExp', S, (2, 1, 1, 1), {'axes': [1, 2, 3]}, {}, ''),
    'reduce prod': ('ReduceProd', S, (2, 8, 1, 1), {'axes': [2, 3]}, {}, 'near_one'),
    'reduce l2 no axes': ('ReduceL2', (3, 4), (3, 4), {'noop_with_empty_axes': 1},
                          {'axes': np.array([], np.int64)}, ''),
    'reduce log sum exp of a scalar': ('ReduceLogSumExp', (), (), {}, {}, ''),
    'lp pool': ('LpPool', (1, 8, 9, 11), (1, 8, 5, 6),
                {'kernel_shape': [3, 3], 'strides': [2, 2], 'pads': [1, 1, 1, 1], 'p': 3}, {},
                ''),
    'lp pool 1-D': ('LpPool', (2, 8, 20), (2, 8, 19), {'kernel_shape': [2]}, {}, ''),
    'global lp pool p=1': ('GlobalLpPool', S, (2, 8, 1, 1), {'p': 1}, {}, ''),
    'global lp pool': ('GlobalLpPool', S, (2, 8, 1, 1), {}, {}, ''),
    'global lp pool p=3': ('GlobalLpPool', S, (2, 8, 1, 1), {'p': 3}, {}, ''),
}
INDEX_OPS = ('ArgMax', 'ArgMin')  # int64 outputs
POOLS = ('LpPool', 'GlobalLpPool')


def case_graph(name, before=False, after=False):
    """The graph of case ``name``: x [-> MaxPool 1x1 b] -> op -> y [-> MaxPool 1x1 z]
    (``before``: the op reads an NHWC image; ``after``: it writes one, 4-D float outputs)."""
    op, shape, out, attrs, consts, _ = CASES[name]
    layout = 'NCHW' if len(shape) == 4 else ''
    dtype = 'int64' if op in INDEX_OPS else 'float32'
    values = {'x': Value('x', shape, 'float32', layout),
              'y': Value('y', out, dtype, 'NCHW' if len(out) == 4 else '')}
    nodes = [Node(op, 'op', ['x'] + list(consts), ['y'], dict(attrs))]
    if before:
        values['b'] = Value('b', shape, 'float32', 'NCHW')
        nodes.insert(0, Node('MaxPool', 'img', ['x'], ['b'], {'kernel_shape': [1, 1]}))
        nodes[1].inputs[0] = 'b'
    outputs = ['y']
    if after:
        values['z'] = Value('z', out, 'float32', 'NCHW')
        nodes.append(Node('MaxPool', 'img2', ['y'], ['z'], {'kernel_shape': [1, 1]}))
        outputs = ['z']
    return Graph(nodes, ['x'], outputs, values, dict(consts))


def storages(name) -> list:
    """The (before, after) storage variants case ``name`` allows (4-D images only)."""
    op, shape, out = CASES[name][:3]
    found = [(False, False)]
    if len(shape) == 4:
        found.append((True, False))
    if len(out) == 4 and op not in INDEX_OPS:
        found += [(False, True)] + ([(True, True)] if len(shape) == 4 else [])
    return found


def feeds(name, rng=RNG) -> dict:
    """The input of case ``name``."""
    return {'x': sample(CASES[name][5], CASES[name][1], rng)}


def small_net(path):
    """An ONNX model (opset 21) chaining these ops behind convolutions, written to ``path``::

        x ─ Conv ─ InstanceNorm ─ Relu ─ Conv ─ GroupNorm ─ LRN ─ LpPool ─┬─ MVN ─ GlobalLpPool
          ─ Flatten ─┬─ LpNormalization ─▶ emb                          ├─ ArgMax ─▶ seg
                     └─ Hardmax ─▶ hard        ReduceLogSumExp ─ CumSum ◀┘─▶ cs
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(21)

    def const(name, array):
        return numpy_helper.from_array(np.asarray(array), name)

    inits = [const('w1', 0.3 * rng.standard_normal((8, 3, 3, 3)).astype(np.float32)),
             const('w2', 0.2 * rng.standard_normal((16, 8, 3, 3)).astype(np.float32)),
             const('s1', scale_bias(8, 1)['scale']), const('b1', scale_bias(8, 1)['bias']),
             const('s2', scale_bias(16, 2)['scale']), const('b2', scale_bias(16, 2)['bias']),
             const('ax1', np.array([1], np.int64)), const('ax2', np.array(2, np.int64))]
    pad = {'kernel_shape': [3, 3], 'pads': [1, 1, 1, 1]}
    nodes = [helper.make_node('Conv', ['x', 'w1'], ['c1'], **pad),
             helper.make_node('InstanceNormalization', ['c1', 's1', 'b1'], ['i1']),
             helper.make_node('Relu', ['i1'], ['r1']),
             helper.make_node('Conv', ['r1', 'w2'], ['c2'], **pad),
             helper.make_node('GroupNormalization', ['c2', 's2', 'b2'], ['g2'], num_groups=4),
             helper.make_node('LRN', ['g2'], ['l2'], size=3, alpha=1e-3),
             helper.make_node('LpPool', ['l2'], ['p2'], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node('MeanVarianceNormalization', ['p2'], ['m2']),
             helper.make_node('GlobalLpPool', ['m2'], ['q2'], p=3),
             helper.make_node('Flatten', ['q2'], ['f2']),
             helper.make_node('LpNormalization', ['f2'], ['emb'], axis=1),
             helper.make_node('Hardmax', ['f2'], ['hard']),
             helper.make_node('ArgMax', ['p2'], ['seg'], axis=1),
             helper.make_node('ReduceLogSumExp', ['p2', 'ax1'], ['e2'], keepdims=0),
             helper.make_node('CumSum', ['e2', 'ax2'], ['cs'])]
    outputs = [helper.make_tensor_value_info('emb', TensorProto.FLOAT, [1, 16]),
               helper.make_tensor_value_info('hard', TensorProto.FLOAT, [1, 16]),
               helper.make_tensor_value_info('seg', TensorProto.INT64, [1, 1, 16, 16]),
               helper.make_tensor_value_info('cs', TensorProto.FLOAT, [1, 16, 16])]
    graph = helper.make_graph(
        nodes, 'h_ops2_net',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 3, 32, 32])], outputs, inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 21)]), path)
    return path
