"""ONNX's QOperator ops (QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger) written in QDQ
form at import (``qoperator_rewrite.py``) and DynamicQuantizeLinear, against ONNX Runtime.

One-node models built with onnx.helper (per tensor and per channel, zero points, bias) run on
our numpy and ort backends and on ONNX Runtime; every op must match exactly: the QLinear ops
requantise the exact integer sum as ORT's kernels do (``float32(acc) * (xs * ws / ys)``, one
rounding), also for any scales and zero points (hypothesis, with examples where a float conv's
FP32 sum once landed across a rounding tie). Where that form cannot be exact the rewrite falls
back to a float conv, within one quantum on at most 0.1% of the elements. A real model,
ppocr-cls quantised by ``quantize_static(QuantFormat.QOperator)`` on real photos, matches ORT
at every quantised layer on other photos (test_qoperator_zoo.py).
"""
import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import example, given, settings, strategies as st
from onnx import TensorProto, helper, numpy_helper

from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.onnx_import import graph_from_model
from tx2_infer_core.ops import OPS
from tx2_infer_core.passes import optimize

ELEM = {np.dtype(np.uint8): TensorProto.UINT8, np.dtype(np.int8): TensorProto.INT8,
        np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int32): TensorProto.INT32}


def one_node_model(op, feeds, consts, outputs, attrs=None, order=None):
    """A model of one ``op`` node: ``feeds`` graph inputs, ``consts`` initializers (inputs in
    ``order``, '' for an omitted one), ``outputs`` {name: dtype}."""
    inputs = [helper.make_tensor_value_info(k, ELEM[v.dtype], v.shape) for k, v in feeds.items()]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    outs = [helper.make_tensor_value_info(k, ELEM[np.dtype(t)], None) for k, t in outputs.items()]
    node = helper.make_node(op, order or list(feeds) + list(consts), list(outputs),
                            **(attrs or {}))
    graph = helper.make_graph([node], 'q', inputs, outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 21)], ir_version=10)


def run_all(model, feeds, tmp_path, backends=('numpy', 'ort')):
    """{'onnxruntime': outputs, backend: outputs} for ``model`` on ``feeds``."""
    path = tmp_path / 'model.onnx'
    onnx.save(model, str(path))
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    results = {'onnxruntime': dict(zip(names, session.run(names, feeds)))}
    for backend in backends:
        engine = Engine.build(path, backend=backend)
        results[backend] = engine.run(feeds)
        engine.close()
    return results


def assert_within_one_quantum(got, want, name='', fraction=0.001):
    """Equal dtypes and shapes, |got - want| <= 1 and on at most ``fraction`` of the
    elements (0.1%)."""
    assert got.dtype == want.dtype and got.shape == want.shape, (name, got.dtype, want.dtype)
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    assert diff.max(initial=0) <= 1, f'{name}: off by {diff.max()} quanta'
    assert (diff > 0).sum() <= fraction * diff.size, f'{name}: {(diff > 0).sum()} of {diff.size}'


def conv_case(rng, w_dtype, per_channel, bias, x_zp=128, group=1, y_zp=None):
    """A QLinearConv model (3x3, pad 1, stride 2) and its feed, weights quantised from
    float ones as ORT's quantizer does (symmetric int8, asymmetric uint8)."""
    c, m = 8, 16
    x = rng.integers(0, 256, (1, c, 13, 11), dtype=np.uint8)
    w_float = rng.normal(0, 0.2, (m, c // group, 3, 3)).astype(np.float32)
    axes = (1, 2, 3) if per_channel else None
    lo = np.minimum(w_float.min(axis=axes), 0)
    hi = np.maximum(w_float.max(axis=axes), 0)
    if w_dtype == np.int8:
        ws = (np.maximum(-lo, hi) / 127).astype(np.float32)
        wz = np.zeros_like(ws, np.int8)
    else:
        ws = ((hi - lo) / 255).astype(np.float32)
        wz = np.rint(-lo / ws).astype(np.uint8)
    shape = (-1, 1, 1, 1) if per_channel else ()
    w = np.clip(np.rint(w_float / ws.reshape(shape)) + wz.reshape(shape),
                *((-128, 127) if w_dtype == np.int8 else (0, 255))).astype(w_dtype)
    xs, ys = np.float32(0.02), np.float32(0.05)
    consts = {'xs': xs, 'xz': np.uint8(x_zp), 'w': w, 'ws': ws, 'wz': wz, 'ys': ys,
              'yz': np.uint8(128 if y_zp is None else y_zp)}
    if bias:
        consts['B'] = rng.integers(-3000, 3000, m).astype(np.int32)
    order = ['x', 'xs', 'xz', 'w', 'ws', 'wz', 'ys', 'yz'] + (['B'] if bias else [])
    model = one_node_model('QLinearConv', {'x': x}, consts, {'y': np.uint8}, dict(
        pads=[1, 1, 1, 1], strides=[2, 2], group=group), order)
    return model, {'x': x}


@pytest.mark.parametrize('w_dtype', [np.int8, np.uint8])
@pytest.mark.parametrize('per_channel', [False, True])
@pytest.mark.parametrize('bias', [False, True])
def test_qlinear_conv_matches_onnxruntime(w_dtype, per_channel, bias, tmp_path):
    model, feeds = conv_case(np.random.default_rng(7), w_dtype, per_channel, bias)
    results = run_all(model, feeds, tmp_path)
    want = results['onnxruntime']['y']
    assert np.unique(want).size > 10        # neither saturated nor constant
    for backend in ('numpy', 'ort'):
        np.testing.assert_array_equal(results[backend]['y'], want, err_msg=backend)
    # our reference op (ORT's integer maths) is exact
    assert 'QLinearConv' not in {n.op for n in graph_from_model(model).nodes}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    args = [feeds['x']] + [inits[name] for name in model.graph.node[0].input[1:]]
    ref = OPS['QLinearConv'](*args, pads=[1, 1, 1, 1], strides=[2, 2])
    np.testing.assert_array_equal(ref, want)


def test_qlinear_conv_depthwise_keeps_the_multiplier_after_the_sum(tmp_path):
    """Groups kept; the weight DQ folds into a FusedConv's float weights ``w - wz`` (integers),
    the bias is B; the multiplier stays after the sum on the cpu levels (int32 Cast and
    DequantizeLinear: no scale fold moves it) and folds into the weights at level 3 (FP16)."""
    model, feeds = conv_case(np.random.default_rng(3), np.int8, True, True, group=8)
    results = run_all(model, feeds, tmp_path)
    for backend in ('numpy', 'ort'):
        np.testing.assert_array_equal(results[backend]['y'], results['onnxruntime']['y'])
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for level in (1, 2):
        graph, _ = optimize(graph_from_model(model), level)
        assert [n.op for n in graph.nodes] == [
            'DequantizeLinear', 'FusedConv' if level == 2 else 'Conv', 'Cast',
            'DequantizeLinear', 'QuantizeLinear']
    conv = graph.nodes[1]
    np.testing.assert_array_equal(graph.weights[conv.inputs[1]], inits['w'].astype(np.float32))
    np.testing.assert_array_equal(graph.weights[conv.inputs[2]], inits['B'].astype(np.float32))
    graph, _ = optimize(graph_from_model(model), 3)
    assert [n.op for n in graph.nodes] == ['DequantizeLinear', 'FusedConv', 'QuantizeLinear']


def matmul_case(seed, a_scale=0.03, y_scale=0.04, a_zp=120, y_zp=100, shape=(2, 5, 32, 12)):
    """A QLinearMatMul model (uint8 ``a`` [..., M, K] by a constant int8 ``b`` [K, N], per
    column scales) and its feed."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, shape[:-1], dtype=np.uint8)
    b = rng.integers(-128, 128, shape[-2:], dtype=np.int8)
    n = shape[-1]
    consts = {'as': np.float32(a_scale), 'az': np.uint8(a_zp), 'b': b,
              'bs': rng.uniform(0.001, 0.01, n).astype(np.float32), 'bz': np.zeros(n, np.int8),
              'ys': np.float32(y_scale), 'yz': np.uint8(y_zp)}
    model = one_node_model('QLinearMatMul', {'a': a}, consts, {'y': np.uint8},
                           order=['a', 'as', 'az', 'b', 'bs', 'bz', 'ys', 'yz'])
    return model, {'a': a}


def test_qlinear_matmul_matches_onnxruntime(tmp_path):
    model, feeds = matmul_case(1)
    results = run_all(model, feeds, tmp_path)
    for backend in ('numpy', 'ort'):
        np.testing.assert_array_equal(results[backend]['y'], results['onnxruntime']['y'])


@pytest.mark.parametrize('zero_points', [True, False])
def test_matmul_integer_is_exact(zero_points, tmp_path):
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (3, 64), dtype=np.uint8)
    b = rng.integers(-128, 128, (64, 10), dtype=np.int8)
    consts = {'b': b}
    order = ['a', 'b']
    if zero_points:
        consts.update(az=np.uint8(131), bz=rng.integers(-5, 5, 10).astype(np.int8))
        order += ['az', 'bz']
    model = one_node_model('MatMulInteger', {'a': a}, consts, {'y': np.int32}, order=order)
    results = run_all(model, {'a': a}, tmp_path)
    for backend in ('numpy', 'ort'):
        np.testing.assert_array_equal(results[backend]['y'], results['onnxruntime']['y'])


def test_conv_integer_is_exact(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.integers(0, 256, (1, 4, 9, 9), dtype=np.uint8)
    consts = {'w': rng.integers(0, 256, (6, 4, 3, 3), dtype=np.uint8), 'xz': np.uint8(77),
              'wz': np.uint8(140)}
    model = one_node_model('ConvInteger', {'x': x}, consts, {'y': np.int32},
                           dict(pads=[1, 0, 1, 2]), order=['x', 'w', 'xz', 'wz'])
    results = run_all(model, {'x': x}, tmp_path)
    for backend in ('numpy', 'ort'):
        np.testing.assert_array_equal(results[backend]['y'], results['onnxruntime']['y'])


def test_integer_sums_beyond_float32_are_refused_by_name():
    """255 * 255 * 300 > 2**24: the float32 MatMul would not be exact."""
    b = np.full((300, 4), 255, np.uint8)
    model = one_node_model('MatMulInteger', {'a': np.zeros((2, 300), np.uint8)},
                           {'b': b, 'az': np.uint8(0), 'bz': np.uint8(0)}, {'y': np.int32},
                           order=['a', 'b', 'az', 'bz'])
    model.graph.node[0].name = 'big_mm'
    with pytest.raises(UnsupportedOpError, match=r"MatMulInteger.*big_mm.*2\*\*24"):
        graph_from_model(model)
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.full((300, 4), 1, np.uint8),
                                                                'b'))
    graph_from_model(model)     # sums of at most 255 * 300: exact, accepted


def test_dynamic_quantize_linear_matches_onnxruntime(tmp_path):
    x = np.random.default_rng(5).normal(0.3, 2.0, (2, 3, 7)).astype(np.float32)
    model = one_node_model('DynamicQuantizeLinear', {'x': x}, {},
                           {'y': np.uint8, 'ys': np.float32, 'yz': np.uint8})
    results = run_all(model, {'x': x}, tmp_path)
    for backend in ('numpy', 'ort'):
        for name, want in results['onnxruntime'].items():
            np.testing.assert_array_equal(results[backend][name], want, err_msg=name)


@settings(max_examples=25, deadline=None)
@given(x_scale=st.floats(1e-3, 0.1), y_scale=st.floats(1e-3, 0.5), x_zp=st.integers(0, 255),
       y_zp=st.integers(0, 255), seed=st.integers(0, 2 ** 16))
@example(x_scale=0.030707357859531773, y_scale=0.001, x_zp=0, y_zp=0, seed=0)  # CI: a tie
def test_qlinear_conv_scales_and_zero_points(x_scale, y_scale, x_zp, y_zp, seed, tmp_path_factory):
    """Any scales and zero points: the numpy and ort backends equal to ORT. (The example: one
    of 672 outputs next to a rounding tie, once a quantum off ORT through a float conv.)"""
    model, feeds = conv_case(np.random.default_rng(seed), np.int8, True, True, x_zp=x_zp,
                             y_zp=y_zp)
    for t in model.graph.initializer:
        if t.name in ('xs', 'ys'):
            t.CopyFrom(numpy_helper.from_array(np.float32(x_scale if t.name == 'xs'
                                                          else y_scale), t.name))
    results = run_all(model, feeds, tmp_path_factory.mktemp('h'))
    for backend in ('numpy', 'ort'):
        np.testing.assert_array_equal(results[backend]['y'], results['onnxruntime']['y'])


@settings(max_examples=10, deadline=None)
@given(a_scale=st.floats(1e-3, 0.1), y_scale=st.floats(1e-3, 0.5), a_zp=st.integers(0, 255),
       y_zp=st.integers(0, 255), seed=st.integers(0, 2 ** 16))
@example(a_scale=0.045896291058584504, y_scale=0.06788680692633521, a_zp=77, y_zp=98,
         seed=8121)  # one of 3072 outputs a quantum off ORT through a float MatMul
def test_qlinear_matmul_scales_and_zero_points(a_scale, y_scale, a_zp, y_zp, seed,
                                               tmp_path_factory):
    """Any scales and zero points, K = 256: the numpy and ort backends equal to ORT."""
    model, feeds = matmul_case(seed, a_scale, y_scale, a_zp, y_zp, shape=(4, 64, 256, 12))
    results = run_all(model, feeds, tmp_path_factory.mktemp('h'))
    for backend in ('numpy', 'ort'):
        np.testing.assert_array_equal(results[backend]['y'], results['onnxruntime']['y'])


def test_qlinear_conv_beyond_exact_sums_falls_back_by_name(tmp_path, caplog):
    """Sums that may reach 2**24 (256 channels of 3x3 weights at +-127 by any uint8 input):
    the float conv form, logged by name, within one quantum of ORT."""
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, (1, 256, 9, 9), dtype=np.uint8)
    consts = {'xs': np.float32(0.02), 'xz': np.uint8(0),
              'w': rng.choice(np.array([-127, 127], np.int8), (16, 256, 3, 3)),
              'ws': np.full(16, 2e-4, np.float32), 'wz': np.zeros(16, np.int8),
              'ys': np.float32(0.05), 'yz': np.uint8(128)}
    model = one_node_model('QLinearConv', {'x': x}, consts, {'y': np.uint8},
                           dict(pads=[1, 1, 1, 1]))
    model.graph.node[0].name = 'wide_conv'
    with caplog.at_level(logging.INFO, 'tx2_infer.onnx'):
        graph = graph_from_model(model)
    assert "QLinearConv 'wide_conv': integer sums that may reach" in caplog.text
    assert 'Cast' not in {n.op for n in graph.nodes}
    results = run_all(model, {'x': x}, tmp_path)
    want = results['onnxruntime']['y']
    assert np.unique(want).size > 10
    for backend in ('numpy', 'ort'):
        assert_within_one_quantum(results[backend]['y'], want, backend)
