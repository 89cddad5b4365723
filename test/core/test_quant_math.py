"""Properties of the INT8 maths (int8/quant_math.py): round trips within half a step,
saturation, round half to even, zero channels, the bias in the accumulator's scale."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from tx2_infer_core.errors import Tx2InferError
from tx2_infer_core.int8 import quant_math as qm
from tx2_infer_core.ir import Node
from tx2_infer_core.ops import run_node

FLOATS = st.floats(-1e4, 1e4, width=32, allow_nan=False)


def f32(lo, hi):
    """float32 numbers in [lo, hi] (the bounds rounded to float32)."""
    return st.floats(float(np.float32(lo)), float(np.float32(hi)), width=32)


SCALES = f32(1e-4, 10.0)


def weights(max_channels=6):
    shape = hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=max_channels)
    return hnp.arrays(np.float32, shape, elements=st.floats(-50, 50, width=32))


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 64), elements=FLOATS), SCALES)
def test_activation_round_trip_within_half_a_step(x, scale):
    q = qm.quantize(x, scale)
    assert q.dtype == np.int8
    back = qm.dequantize(q, scale).astype(np.float64)
    inside = np.abs(x) <= 127 * np.float64(scale)
    err = np.abs(back - x)[inside]
    assert np.all(err <= np.float64(scale) * (0.5 + 1e-5) + 1e-30)


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 64), elements=FLOATS), SCALES)
def test_activation_saturates(x, scale):
    q = qm.quantize(x, scale).astype(np.int32)
    assert q.min() >= -128 and q.max() <= 127
    ratio = x.astype(np.float64) / np.float32(scale)
    assert np.all(q[ratio >= 128] == 127) and np.all(q[ratio <= -129] == -128)


@given(st.integers(-127, 126), SCALES)
def test_round_half_to_even(k, scale):
    assert int(qm.quantize(np.float32(k + 0.5), 1.0)) == (k if k % 2 == 0 else k + 1)
    assert qm.quantize(np.float32([2.5, -2.5, 3.5, -0.5]), 1.0).tolist() == [2, -2, 4, 0]


def test_nan_becomes_zero_and_inf_saturates():
    q = qm.quantize(np.float32([np.nan, np.inf, -np.inf]), 0.1)
    assert q.tolist() == [0, 127, -128]


@settings(max_examples=200, deadline=None)
@given(weights())
def test_weight_round_trip_per_channel(w):
    scales = qm.weight_scales(w)
    q = qm.quantize_weights(w, scales)
    assert q.dtype == np.int8 and np.abs(q.astype(np.int32)).max(initial=0) <= 127
    back = q.astype(np.float64) * scales.reshape((-1,) + (1,) * (w.ndim - 1))
    bound = scales.astype(np.float64).reshape((-1,) + (1,) * (w.ndim - 1)) * (0.5 + 1e-6)
    assert np.all(np.abs(back - w) <= bound)
    flat = np.abs(w.reshape(len(w), -1))
    used = flat.max(axis=1) >= 127 * np.finfo(np.float32).tiny  # subnormal: a zero channel
    # the largest weight of every non-zero channel maps to +-127
    assert np.all(np.abs(q.reshape(len(w), -1)).max(axis=1)[used] == 127)


def test_zero_channel_gets_scale_one_and_zero_weights():
    w = np.zeros((3, 2, 1, 1), np.float32)
    w[1] = 0.5
    scales = qm.weight_scales(w)
    assert scales.tolist() == [1.0, np.float32(0.5) / np.float32(127), 1.0]
    q = qm.quantize_weights(w, scales)
    assert not q[0].any() and not q[2].any() and np.all(q[1] == 127)


def test_weights_saturate_at_127():
    w = np.float32([[1.0, -1.0, 0.5]]).reshape(1, 3, 1, 1)
    assert qm.quantize_weights(w, [1 / 200]).ravel().tolist() == [127, -127, 100]


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 16), elements=st.floats(-100, 100, width=32)),
       f32(1e-3, 1.0), st.data())
def test_bias_in_the_accumulator_scale(b, x_scale, data):
    w_scales = data.draw(hnp.arrays(np.float32, len(b), elements=f32(1e-3, 0.1)))
    q = qm.quantize_bias(b, x_scale, w_scales)
    assert q.dtype == np.int32
    step = np.float64(np.float32(x_scale)) * w_scales.astype(np.float64)
    assert np.all(np.abs(q * step - b) <= step * (0.5 + 1e-9))


def test_bias_clips_to_int32():
    q = qm.quantize_bias(np.float32([1e30, -1e30]), 1e-3, [1e-3, 1e-3])
    assert q.tolist() == [2 ** 31 - 1, -2 ** 31]


def test_wrong_scale_count_is_an_error():
    with pytest.raises(Tx2InferError, match='want 2 finite positive scales'):
        qm.quantize_weights(np.ones((2, 1, 1, 1), np.float32), [0.1])
    with pytest.raises(Tx2InferError, match='finite positive'):
        qm.quantize_bias(np.ones(2, np.float32), 0.1, [0.1, 0.0])


def test_scale_from_threshold():
    assert qm.scale_from_threshold(12.7) == np.float32(0.1)
    assert qm.scale_from_threshold(0.0) == 1.0
    with pytest.raises(Tx2InferError, match='threshold'):
        qm.scale_from_threshold(-1.0)
    with pytest.raises(Tx2InferError, match='threshold'):
        qm.scale_from_threshold(float('nan'))


def test_requant_multipliers_are_float32_products_and_division():
    dq, inv = qm.requant_multipliers(0.1, [0.3, 0.7], 0.05)
    assert dq.dtype == np.float32 and inv.dtype == np.float32
    assert dq.tolist() == [np.float32(0.1) * np.float32(0.3), np.float32(0.1) * np.float32(0.7)]
    assert inv == np.float32(1) / np.float32(0.05)
    assert qm.requant_multipliers(0.1, [1.0], 0.0)[1] == 0


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 32), elements=FLOATS), SCALES)
def test_quantize_is_the_quantizelinear_op(x, scale):
    node = Node('QuantizeLinear', 'q', ['x', 's', 'z'], ['y'])
    got = run_node(node, [x, np.float32(scale), np.int8(0)])[0]
    np.testing.assert_array_equal(got, qm.quantize(x, scale))
    back = run_node(Node('DequantizeLinear', 'd', ['y', 's'], ['z']), [got, np.float32(scale)])
    np.testing.assert_array_equal(back[0], qm.dequantize(got, scale))
