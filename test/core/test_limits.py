"""Resource limits (``limits.Limits``): huge tensors refused before they exist, with the value
and the limit named; a long chain still builds correctly (its timing is in
bench/bench_build_scaling.py, never asserted here)."""
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import ModelFormatError, PlanFileError, Tx2InferError
from tx2_infer_core.limits import Limits
from tx2_infer_core.onnx_import import graph_from_model
from tx2_infer_core.passes import optimize
from tx2_infer_core.planner import check_plan, plan_memory
from tx2_infer_core.reference import execute

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
from bench_build_scaling import chain_model  # noqa: E402


def model(nodes, inits=(), shape=(1, 3, 8, 8)):
    graph = helper.make_graph(
        nodes, 'g', [helper.make_tensor_value_info('x', TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)], list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])


def ints(name, values):
    return numpy_helper.from_array(np.array(values, np.int64), name)


def test_a_huge_input_shape_is_refused_naming_it_and_the_limit():
    relu = model([helper.make_node('Relu', ['x'], ['y'])], shape=('N', 3, 'H', 'W'))
    with pytest.raises(ModelFormatError, match=r"input 'x' of shape \(1, 3, 20000, 20000\) "
                       r'has 1200000000 elements.*max_tensor_elements=268435456'):
        graph_from_model(relu, (1, 3, 20000, 20000))
    assert graph_from_model(relu, (1, 3, 64, 64)).values['y'].shape == (1, 3, 64, 64)


def test_a_constant_pad_of_2e9_is_refused_by_static_shapes():
    pad = model([helper.make_node('Pad', ['x', 'p'], ['y'])],
                [ints('p', [0, 0, 0, 0, 0, 0, 2_000_000_000, 0])])
    with pytest.raises(ModelFormatError, match=r"value 'y' .*2000000008.*max_tensor_elements"):
        graph_from_model(pad)


@pytest.mark.parametrize('op', ['Pad', 'ConstantOfShape', 'Expand', 'Tile'])
def test_a_computed_huge_size_is_refused_before_the_op_runs(op):
    # the size is a Mul of two constants' product: predicted from the values before the op
    big, base = {'Pad': ([0, 0, 0, 0, 0, 0, 2, 0], 1_000_000_000),
                 'ConstantOfShape': ([1, 2, 3], 100_000_000),
                 'Expand': ([1, 3, 1, 8], 100_000_000),
                 'Tile': ([1, 1, 1, 2], 100_000_000)}[op]
    inputs = ['q'] if op == 'ConstantOfShape' else ['x', 'q']
    m = model([helper.make_node('Mul', ['p', 'c'], ['q']), helper.make_node(op, inputs, ['y'])],
              [ints('p', big), numpy_helper.from_array(np.array(base, np.int64), 'c')])
    with pytest.raises(ModelFormatError, match=rf"node '{op}_1' \({op}\) output .*"
                       'max_tensor_elements'):
        graph_from_model(m)


def test_an_op_failing_on_the_models_shapes_is_a_model_format_error():
    add = model([helper.make_node('Add', ['x', 'w'], ['y'], name='bad_add')],
                [numpy_helper.from_array(np.ones((5, 7), np.float32), 'w')])
    with pytest.raises(ModelFormatError, match="node 'bad_add' \\(Add\\) cannot run"):
        graph_from_model(add)


def test_limits_are_user_settable_and_checked(tmp_path):
    path = tmp_path / 'relu.onnx'
    onnx.save(model([helper.make_node('Relu', ['x'], ['y'])]), str(path))
    with pytest.raises(ModelFormatError, match='max_tensor_elements=100 '):
        Engine.build(path, limits=Limits(max_tensor_elements=100))
    with pytest.raises(ModelFormatError, match='max_arena_bytes=256 '):
        Engine.build(path, limits=Limits(max_arena_bytes=256))
    with pytest.raises(ModelFormatError, match='max_file_bytes=10 '):
        Engine.build(path, limits=Limits(max_file_bytes=10))
    engine = Engine.build(path)
    engine.save(tmp_path / 'relu.tx2plan')
    with pytest.raises(PlanFileError, match='10'):
        Engine.load(tmp_path / 'relu.tx2plan', limits=Limits(max_file_bytes=10))
    with pytest.raises(Tx2InferError, match='must be a positive integer'):
        Limits(max_image_pixels=0)


def test_a_10000_node_chain_builds_plans_and_runs_right():
    graph = graph_from_model(chain_model(10_000), source='chain')
    x = np.random.default_rng(1).random((1, 4, 4, 4), dtype=np.float32)
    want = execute(graph, {'x': x})[graph.outputs[0]]
    for level in (2, 3):
        opt, _ = optimize(graph, level)
        plan = plan_memory(opt)
        check_plan(opt, plan)
        got = execute(opt, {'x': x})[opt.outputs[0]]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    plan = plan_memory(graph)                   # unoptimised: in-place Relu/Add links
    check_plan(graph, plan)
    assert len(plan.inplace) > 6000


def test_a_declared_minus_one_dim_is_unknown_not_refused():
    # Paddle exports declare unknown dims as -1 (ppocr-cls): sized by running, not refused
    graph = helper.make_graph(
        [helper.make_node('Relu', ['x'], ['y'])], 'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [-1, 3, 8, 8])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    assert graph_from_model(m).values['y'].shape == (1, 3, 8, 8)


class _CountingDict(dict):
    """A dict that counts its item lookups."""

    lookups = 0

    def __getitem__(self, key):
        _CountingDict.lookups += 1
        return super().__getitem__(key)


def _planner_lookups(length, monkeypatch) -> int:
    from tx2_infer_core import planner
    original = planner._Blocks.__init__

    def counting_init(self, life, parent):
        original(self, life, parent)
        self.parent = _CountingDict(self.parent)
    monkeypatch.setattr(planner._Blocks, '__init__', counting_init)
    graph = graph_from_model(chain_model(length, 'elementwise'), source='chain')
    _CountingDict.lookups = 0
    plan = plan_memory(graph)
    assert len(plan.inplace) == length - 1          # one in-place chain, every link
    return _CountingDict.lookups


def test_the_planners_in_place_walk_is_linear(monkeypatch):
    # the walk from a value to its block's root is counted, not timed: twice the chain,
    # about twice the parent lookups (a walk per link from the start would be four times)
    small, large = _planner_lookups(500, monkeypatch), _planner_lookups(1000, monkeypatch)
    assert large <= 2.5 * small, (small, large)
