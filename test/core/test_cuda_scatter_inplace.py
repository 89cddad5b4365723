"""Copies the CUDA lowering leaves out since they change no stored value, without a GPU
(``cuda/views.py``): a scatter written over its data's storage where nothing reads that storage
after it, and a Cast between integer and bool types that keeps its FP16 values, over the
emulated arena (``logic_emulator``: the scatters and Casts as launched, any other node by numpy
through its slot, so a value overwritten while still read shows) against the numpy ops.
"""
import numpy as np
import pytest
from logic_emulator import emulate
from scatter_cases import IN_PLACE, graph_of, in_place_graph

from tx2_infer_core import reference
from tx2_infer_core.cuda.lower_ops import same_place, slot_view
from tx2_infer_core.ir import Node

RNG = np.random.default_rng(1404)


def kernels_of(lowered) -> dict:
    out = {}
    for k in lowered.launches:
        out.setdefault(k.node, []).append(k.kernel)
    return out


def run(graph, feeds, launched) -> dict:
    """{node: kernels} after checking the emulated outputs against numpy."""
    got, lowered = emulate(graph, feeds, launched)
    want = reference.execute(graph, feeds)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6, err_msg=name)
    return kernels_of(lowered), lowered.slots


@pytest.mark.parametrize('case', sorted(IN_PLACE))
def test_scatter_in_place_only_over_data_nothing_reads_later(case):
    graph, feeds = in_place_graph(case)
    kernels, slots = run(graph, feeds, {'ScatterND'})
    assert {n: kernels[n] for n in IN_PLACE[case]} == IN_PLACE[case]
    for node in (n for n in graph.nodes if n.op == 'ScatterND'):
        data, out = slots[node.inputs[0]], slots[node.outputs[0]]
        written_over = same_place(data.ref, slot_view(data), out.ref, slot_view(out))
        assert written_over == (kernels[node.name] == ['scatter'])


def test_truncating_cast_to_an_output_leaves_its_input_alone():
    """x -> Relu -> r -> Cast(int64) -> graph output k; r also read after the Cast: r is not
    stored in k's bytes (the truncation would overwrite it)."""
    nodes = [Node('Relu', 'relu', ['x'], ['r']),
             Node('Cast', 'to_int', ['r'], ['k'], {'to': 7}),
             Node('Sigmoid', 'later', ['r'], ['y'])]
    graph = graph_of(nodes, {n: (16,) for n in 'xrky'}, ['x'], ['k', 'y'],
                     dtypes={'k': 'int64'})
    x = RNG.uniform(-4, 4, 16).astype(np.float16).astype(np.float32)
    kernels, _ = run(graph, {'x': x}, {'Cast'})
    assert kernels['to_int'] == ['pointwise']


def test_integer_and_bool_casts_that_keep_values_launch_nothing():
    """float -> int64 (truncation) -> int32 -> bool (x != 0) -> int32 -> float: only the two
    Casts that change values launch; the others are views, the last two written in place of
    the graph output. x is read again at the end (a truncation made in place would show)."""
    nodes = [Node('Cast', 'to_int', ['x'], ['k'], {'to': 7}),
             Node('Cast', 'narrow', ['k'], ['n'], {'to': 6}),
             Node('Unsqueeze', 'unsqueeze', ['n', 'axes'], ['m']),
             Node('Cast', 'to_bool', ['m'], ['b'], {'to': 9}),
             Node('Cast', 'b_int', ['b'], ['c'], {'to': 6}),
             Node('Cast', 'back', ['c'], ['y'], {'to': 1}),
             Node('Sigmoid', 'later', ['x'], ['z'])]
    shapes = {n: (15,) for n in 'xknz'}
    shapes.update({n: (1, 15) for n in 'mbcy'})
    graph = graph_of(nodes, shapes, ['x'], ['y', 'z'], {'axes': np.array([0], np.int64)},
                     dtypes={'k': 'int64', 'n': 'int32', 'm': 'int32', 'b': 'bool',
                             'c': 'int32'})
    x = RNG.uniform(-2, 2, 15).astype(np.float16).astype(np.float32)
    kernels, _ = run(graph, {'x': x}, {'Cast', 'Unsqueeze'})
    del kernels['later']
    assert kernels == {'to_int': ['pointwise'], 'to_bool': ['pointwise']}
