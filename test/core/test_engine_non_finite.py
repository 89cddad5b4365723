"""The first runs of an engine warn, once, naming outputs that hold inf or NaN (on the GPU's
FP16 arena: values past 65504, e.g. an STFT power spectrum); later runs check nothing."""
import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tx2_infer_core import engine as engine_module
from tx2_infer_core.engine import Engine, non_finite_outputs


@pytest.fixture
def exp_model(tmp_path):
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 4])
    z = helper.make_tensor_value_info('z', TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node('Exp', ['x'], ['y']),
                               helper.make_node('Neg', ['x'], ['z'])], 'exp', [x], [y, z])
    path = tmp_path / 'exp.onnx'
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]), path)
    return path


def test_non_finite_outputs_names_float_outputs_with_inf_or_nan():
    outs = {'a': np.array([1.0, np.inf]), 'b': np.array([np.nan]), 'c': np.ones(3),
            'd': np.array([1, 2])}
    assert non_finite_outputs(outs) == ['a', 'b']
    assert non_finite_outputs({'a': np.zeros((0,))}) == []


def test_the_first_overflow_is_logged_once_naming_the_output(exp_model, caplog):
    engine = Engine.build(exp_model)
    big = np.full((1, 4), 1000.0, np.float32)      # exp(1000) = inf in float32
    with caplog.at_level(logging.WARNING, logger='tx2_infer.engine'):
        engine.run(np.zeros((1, 4), np.float32))
        assert not caplog.records
        engine.run(big)
        engine.run(big)
    (record,) = caplog.records
    assert "['y']" in record.getMessage() and 'inf or NaN' in record.getMessage()


def test_checks_stop_after_the_first_runs(exp_model, caplog):
    engine = Engine.build(exp_model)
    for _ in range(engine_module.FINITE_CHECK_RUNS):
        engine.run(np.zeros((1, 4), np.float32))
    with caplog.at_level(logging.WARNING, logger='tx2_infer.engine'):
        engine.run(np.full((1, 4), 1000.0, np.float32))
    assert not caplog.records
