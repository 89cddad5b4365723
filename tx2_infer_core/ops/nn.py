"""Normalisation, softmax and matrix-product ops."""
import numpy as np

from tx2_infer_core.ops.common import axis_of, unsupported


def _channel(v, ndim):
    """A per-channel vector shaped to broadcast over (N, C, *spatial)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def BatchNormalization(x, scale, bias, mean, var, *, epsilon=1e-5, momentum=0.9,
                       training_mode=0, spatial=1):
    """Inference batch norm with the running statistics: scale * (x - mean) / std + bias."""
    if training_mode:
        unsupported('training_mode=1')
    if not spatial:
        unsupported('spatial=0')
    factor = scale / np.sqrt(var + epsilon)
    y = x * _channel(factor, x.ndim) + _channel(bias - mean * factor, x.ndim)
    return y.astype(x.dtype, copy=False)


def InstanceNormalization(x, scale, bias, *, epsilon=1e-5):
    """Normalise each (sample, channel) over its spatial axes."""
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + epsilon) * _channel(scale, x.ndim) + _channel(bias, x.ndim)
    return y.astype(x.dtype, copy=False)


def LayerNormalization(x, scale, bias=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """Normalise over the axes from ``axis`` on; returns (y, mean, inverse std)."""
    axes = tuple(range(axis_of(axis, x.ndim), x.ndim))
    work = x.astype(np.float32 if stash_type == 1 else x.dtype)
    mean = work.mean(axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(((work - mean) ** 2).mean(axis=axes, keepdims=True) + epsilon)
    y = (work - mean) * inv_std * scale
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype), mean, inv_std


def GroupNormalization(x, scale, bias, *, epsilon=1e-5, num_groups, stash_type=1):
    """Normalise each sample over groups of channels (and all spatial axes).

    ``scale`` and ``bias`` hold one value per channel (opset 21) or per group (opset 18);
    their size says which.
    """
    n, c = x.shape[:2]
    if c % num_groups:
        raise ValueError(f'{c} channels do not split into {num_groups} groups')
    work = x.astype(np.float32 if stash_type == 1 else x.dtype)
    groups = work.reshape(n, num_groups, -1)
    mean = groups.mean(axis=2, keepdims=True)
    var = ((groups - mean) ** 2).mean(axis=2, keepdims=True)
    y = ((groups - mean) / np.sqrt(var + epsilon)).reshape(x.shape)
    if scale.size != c:     # opset 18: one scale and bias per group
        scale, bias = (np.repeat(v.reshape(-1), c // num_groups) for v in (scale, bias))
    y = y * _channel(scale, x.ndim) + _channel(bias, x.ndim)
    return y.astype(x.dtype)


def MeanVarianceNormalization(x, *, axes=(0, 2, 3)):
    """(x - mean) / sqrt(variance + 1e-9) over ``axes``."""
    axes = tuple(axis_of(a, x.ndim) for a in axes)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    return ((x - mean) / np.sqrt(var + 1e-9)).astype(x.dtype)


def LpNormalization(x, *, axis=-1, p=2):
    """x divided by its L1 or L2 norm along ``axis`` (0 where the norm is 0)."""
    if p not in (1, 2):
        unsupported(f'p={p}')
    norm = np.abs(x).sum(axis=axis, keepdims=True) if p == 1 else \
        np.sqrt((x * x).sum(axis=axis, keepdims=True))
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(norm == 0, 0, x / norm).astype(x.dtype)


def RMSNormalization(x, scale, *, axis=-1, epsilon=1e-5, stash_type=1):
    """x / sqrt(mean(x^2) + epsilon) * scale, the mean over the axes from ``axis`` on."""
    axes = tuple(range(axis_of(axis, x.ndim), x.ndim))
    work = x.astype(np.float32 if stash_type == 1 else x.dtype)
    rms = np.sqrt((work * work).mean(axis=axes, keepdims=True) + epsilon)
    return (work / rms * scale).astype(x.dtype)


def LRN(x, *, size, alpha=1e-4, beta=0.75, bias=1.0):
    """Local response normalisation across channels."""
    squares = np.pad(x * x, [(0, 0), ((size - 1) // 2, size // 2)] + [(0, 0)] * (x.ndim - 2))
    total = sum(squares[:, i:i + x.shape[1]] for i in range(size))
    return (x / (bias + alpha / size * total) ** beta).astype(x.dtype, copy=False)


def Softmax(x, *, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis`` (opset 13 semantics)."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(x.dtype, copy=False)


def LogSoftmax(x, *, axis=-1):
    """log(Softmax(x)) along ``axis``, computed stably."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return (shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))).astype(x.dtype)


def Hardmax(x, *, axis=-1):
    """1 at the first maximum along ``axis``, 0 elsewhere."""
    axis = axis_of(axis, x.ndim)
    y = np.zeros_like(x)
    np.put_along_axis(y, np.expand_dims(x.argmax(axis=axis), axis), 1, axis=axis)
    return y


def MatMul(a, b):
    """Matrix product with numpy (batch-broadcasting) semantics."""
    return np.matmul(a, b)


def Gemm(a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0):
    """alpha * A' @ B' + beta * C (C broadcasts)."""
    a = a.T if transA else a
    b = b.T if transB else b
    y = np.matmul(a, b)
    if alpha != 1.0:
        y = y * y.dtype.type(alpha)
    if c is not None:
        y = y + (c * c.dtype.type(beta) if beta != 1.0 else c)
    return y.astype(a.dtype, copy=False)
