"""Quantisation ops: ONNX QuantizeLinear and DequantizeLinear, and the internal FusedConvInt8
(the exact integer emulation of notes/int8.md, the oracle of the CUDA int8 kernels)."""
import numpy as np

from tx2_infer_core.int8.quant_math import (conv_accumulator, requant_multipliers,
                                            round_saturate)
from tx2_infer_core.ops.common import axis_of, unsupported
from tx2_infer_core.ops.conv import conv_nd, resolve_pads
from tx2_infer_core.ops.fused import apply_activation, post_affine

# quantised integer dtypes (ONNX TensorProto code -> name) and their ranges
INT_CODES = {2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16'}
INT_RANGES = {'uint8': (0, 255), 'int8': (-128, 127), 'uint16': (0, 65535),
              'int16': (-32768, 32767)}
FLOAT_CODES = {1: 'float32', 10: 'float16'}


def quant_param(p, shape, axis, block_size):
    """A scale or zero point shaped to broadcast over an input of ``shape``: a scalar
    (per tensor), a vector along ``axis`` (per axis) or blocks of ``block_size`` along it."""
    p = np.asarray(p)
    if p.size == 1 and p.ndim <= 1:
        return p.reshape(())
    axis = axis_of(axis, len(shape))
    if block_size:
        p = np.repeat(p, block_size, axis=axis).take(range(shape[axis]), axis=axis)
        if p.shape != tuple(shape):
            unsupported(f'block_size={block_size}: scale shape does not block input {shape}')
        return p
    if p.ndim != 1 or p.size != shape[axis]:
        unsupported(f'scale of shape {p.shape} for axis {axis} of input {shape}')
    return p.reshape([p.size if i == axis else 1 for i in range(len(shape))])


def _quant_dtype(zero_point, output_dtype) -> str:
    default = INT_CODES.get(output_dtype, 'uint8')
    name = zero_point.dtype.name if zero_point is not None else default
    if output_dtype and INT_CODES.get(output_dtype) != name:
        unsupported(f'output_dtype={output_dtype} with a {name} zero point')
    if name not in INT_RANGES:
        unsupported(f'quantised dtype {name} (int8, uint8, int16, uint16 only)')
    return name


def QuantizeLinear(x, y_scale, y_zero_point=None, *, axis=1, block_size=0, output_dtype=0,
                   precision=0, saturate=1):
    """ONNX QuantizeLinear to an integer type: saturate(rint(x / y_scale) + y_zero_point),
    the division in numpy's type of x / y_scale (``saturate`` concerns float8 only)."""
    dtype = _quant_dtype(y_zero_point, output_dtype)
    scale = quant_param(y_scale, x.shape, axis, block_size)
    if precision:
        if precision not in FLOAT_CODES:
            unsupported(f'precision={precision}')
        x, scale = x.astype(FLOAT_CODES[precision]), scale.astype(FLOAT_CODES[precision])
    v = np.rint(x / scale)
    if y_zero_point is not None:
        v = v + quant_param(y_zero_point, x.shape, axis, block_size)
    return round_saturate(v, *INT_RANGES[dtype], dtype)


def DequantizeLinear(x, x_scale, x_zero_point=None, *, axis=1, block_size=0, output_dtype=0):
    """ONNX DequantizeLinear of an integer tensor: (float32(x) - zero_point) * x_scale, in the
    scale's type (or ``output_dtype``)."""
    if x.dtype.name not in INT_RANGES and x.dtype != np.int32:
        unsupported(f'DequantizeLinear of {x.dtype} (integer inputs only)')
    if x_zero_point is not None and x_zero_point.dtype != x.dtype:
        unsupported(f'zero point {x_zero_point.dtype} for a {x.dtype} input')
    if output_dtype and output_dtype not in FLOAT_CODES:
        unsupported(f'output_dtype={output_dtype}')
    out = FLOAT_CODES[output_dtype] if output_dtype else x_scale.dtype
    dx = x.astype(np.float32)
    if x_zero_point is not None:
        dx = dx - quant_param(x_zero_point, x.shape, axis, block_size).astype(np.float32)
    return (dx * quant_param(x_scale, x.shape, axis, block_size)).astype(out)


def FusedConvInt8(x, w, b=None, residual=None, *, x_scale, w_scales, out_scale=0.0,
                  residual_scale=0.0, auto_pad='NOTSET', dilations=None, group=1,
                  kernel_shape=None, pads=None, strides=None, activation='', alpha=0.01,
                  beta=0.5, clip_min=-np.inf, clip_max=np.inf, residual_after_act=0,
                  post_scale=1.0, post_shift=0.0):
    """An int8 convolution with FusedConv's epilogue, in notes/int8.md's exact order: int32
    accumulator, times float32 ``x_scale * w_scales[c]``, + residual, activation, float32
    ``* post_scale + post_shift`` (+ residual after it), then float32 (``out_scale`` 0) or
    int8 ``rint(y * (1 / out_scale))``."""
    if x.dtype != np.int8 or w.dtype != np.int8 or (b is not None and b.dtype != np.int32):
        unsupported(f'FusedConvInt8 of x {x.dtype}, w {w.dtype}, b '
                    f'{None if b is None else b.dtype} (want int8, int8, int32)')
    nd = x.ndim - 2
    strides, dilations = strides or [1] * nd, dilations or [1] * nd
    if kernel_shape and list(kernel_shape) != list(w.shape[2:]):
        unsupported(f'kernel_shape={kernel_shape} differs from weight shape {w.shape}')
    if group < 1 or w.shape[1] * group != x.shape[1] or w.shape[0] % group:
        unsupported(f'group={group} with {x.shape[1]} input channels and weight {w.shape}')
    pads = resolve_pads(x.shape[2:], w.shape[2:], strides, dilations, pads, auto_pad)
    acc = conv_accumulator(lambda xf, wf: conv_nd(xf, wf, group, strides, dilations, pads),
                           x, w, b, group)
    dq, inv_out = requant_multipliers(x_scale, w_scales, out_scale)
    y = acc.astype(np.float32) * dq.reshape((1, -1) + (1,) * nd)
    if residual is not None:
        r = (residual.astype(np.float32) * np.float32(residual_scale)
             if residual.dtype == np.int8 else residual.astype(np.float32, copy=False))
    if residual is not None and not residual_after_act:
        y = y + r
    y = apply_activation(y, activation, alpha, beta, clip_min, clip_max).astype(np.float32)
    y = post_affine(y, post_scale, post_shift)
    if residual is not None and residual_after_act:
        y = y + r
    if inv_out == 0:
        return y
    return round_saturate(y * inv_out, -128, 127, np.int8)
