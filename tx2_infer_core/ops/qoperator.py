"""ONNX's QOperator ops (QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger) and
DynamicQuantizeLinear: exact integer references, as ONNX Runtime computes them.

The importer rewrites the first four into QDQ form (``qoperator_rewrite.py``) so the passes and
every backend see float ops; these functions are the oracle of that rewrite (and of the ONNX
node tests). The integer sums run in float64 (exact below 2**53); a QLinear output is
requantised as ONNX Runtime's kernels do: ``rint(float32(acc) * float32(xs * ws / ys)) + yz``,
saturated.
"""
import numpy as np

from tx2_infer_core.int8.quant_math import round_saturate
from tx2_infer_core.ops.common import unsupported
from tx2_infer_core.ops.conv import Conv
from tx2_infer_core.ops.quant import INT_RANGES, QuantizeLinear


def centred(q, zero_point=None, axis=0) -> np.ndarray:
    """``q - zero_point`` as float64 (exact); a 1-D zero point runs along ``axis``."""
    out = np.asarray(q).astype(np.float64)
    if zero_point is None:
        return out
    zp = np.asarray(zero_point).astype(np.float64)
    if zp.size > 1:
        zp = zp.reshape([zp.size if i == axis % out.ndim else 1 for i in range(out.ndim)])
    return out - zp


def requantize(acc, multiplier, zero_point, like) -> np.ndarray:
    """``saturate(rint(float32(acc) * multiplier) + zero_point)`` in the zero point's dtype
    (``like``'s when there is none)."""
    dtype = (zero_point if zero_point is not None else like).dtype.name
    if dtype not in INT_RANGES:
        unsupported(f'output dtype {dtype} (int8, uint8, int16, uint16 only)')
    v = np.rint(acc.astype(np.float32) * multiplier)
    if zero_point is not None:
        v = v + np.asarray(zero_point).astype(np.float32)
    return round_saturate(v, *INT_RANGES[dtype], dtype)


def multiplier(in_scale, w_scale, out_scale, shape) -> np.ndarray:
    """float32 ``in_scale * w_scale / out_scale`` (left to right, as ONNX Runtime), a 1-D
    ``w_scale`` shaped to broadcast as ``shape``."""
    if np.size(in_scale) != 1 or np.size(out_scale) != 1:
        unsupported(f'input scale of shape {np.shape(in_scale)}, output scale of shape '
                    f'{np.shape(out_scale)} (per tensor only)')
    m = (np.float32(in_scale.reshape(-1)[0]) * np.asarray(w_scale, np.float32)
         / np.float32(out_scale.reshape(-1)[0]))
    return m.reshape(shape) if m.size > 1 else m.reshape(())


def QLinearConv(x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point,
                B=None, *, auto_pad='NOTSET', dilations=None, group=1, kernel_shape=None,
                pads=None, strides=None):
    """ONNX QLinearConv: the exact integer conv of ``x - xz`` and ``w - wz`` (+ int32 B),
    requantised to ``y_scale``, ``y_zero_point``."""
    acc = Conv(centred(x, x_zero_point), centred(w, w_zero_point, 0),
               None if B is None else B.astype(np.float64), auto_pad=auto_pad,
               dilations=dilations, group=group, kernel_shape=kernel_shape, pads=pads,
               strides=strides)
    m = multiplier(x_scale, w_scale, y_scale, (1, -1) + (1,) * (x.ndim - 2))
    return requantize(acc, m, y_zero_point, x)


def QLinearMatMul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    """ONNX QLinearMatMul: the exact integer product of ``a - az`` and ``b - bz`` (per-row
    ``a`` and per-column ``b`` parameters), requantised."""
    if np.size(a_scale) > 1:
        unsupported('a per-row a_scale (per-tensor a only)')
    acc = np.matmul(centred(a, a_zero_point, -2), centred(b, b_zero_point, -1))
    return requantize(acc, multiplier(a_scale, b_scale, y_scale, (-1,)), y_zero_point, a)


def ConvInteger(x, w, x_zero_point=None, w_zero_point=None, *, auto_pad='NOTSET',
                dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """ONNX ConvInteger: the int32 conv of ``x - xz`` and ``w - wz`` (per output channel)."""
    acc = Conv(centred(x, x_zero_point), centred(w, w_zero_point, 0), auto_pad=auto_pad,
               dilations=dilations, group=group, kernel_shape=kernel_shape, pads=pads,
               strides=strides)
    return acc.astype(np.int64).astype(np.int32)


def MatMulInteger(a, b, a_zero_point=None, b_zero_point=None):
    """ONNX MatMulInteger: the int32 product of ``a - az`` (per row) and ``b - bz`` (per
    column)."""
    acc = np.matmul(centred(a, a_zero_point, -2), centred(b, b_zero_point, -1))
    return acc.astype(np.int64).astype(np.int32)


def DynamicQuantizeLinear(x):
    """ONNX DynamicQuantizeLinear: uint8 ``y``, its scale ``(max - min) / 255`` over the data
    and 0 (1.0 when max == min), and its zero point ``rint(clip(-min / scale, 0, 255))``."""
    x = np.asarray(x, np.float32)
    lo = np.float32(min(0.0, float(x.min()) if x.size else 0.0))
    hi = np.float32(max(0.0, float(x.max()) if x.size else 0.0))
    scale = np.float32(1.0) if hi == lo else np.float32(hi - lo) / np.float32(255)
    zero_point = np.rint(np.clip(np.float32(0) - lo / scale, 0, 255)).astype(np.uint8)
    y = QuantizeLinear(x, np.array(scale), np.array(zero_point))
    return y, np.array(scale, np.float32), np.array(zero_point, np.uint8)
