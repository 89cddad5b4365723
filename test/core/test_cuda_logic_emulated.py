"""The comparison, logic and selection ops, Mod, Sum, Mean and Trilu on CUDA over the emulated
arena (``logic_emulator``: their generated launches by their programs over the generator's
index maths), without a GPU: every ONNX node case with its real dtypes, with every input an
activation, with its integers as float32 and as the GPU conformance test builds it, passing
within the conformance tolerance or refused by name as the FP16 exactness rules say; realistic
graphs (an attention mask with finfo.min and a fully masked row, a logic chain over an NHWC
image, NaN and inf cleaning, Sum/Mean/Mod with broadcast); an in-place output keeping its
input's storage order.
"""
import numpy as np
import pytest
import test_onnx_node_conformance as cpu
from logic_emulator import COMPARE, LOGIC, LOGIC_OPS, case_graph, emulate
from node_cases import GPU, data_sets
from scatter_cases import graph_of

from tx2_infer_core import reference
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Node

RNG = np.random.default_rng(42)

# ONNX node cases over the emulated arena ---------------------------------------------------


def expected_refusal(op, graph, acts):
    """Why the lowering must refuse a node case (None: it must pass), by the rules of
    ``lower_logic``: Mod of integers; an integer graph input (1-byte ones as the int8 path's)."""
    dtypes = [np.asarray(graph.weights[n]).dtype if n in graph.weights else
              np.asarray(acts[n]).dtype for n in graph.nodes[0].inputs if n]
    if op == 'Mod' and any(d.kind in 'iu' for d in dtypes):
        return 'float data only'
    wide = [np.asarray(a).dtype.itemsize > 1 for a in acts.values()
            if np.asarray(a).dtype.kind in 'iu']
    if op == 'Trilu' and len(acts) > 1:
        return 'k must be a constant'
    if wide:
        return 'graph input: its values past 2048' if all(wide) else '1-byte integers'
    return None


def run_emulated_case(folder, op, activations=1, float_data=False, conformance=False):
    """'pass', 'refused' or 'n/a' for one node case folder (every data set), its inputs as
    ``case_graph`` makes them (``conformance``: as the GPU conformance test does); a wrong
    answer, or a refusal other than ``expected_refusal``, fails."""
    def ours(node, proto, feeds, expected):
        return case_graph(node, proto, feeds, expected, activations, float_data)
    status = 'n/a'
    for graph, acts, expected in data_sets(folder, None if conformance else ours):
        if graph is None:
            return 'n/a'
        why = expected_refusal(op, graph, acts)
        if why is not None:
            with pytest.raises(UnsupportedOpError, match=f"'{op}' at node") as err:
                emulate(graph, acts, {op})
            assert why in str(err.value), (folder.name, str(err.value))
            return 'refused'
        got, _ = emulate(graph, acts, {op})
        for name, want in expected.items():
            assert GPU.close(got[name], np.asarray(want, np.float64)), (folder.name, name)
        status = 'pass'
    return status


CASES = {f.name: (f, op) for op, found in cpu.collect_cases().items()
         if op in LOGIC_OPS + ('Trilu',) for f in found}
ALL_ACTIVATIONS = COMPARE + LOGIC + ('Mod', 'Sum', 'Mean', 'Where')
VARIANTS = [(name, variant) for variant in ('first input an activation', 'integers as float32',
                                            'as the GPU conformance test')
            for name in sorted(CASES)] + [
    (name, 'every input an activation') for name in sorted(CASES)
    if CASES[name][1] in ALL_ACTIVATIONS]


@pytest.mark.parametrize('name, variant', VARIANTS)
def test_onnx_node_case_passes_or_is_refused_by_name(name, variant):
    """Each case of the ops here, its inputs as the variant makes them: a pass within the GPU
    conformance tolerance, or the refusal its dtypes call for, naming op, node and reason."""
    folder, op = CASES[name]
    activations = 3 if variant == 'every input an activation' else 1
    run_emulated_case(folder, op, activations, variant == 'integers as float32',
                      variant == 'as the GPU conformance test')


def test_node_cases_pass_in_number():
    """Not a suite of refusals: most cases pass with their real dtypes, all as float data."""
    real = [run_emulated_case(f, op) for f, op in CASES.values()]
    as_float = [run_emulated_case(f, op, float_data=True) for f, op in CASES.values()]
    assert real.count('pass') >= 55 and as_float.count('pass') >= 115, (
        real.count('pass'), as_float.count('pass'))
    assert 'refused' not in as_float


# Realistic graphs over the emulated arena --------------------------------------------------

def assert_emulated_matches(graph, feeds, launched):
    got, lowered = emulate(graph, feeds, launched)
    want = reference.execute(graph, feeds)
    for name in graph.outputs:
        assert GPU.close(got[name], np.asarray(want[name], np.float64)), name
    return lowered


def test_attention_mask_where_then_softmax():
    """scores masked with finfo(float32).min, one row fully masked: the saturated -65504 gives
    FP32's uniform row where -inf would give NaN."""
    s = (1, 4, 16, 16)
    mask = np.tril(np.ones((16, 16), bool))[None, None]
    mask[..., 3, :] = False
    nodes = [Node('Where', 'mask', ['m', 'x', 'lo'], ['a']),
             Node('Softmax', 'sm', ['a'], ['y'], {'axis': -1})]
    graph = graph_of(nodes, {'m': (1, 1, 16, 16), 'x': s, 'a': s, 'y': s}, ['m', 'x'], ['y'],
                     {'lo': np.array(np.finfo(np.float32).min, np.float32)}, {'m': 'bool'})
    feeds = {'m': mask, 'x': RNG.standard_normal(s).astype(np.float32)}
    lowered = assert_emulated_matches(graph, feeds, {'Where'})
    assert [k.kernel for k in lowered.launches if k.node == 'mask'] == ['pointwise']


def test_logic_chain_over_an_nhwc_image():
    """Comparisons and logic ops each alone (no passes) after MaxPool (NHWC), then a Cast."""
    s = (1, 16, 6, 5)
    nodes = [Node('MaxPool', 'img', ['x'], ['p'], {'kernel_shape': [1, 1]}),
             Node('Greater', 'gt', ['p', 'lo'], ['a']), Node('Less', 'lt', ['p', 'hi'], ['b']),
             Node('And', 'and', ['a', 'b'], ['c']), Node('Not', 'not', ['c'], ['d']),
             Node('Xor', 'xor', ['a', 'd'], ['e']), Node('Or', 'or', ['e', 'b'], ['f']),
             Node('Equal', 'eq', ['f', 'a'], ['g']), Node('Cast', 'cast', ['g'], ['y'],
                                                          {'to': 1})]
    shapes = dict({v: s for v in 'xpy'}, **{v: s for v in 'abcdefg'})
    graph = graph_of(nodes, shapes, ['x'], ['y'],
                     {'lo': np.array(0.5, np.float32), 'hi': RNG.uniform(0, 2, (16, 1, 1))
                      .astype(np.float32)}, {v: 'bool' for v in 'abcdefg'})
    feeds = {'x': RNG.uniform(-1, 3, s).astype(np.float32)}
    assert_emulated_matches(graph, feeds, {n.op for n in nodes} - {'MaxPool'})


def test_nan_and_inf_cleaning():
    s = (2, 8, 6, 6)
    x = RNG.standard_normal(s).astype(np.float32)
    x.reshape(-1)[::7], x.reshape(-1)[::11] = np.nan, -np.inf
    nodes = [Node('MaxPool', 'img', ['x'], ['p'], {'kernel_shape': [1, 1]}),
             Node('IsNaN', 'nan', ['p'], ['m']), Node('Where', 'w0', ['m', 'zero', 'p'], ['q']),
             Node('IsInf', 'inf', ['q'], ['n'], {'detect_positive': 0}),
             Node('Where', 'w1', ['n', 'zero', 'q'], ['y'])]
    graph = graph_of(nodes, {v: s for v in 'xpqmny'}, ['x'], ['y'],
                     {'zero': np.array(0, np.float32)}, {'m': 'bool', 'n': 'bool'})
    assert_emulated_matches(graph, {'x': x}, {'IsNaN', 'IsInf', 'Where'})


def test_sum_mean_mod_with_broadcast():
    """Sum of 11 inputs (two chained launches), Mean of 3, Mod both ways, broadcast operands."""
    shapes = [(3, 16), (16,), (3, 1)] * 3 + [(1, 16), (3, 16)]
    names = [f'i{k}' for k in range(11)]
    nodes = [Node('Sum', 'sum', names, ['s']), Node('Mean', 'mean', ['s', 'i1', 'i2'], ['m']),
             Node('Mod', 'fmod', ['m', 'i2'], ['f'], {'fmod': 1}),
             Node('Mod', 'mod', ['f', 'i1'], ['y'], {'fmod': 0})]
    values = dict(zip(names, shapes), s=(3, 16), m=(3, 16), f=(3, 16), y=(3, 16))
    graph = graph_of(nodes, values, names, ['y', 's', 'm'])
    feeds = {n: RNG.uniform(-4, 4, sh).astype(np.float32) for n, sh in zip(names, shapes)}
    for n in ('i1', 'i2'):
        feeds[n] = np.where(np.abs(feeds[n]) < 0.5, 1.5, feeds[n]).astype(np.float32)
    lowered = assert_emulated_matches(graph, feeds, {'Sum', 'Mean', 'Mod'})
    assert len([k for k in lowered.launches if k.node == 'sum']) == 2


def test_in_place_outputs_keep_their_input_storage():
    """A comparison of an NHWC image is stored NHWC (a bool as FP16, like the image), so a
    FusedPointwise written in place over it (same shape and bytes) keeps one storage order."""
    s = (1, 16, 6, 5)
    program = '[["Where",["x0","x1",0.0],{}]]'
    nodes = [Node('MaxPool', 'img', ['x'], ['p'], {'kernel_shape': [1, 1]}),
             Node('Greater', 'gt', ['p', 'half'], ['g']),
             Node('FusedPointwise', 'pw', ['g', 'p'], ['w'], {'program': program}),
             Node('Conv', 'conv', ['w', 'k'], ['y'])]
    graph = graph_of(nodes, {'x': s, 'p': s, 'g': s, 'w': s, 'y': s}, ['x'], ['y'],
                     {'half': np.array(0.5, np.float32),
                      'k': RNG.standard_normal((16, 16, 1, 1)).astype(np.float32)},
                     {'g': 'bool'})
    lowered = lower_graph(graph, arch=90)
    assert lowered.plan.inplace == {'w': 'g'}
    for out, over in lowered.plan.inplace.items():
        assert lowered.slots[out].strides == lowered.slots[over].strides, (out, over)
    assert_emulated_matches(graph, {'x': RNG.standard_normal(s).astype(np.float32)},
                            {'Greater', 'FusedPointwise'})


def test_where_with_a_constant_condition():
    """A constant bool tensor as the condition (a weight read as FP16 0/1), broadcast over the
    batch, and a size-1 constant condition (a literal)."""
    s = (3, 8, 10)
    cond = RNG.standard_normal((8, 10)) > 0
    nodes = [Node('Where', 'w0', ['c', 'x', 'z'], ['a']),
             Node('Where', 'w1', ['t', 'a', 'x'], ['y'])]
    graph = graph_of(nodes, {'x': s, 'z': (10,), 'a': s, 'y': s}, ['x', 'z'], ['y', 'a'],
                     {'c': cond, 't': np.array(False)})
    feeds = {'x': RNG.standard_normal(s).astype(np.float32),
             'z': RNG.standard_normal(10).astype(np.float32)}
    lowered = assert_emulated_matches(graph, feeds, {'Where'})
    (w0,) = [k for k in lowered.launches if k.node == 'w0']
    assert w0.fields['in0'].base == 'weights'
