"""Weight maths for the folding passes: pure functions of numpy arrays, no graph in sight."""
import numpy as np


def fuse_conv_bn_weights(w, b, scale, bias, mean, var, eps):
    """Fold ``BatchNormalization(conv(x, w) + b)`` into one convolution; returns ``(w, b)``.

    ``w`` is ``[C_out, C_in/group, *kernel]``, ``b`` is ``[C_out]`` or None and the batch-norm
    parameters are ``[C_out]``. BN computes ``(y - mean) / sqrt(var + eps) * scale + bias``,
    which is ``y * k + (bias - mean * k)`` with ``k = scale / sqrt(var + eps)``. The maths is
    done in float64 and the results keep ``w``'s dtype.
    """
    k, shift = batchnorm_scale_shift(scale, bias, mean, var, eps)
    return fuse_conv_affine_weights(w, b, k, shift, np.asarray(w).dtype)


def batchnorm_scale_shift(scale, bias, mean, var, eps):
    """``(k, shift)``, float64 ``[C]`` vectors such that inference BatchNormalization is
    ``y * k + shift``: ``k = scale / sqrt(var + eps)``, ``shift = bias - mean * k``."""
    k = np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    return k, np.asarray(bias, np.float64) - np.asarray(mean, np.float64) * k


def fuse_conv_affine_weights(w, b, scale, shift, dtype=None):
    """Fold ``conv(x, w) + b`` followed by ``* scale + shift`` (per output channel).

    ``scale`` and ``shift`` are ``[C_out]`` vectors; returns ``(w * scale, b * scale + shift)``
    in ``dtype`` (default: ``w``'s dtype).
    """
    return fuse_output_affine_weights(w, b, scale, shift, 0, dtype)


def fuse_output_affine_weights(w, b, scale, shift, axis, dtype=None):
    """Fold a product by ``w`` plus ``b``, followed by ``* scale + shift`` per output channel,
    into ``(w', b')``: ``w`` holds one slice per output channel along ``axis`` (0 for a Conv's
    ``[C_out, ...]`` or a Gemm's transposed ``[N, K]``, -1 for a MatMul's ``[K, N]``); ``b``
    (``[C_out]`` or None), ``scale`` and ``shift`` are ``[C_out]``. Float64 maths; the results
    are in ``dtype`` (default: ``w``'s dtype).
    """
    w = np.asarray(w)
    dtype = dtype or w.dtype
    scale = np.asarray(scale, np.float64)
    shape = [1] * w.ndim
    shape[axis] = -1
    b = np.zeros(w.shape[axis]) if b is None else np.asarray(b, np.float64)
    new_w = w.astype(np.float64) * scale.reshape(shape)
    new_b = b * scale + np.asarray(shift, np.float64)
    return new_w.astype(dtype), new_b.astype(dtype)


def fuse_conv_transpose_affine_weights(w, b, scale, shift, group=1, dtype=None):
    """Fold ``conv_transpose(x, w) + b`` followed by ``* scale + shift`` per output channel.

    ``w`` is ConvTranspose's ``[C_in, C_out/group, *kernel]``: output channel
    ``g * C_out/group + j`` is made by ``w[g * C_in/group:(g + 1) * C_in/group, j]``, so the
    scale runs along axis 1, per group. ``b``, ``scale`` and ``shift`` are ``[C_out]``;
    returns ``(w', b')`` in ``dtype`` (default: ``w``'s dtype).
    """
    w = np.asarray(w)
    dtype = dtype or w.dtype
    c_in, per_group, kernel = w.shape[0], w.shape[1], w.shape[2:]
    scale = np.asarray(scale, np.float64)
    b = np.zeros(per_group * group) if b is None else np.asarray(b, np.float64)
    grouped = w.astype(np.float64).reshape((group, c_in // group, per_group) + kernel)
    new_w = grouped * scale.reshape((group, 1, per_group) + (1,) * len(kernel))
    new_b = b * scale + np.asarray(shift, np.float64)
    return new_w.reshape(w.shape).astype(dtype), new_b.astype(dtype)


def fuse_conv_transpose_bn_weights(w, b, scale, bias, mean, var, eps, group=1):
    """Fold ``BatchNormalization(conv_transpose(x, w) + b)`` into one ConvTranspose; ``w`` is
    ``[C_in, C_out/group, *kernel]``, the rest ``[C_out]`` (``fuse_conv_bn_weights``' maths,
    per output channel); returns ``(w', b')`` in ``w``'s dtype."""
    k, shift = batchnorm_scale_shift(scale, bias, mean, var, eps)
    return fuse_conv_transpose_affine_weights(w, b, k, shift, group, np.asarray(w).dtype)


def channel_vector(c, rank, channels):
    """``c`` as a ``[channels]`` vector if it broadcasts along axis 1 of a rank-``rank`` tensor
    only (a per-channel or scalar constant); None otherwise."""
    c = np.asarray(c)
    if c.ndim > rank:
        return None
    full = c.reshape((1,) * (rank - c.ndim) + c.shape)
    if any(d != 1 for axis, d in enumerate(full.shape) if axis != 1):
        return None
    if full.shape[1] not in (1, channels):
        return None
    return np.broadcast_to(full.reshape(-1), (channels,)).astype(np.float64)


def affine_of(op, c, conv_first):
    """``(scale, shift)`` such that ``op(conv, c)`` (or ``op(c, conv)``) is
    ``conv * scale + shift``; None when ``op`` is not affine in the conv output."""
    one, zero = np.ones_like(c), np.zeros_like(c)
    if op == 'Add':
        return one, c
    if op == 'Mul':
        return c, zero
    if op == 'Sub':
        return (one, -c) if conv_first else (-one, c)
    if op == 'Div' and conv_first and np.all(c != 0):
        return 1.0 / c, zero
    return None


def column_vector(c, rank, columns):
    """``c`` as a ``[columns]`` vector if it broadcasts along the last axis of a rank-``rank``
    tensor only (a per-column or scalar constant: a product's bias); None otherwise."""
    c = np.asarray(c)
    if c.ndim > rank or any(d != 1 for d in c.shape[:-1]):
        return None
    if c.ndim and c.shape[-1] not in (1, columns):
        return None
    return np.broadcast_to(c.reshape(-1), (columns,)).copy()
