"""INT8 quantisation maths as pure numpy functions (the scheme of notes/int8.md).

Symmetric, zero point 0, round half to even everywhere. Weights: one scale per output channel,
int8 in [-127, 127]; activations: one scale per tensor, int8 in [-128, 127]; bias: int32 in the
accumulator's scale. The ops (``ops/quant.py``), the quantize pass and the CUDA lowering all take
their numbers from here, so there is one definition of each.
"""
import numpy as np

from tx2_infer_core.errors import Tx2InferError

INT8_MIN, INT8_MAX = -128, 127
WEIGHT_MAX = 127          # weights use the symmetric [-127, 127]
INT32_MIN, INT32_MAX = -2 ** 31, 2 ** 31 - 1


def round_saturate(v, lo, hi, dtype):
    """``v`` rounded half to even and clipped to [lo, hi], as ``dtype`` (NaN becomes 0, as
    CUDA's ``__float2int_rn`` does)."""
    r = np.clip(np.rint(v), lo, hi)
    if r.dtype.kind == 'f':
        r = np.nan_to_num(r, nan=0.0)
    return r.astype(dtype)


def scale_from_threshold(threshold) -> np.float32:
    """The activation scale of a calibrated threshold: float32(threshold / 127); a zero
    threshold (a tensor that is always 0) gets scale 1.0."""
    t = float(threshold)
    if not np.isfinite(t) or t < 0:
        raise Tx2InferError(f'activation threshold {threshold!r} is not a finite number >= 0')
    return np.float32(t / INT8_MAX) if t > 0 else np.float32(1.0)


def quantize(x, scale) -> np.ndarray:
    """Per-tensor int8 activations: clip(rint(float32(x) / float32(scale)), -128, 127), the
    division in float32 as ONNX QuantizeLinear (and its CUDA kernel) computes it."""
    x = np.asarray(x, np.float32)
    return round_saturate(x / np.float32(scale), INT8_MIN, INT8_MAX, np.int8)


def dequantize(q, scale) -> np.ndarray:
    """float32(q) * float32(scale) (ONNX DequantizeLinear with zero point 0)."""
    return np.asarray(q).astype(np.float32) * np.float32(scale)


def weight_scales(w) -> np.ndarray:
    """Per-output-channel weight scales (float32 [M]): max|w[c]| / 127; a zero channel (or one
    whose scale would not be a finite normal float32) gets 1.0, so its weights become 0."""
    w = np.asarray(w, np.float32)
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) if w.size else np.zeros(w.shape[0])
    scales = amax.astype(np.float32) / np.float32(WEIGHT_MAX)
    good = np.isfinite(scales) & (scales >= np.finfo(np.float32).tiny)
    return np.where(good, scales, np.float32(1.0)).astype(np.float32)


def _channel_scales(scales, channels) -> np.ndarray:
    scales = np.asarray(scales, np.float64).reshape(-1)
    if scales.size != channels or not np.all(np.isfinite(scales) & (scales > 0)):
        raise Tx2InferError(f'weight scales: want {channels} finite positive scales, got '
                            f'{scales.size} ({scales[:4].tolist()}...)')
    return scales


def quantize_weights(w, scales) -> np.ndarray:
    """int8 weights: clip(rint(w[c] / scales[c]), -127, 127), divided in float64 (build time)."""
    w = np.asarray(w, np.float64)
    s = _channel_scales(scales, w.shape[0]).reshape((-1,) + (1,) * (w.ndim - 1))
    return round_saturate(w / s, -WEIGHT_MAX, WEIGHT_MAX, np.int8)


def quantize_bias(b, x_scale, w_scales) -> np.ndarray:
    """int32 bias in the accumulator's scale: rint(b[c] / (x_scale * w_scales[c])) in
    float64, clipped to int32."""
    b = np.asarray(b, np.float64).reshape(-1)
    s = _channel_scales(w_scales, b.size) * float(np.float32(x_scale))
    return round_saturate(b / s, INT32_MIN, INT32_MAX, np.int32)


def requant_multipliers(x_scale, w_scales, out_scale=0.0) -> tuple:
    """The float32 epilogue constants of a FusedConvInt8: ``(dq, inv_out)`` with
    ``dq[c] = float32(x_scale) * float32(w_scales[c])`` (one float32 product) and
    ``inv_out = float32(1) / float32(out_scale)`` (0 for a float output). Computed once at
    build, on the host, by numpy; the CUDA lowering passes these very numbers."""
    dq = np.float32(x_scale) * np.asarray(w_scales, np.float32).reshape(-1)
    out = np.float32(out_scale)
    inv_out = np.float32(1) / out if out > 0 else np.float32(0)
    return dq.astype(np.float32), np.float32(inv_out)


# Terms of int8 x int8 products (each at most 128 * 127 in size) that float32 sums exactly in
# any order: every partial sum stays an integer below 2**24.
EXACT_FLOAT32_TERMS = 2 ** 24 // (128 * 127)


def conv_accumulator(conv, x_q, w_q, b_q=None, group=1) -> np.ndarray:
    """The exact int32 accumulator sum(x_q * w_q) + b_q of ``conv(x, w)`` (a float conv
    function over NCHW input and MCKK weights, ``group`` groups).

    Exactness: every partial sum is an integer, so a float sum is exact while it stays below
    2**24 (float32) or 2**53 (float64). The conv runs in float32 over chunks of input channels
    of at most ``EXACT_FLOAT32_TERMS`` terms per output (summed in int64), or in float64 when
    grouped channels cannot be chunked; the int64 total wraps to int32 as the GPU's int32 adds
    would."""
    x_q, w_q = np.asarray(x_q), np.asarray(w_q)
    taps = int(np.prod(w_q.shape[2:]))
    chunk = EXACT_FLOAT32_TERMS // taps
    if w_q.shape[1] <= chunk:
        acc = conv(x_q.astype(np.float32), w_q.astype(np.float32)).astype(np.int64)
    elif group == 1 and chunk >= 1:
        acc = None
        for c in range(0, w_q.shape[1], chunk):
            part = conv(x_q[:, c:c + chunk].astype(np.float32),
                        w_q[:, c:c + chunk].astype(np.float32)).astype(np.int64)
            acc = part if acc is None else acc + part
    else:
        acc = conv(x_q.astype(np.float64), w_q.astype(np.float64)).astype(np.int64)
    if b_q is not None:
        acc += np.asarray(b_q, np.int64).reshape((1, -1) + (1,) * (acc.ndim - 2))
    return acc.astype(np.int32)
