"""What the CUDA backend cannot compute it refuses at lowering time, naming the op, the node
and the attribute value (no GPU needed: ``cuda.lowering.lower_graph`` lowers without a device)."""
import numpy as np
import pytest

from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Graph, Node, Value


def lower_only(graph):
    """The launches of ``graph`` on an sm_90 GPU."""
    return lower_graph(graph, arch=90).launches


def _graph(op, x_shape, y_shape, attrs=None, weights=None, inputs=None):
    weights = dict(weights or {})
    values = {n: Value(n, tuple(s), 'float32', 'NCHW' if len(s) == 4 else '')
              for n, s in (('x', x_shape), ('y', y_shape))}
    node = Node(op, 'n0', ['x'] + list(inputs or weights), ['y'], dict(attrs or {}))
    return Graph([node], ['x'], ['y'], values, weights)


REFUSED = [
    ('AveragePool', (1, 3, 8, 8, 8), (1, 3, 7, 7, 7), {'kernel_shape': [2, 2, 2]}, {},
     '3-D pooling'),
    ('Cast', (2, 3), (2, 3), {'to': 17}, {}, 'to=17'),
    ('Dropout', (2, 3), (2, 3), {}, {'r': np.array(0.5, np.float32), 't': np.array(True)},
     'training_mode=1'),
    ('Resize', (1, 3, 4, 4), (1, 3, 8, 8), {'mode': 'cubic'},
     {'roi': np.zeros(0, np.float32), 's': np.array([1, 1, 2, 2], np.float32)}, 'cubic'),
    ('Resize', (1, 3, 8, 8), (1, 3, 4, 4), {'mode': 'linear', 'antialias': 1},
     {'roi': np.zeros(0, np.float32), 's': np.array([1, 1, .5, .5], np.float32)},
     'antialias=1'),
    ('Conv', (1, 3, 6, 6, 6), (1, 2, 4, 4, 4), {}, {'w': np.ones((2, 3, 3, 3, 3), np.float32)},
     'only 1-D and 2-D convolutions'),
    ('Gather', (5, 4), (2, 4), {}, {'i': np.array([0, 5])}, 'index 5 out of range for axis 0'),
    ('Gather', (5, 4), (2, 4), {'axis': -2}, {'i': np.array([4, -6])}, 'index -6 out of range'),
    ('Gather', (5, 4), (5, 2), {'axis': 2}, {'i': np.array([0, 1])}, 'axis=2 of a rank-2'),
    ('Gather', (5, 4), (2, 4), {}, {'i': np.array([0.0, 1.0])}, 'indices of dtype float64'),
    ('Gather', (1,) * 7, (1,) * 7, {}, {'i': np.array([0])}, 'data of rank 7'),
]


@pytest.mark.parametrize('case', REFUSED, ids=[c[-1] for c in REFUSED])
def test_refused_with_op_node_and_reason(case):
    op, x, y, attrs, weights, reason = case
    with pytest.raises(UnsupportedOpError, match=f"'{op}' at node 'n0'.*{reason}"):
        lower_only(_graph(op, x, y, attrs, weights))


def test_gemm_trans_a_and_matrix_bias_lower():
    """transA runs on the matmul kernel; a matrix C is a broadcasting Add after it."""
    w = {'b': np.ones((3, 5), np.float32), 'c': np.ones((4, 5), np.float32)}
    launches = lower_only(_graph('Gemm', (3, 4), (4, 5), {'transA': 1}, w))
    assert [k.kernel for k in launches] == ['matmul', 'binary_flat2']


def test_max_of_three_inputs_chains():
    g = _graph('Max', (2, 3), (2, 3))
    g.values['z'] = Value('z', (3,), 'float32', '')
    g.values['w'] = Value('w', (2, 3), 'float32', '')
    g.inputs += ['z', 'w']
    g.nodes[0].inputs += ['z', 'w']
    assert len(lower_only(g)) == 2


def test_gather_of_runtime_indices_lowers_past_fp16():
    """Integer indices fed at run time are int32 in the arena (``cuda/int32_values.py``): one
    gather_nd launch reading them as its table, the gathered axis past 2048 too (FP16
    indices past 2048: ``test_cuda_index.py``'s refusals)."""
    for rows in (5, 3000):
        g = _graph('Gather', (rows, 4), (2, 4), inputs=['i'])
        g.values['i'] = Value('i', (2,), 'int64', '')
        g.inputs.append('i')
        (launch,) = lower_only(g)
        assert launch.kernel == 'gather_nd' and launch.fields['table'].base == 'arena'


def test_1d_pool_with_indices_is_refused():
    """A 1-D MaxPool lowers as a 2-D one (``lift_1d``), but not with its Indices output."""
    g = _graph('MaxPool', (1, 3, 32), (1, 3, 31), {'kernel_shape': [2]})
    assert [k.kernel for k in lower_only(g)] == ['unary', 'pool2d', 'unary']
    g.values['ix'] = Value('ix', (1, 3, 31), 'int64', '')
    g.nodes[0].outputs.append('ix')
    g.outputs.append('ix')
    with pytest.raises(UnsupportedOpError, match="'MaxPool' at node 'n0'.*the Indices output"):
        lower_only(g)
