"""ONNX control flow resolved at import (``control_flow.py``): If with a known condition
inlined, Loop with a known iteration count unrolled, each built on the numpy and ort backends
and compared with ONNX Runtime on the original model; what cannot be resolved at build is
refused by name, with the reason. Models: ``control_flow_cases.py``.
"""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

import control_flow_cases as cases
from tx2_infer_core import control_flow
from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import ModelFormatError, UnsupportedOpError
from tx2_infer_core.onnx_import import graph_from_model
from tx2_infer_core.passes.graph_edit import redirect
from tx2_infer_core.ir import Graph, Node, Value

X = np.random.default_rng(1).standard_normal(cases.SHAPE).astype(np.float32)


def ort_outputs(model) -> dict:
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {'x': X})))


def check(model, tmp_path, backends=('numpy', 'ort')):
    """Build ``model`` on each backend; every output equals ONNX Runtime's on the model."""
    path = tmp_path / 'model.onnx'
    onnx.save(model, path)
    want = ort_outputs(model)
    for backend in backends:
        got = Engine.build(path, backend=backend).run({'x': X})
        for name, expected in want.items():
            assert got[name].shape == expected.shape, (backend, name)
            np.testing.assert_allclose(got[name], expected, rtol=1e-5, atol=1e-5,
                                       err_msg=f'{backend} {name}')
    return want


def refused(model, *words):
    with pytest.raises(UnsupportedOpError) as info:
        graph_from_model(model)
    for word in words:
        assert word in str(info.value), str(info.value)
    return str(info.value)


# --- If ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('cond', [True, False])
@pytest.mark.parametrize('form', ['plain', 'nested', 'computed', 'direct'])
def test_if_with_a_known_condition_runs_the_chosen_branch(cond, form, tmp_path):
    """Both branches (each reading outer-scope x and b and its own initializer); a nested If;
    a condition computed from Shape(x); the If's output as the graph output."""
    model = cases.if_model(cond, nested=form == 'nested', computed=form == 'computed',
                           direct=form == 'direct')
    check(model, tmp_path)
    graph = graph_from_model(model)
    assert not {'If', 'Loop'} & {n.op for n in graph.nodes}
    ops = {n.op for n in graph.nodes}
    assert ('Add' in ops) == cond and ('Sub' in ops) != cond      # only the chosen branch


def test_if_on_input_data_is_refused_by_name():
    model = cases.if_model(True)
    model.graph.initializer.remove(next(t for t in model.graph.initializer if t.name == 'c'))
    model.graph.input.append(cases.tensor('c', onnx.TensorProto.BOOL, []))
    refused(model, "'If' at node 'if'", 'the condition depends on the input data')
    computed = cases.model([helper.make_node('ReduceSum', ['x'], ['s'], keepdims=0),
                            helper.make_node('Greater', ['s', 'zero'], ['c']),
                            cases.if_node('if', 'c')], ['if_y'],
                           [cases.const('b', cases.B), cases.const('zero', 0.0, np.float32)])
    refused(computed, "'If' at node 'if'", 'depends on the input data')


# --- Loop -------------------------------------------------------------------------------------

@pytest.mark.parametrize('trips, limit, stop, initial', [
    (5, 100, 'counter', 'computed'),     # M reached first; the counter condition stays True
    (10, 4, 'counter', 'computed'),      # the condition folds to False after 4 iterations
    (None, 3, 'counter', 'computed'),    # no M: the condition alone stops it
    (4, 0, 'trips', None),               # trip count only (cond absent, passed through)
    (3, 0, 'trips', 'true'),             # trip count, constant initial condition
])
def test_loop_with_a_known_iteration_count_matches_onnxruntime(trips, limit, stop, initial,
                                                               tmp_path):
    """Loop-carried state (y through a MatMul by a carried weight, a counter k), the
    iteration number, outer-scope reads and a scan output stacked on a new axis 0."""
    model = cases.loop_model(trips, limit, stop, initial_cond=initial)
    want = check(model, tmp_path)
    runs = min(trips or limit, max(limit, 1)) if stop == 'counter' else trips
    assert want['ys'].shape == (runs, *cases.SHAPE) and want['k'] == runs


def test_loop_without_scan_outputs_and_zero_iterations(tmp_path):
    """A Loop that never runs gives its initial carried values."""
    check(cases.loop_model(3, 7, scan=False), tmp_path)
    want = check(cases.loop_model(0, 7, scan=False), tmp_path)
    assert want['k'] == 0 and not want['y_n'].any()
    check(cases.loop_model(4, 0, scan=False), tmp_path)         # initial condition False


def test_loop_invariant_nodes_are_emitted_once():
    """The Transpose of the weight the body passes through unchanged is hoisted: one
    Transpose for 6 iterations (no per-iteration weight copies); no Loop is left."""
    graph = graph_from_model(cases.loop_model(6, 100))
    ops = [n.op for n in graph.nodes]
    assert ops.count('Transpose') == 1 and ops.count('MatMul') == 6 and 'Loop' not in ops


def test_nested_loops_and_an_if_on_the_iteration_number(tmp_path):
    """An inner Loop reading the outer body's iteration number and carried value, and an If
    on ``i < 1`` whose condition is known per iteration."""
    check(cases.nested_loop_model(3, 2), tmp_path)
    ops = [n.op for n in graph_from_model(cases.nested_loop_model(3, 2)).nodes]
    assert 'Loop' not in ops and 'If' not in ops


def test_loop_of_a_trip_count_alone_with_only_scan_outputs(tmp_path):
    """Loop(M) with no condition and no carried value: x * i stacked for i < 4."""
    body = helper.make_graph(
        [helper.make_node('Cast', ['i'], ['fi'], to=onnx.TensorProto.FLOAT),
         helper.make_node('Mul', ['x', 'fi'], ['xi']),
         helper.make_node('Identity', ['c'], ['c_out'])], 'body',
        [cases.tensor('i', onnx.TensorProto.INT64, []),
         cases.tensor('c', onnx.TensorProto.BOOL, [])],
        [cases.tensor('c_out', onnx.TensorProto.BOOL, []),
         cases.tensor('xi', onnx.TensorProto.FLOAT, cases.SHAPE)])
    model = cases.model([helper.make_node('Loop', ['M', ''], ['xs'], 'loop', body=body)], ['xs'],
                        [cases.const('M', 4, np.int64)])
    assert check(model, tmp_path)['xs'].shape == (4, *cases.SHAPE)


def test_a_body_that_does_not_fit_its_node_is_a_format_error():
    model = cases.loop_model(3)
    model.graph.node[1].input.append('w')            # one carried input too many
    with pytest.raises(ModelFormatError, match="Loop node 'loop': its graph 'body'"):
        graph_from_model(model)


def test_loop_refusals_name_the_node_and_the_reason(monkeypatch):
    model = cases.loop_model(5)
    model.graph.initializer.remove(next(t for t in model.graph.initializer if t.name == 'M'))
    model.graph.input.append(cases.tensor('M', onnx.TensorProto.INT64, []))
    refused(model, "'Loop' at node 'loop'", 'trip count M depends on the input data')
    refused(cases.loop_model(5, stop='data'), "'Loop' at node 'loop'",
            'condition after iteration 0', 'depends on the input data')
    refused(cases.loop_model(0), "'Loop' at node 'loop'", 'runs no iteration')
    unnamed = cases.loop_model(5, stop='data')
    unnamed.graph.node[1].name = ''
    refused(unnamed, "'Loop' at node 'Loop'")                     # named for the message
    monkeypatch.setattr(control_flow, 'MAX_UNROLLED_NODES', 100)
    refused(cases.loop_model(50), 'MAX_UNROLLED_NODES=100')
    refused(cases.loop_model(None, 100, 'trips', 'true'), 'MAX_UNROLLED_NODES=100')


@pytest.mark.parametrize('input_axis, reverse_in, output_axis, reverse_out, weight', [
    (0, 0, 0, 0, False), (1, 1, 1, 0, False), (0, 1, -1, 1, True), (1, 0, 0, 1, True)])
def test_scan_with_a_known_length_matches_onnxruntime(input_axis, reverse_in, output_axis,
                                                      reverse_out, weight, tmp_path):
    """Scan over the input or a constant, along either axis, each direction; a state, two
    scan inputs read in opposite directions, outputs stacked along either axis."""
    check(cases.scan_model(input_axis, reverse_in, output_axis, reverse_out, weight), tmp_path)


def test_scan_over_a_computed_value_is_refused_by_name():
    model = cases.scan_model()
    model.graph.node.insert(0, helper.make_node('Relu', ['x'], ['xr']))
    model.graph.node[1].input[1] = 'xr'
    refused(model, "'Scan' at node 'scan'", "length of scan input 'xr' is not known")


@settings(max_examples=25, deadline=None)
@given(trips=st.one_of(st.none(), st.integers(0, 8)), limit=st.integers(-1, 9),
       scan=st.booleans())
def test_random_trip_counts_and_conditions(trips, limit, scan, tmp_path_factory):
    """Any trip count and counter limit: the engine matches ONNX Runtime, or, when the Loop
    runs no iteration and has a scan output, refuses it."""
    model = cases.loop_model(trips, limit, scan=scan)
    if scan and (trips == 0 or limit <= 0):
        refused(model, 'runs no iteration')
        return
    check(model, tmp_path_factory.mktemp('loop'), backends=('numpy',))


def test_slanet_shaped_counter_loop_unrolls_to_its_limit():
    """The slanet form: M a large constant, the condition a counter below a limit; the
    import unrolls exactly ``limit`` iterations (one MatMul each)."""
    graph = graph_from_model(cases.loop_model(1024, 37))
    assert [n.op for n in graph.nodes].count('MatMul') == 37


# --- the linear no-op removal the unrolled graphs need ------------------------------------

def test_redirect_follows_chains_in_one_sweep():
    """Readers of a chain of removed values read its start; the values are forgotten."""
    values = {n: Value(n, (1,)) for n in 'abcde'}
    nodes = [Node('Relu', 'r', ['a'], ['b']), Node('Identity', 'i1', ['b'], ['c']),
             Node('Identity', 'i2', ['c'], ['d']), Node('Add', 'add', ['d', 'c'], ['e'])]
    graph = Graph(nodes, ['a'], ['e'], values, {})
    redirect(graph, {'d': 'c', 'c': 'b'})
    assert nodes[3].inputs == ['b', 'b'] and 'c' not in graph.values
