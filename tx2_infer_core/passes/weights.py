"""Weight maths for the folding passes: pure functions of numpy arrays, no graph in sight."""
import numpy as np


def fuse_conv_bn_weights(w, b, scale, bias, mean, var, eps):
    """Fold ``BatchNormalization(conv(x, w) + b)`` into one convolution; returns ``(w, b)``.

    ``w`` is ``[C_out, C_in/group, *kernel]``, ``b`` is ``[C_out]`` or None and the batch-norm
    parameters are ``[C_out]``. BN computes ``(y - mean) / sqrt(var + eps) * scale + bias``,
    which is ``y * k + (bias - mean * k)`` with ``k = scale / sqrt(var + eps)``. The maths is
    done in float64 and the results keep ``w``'s dtype.
    """
    dtype = np.asarray(w).dtype
    k = np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    return fuse_conv_affine_weights(w, b, k, np.asarray(bias, np.float64)
                                    - np.asarray(mean, np.float64) * k, dtype)


def fuse_conv_affine_weights(w, b, scale, shift, dtype=None):
    """Fold ``conv(x, w) + b`` followed by ``* scale + shift`` (per output channel).

    ``scale`` and ``shift`` are ``[C_out]`` vectors; returns ``(w * scale, b * scale + shift)``
    in ``dtype`` (default: ``w``'s dtype).
    """
    w = np.asarray(w)
    dtype = dtype or w.dtype
    scale = np.asarray(scale, np.float64)
    b = np.zeros(w.shape[0]) if b is None else np.asarray(b, np.float64)
    new_w = w.astype(np.float64) * scale.reshape((-1,) + (1,) * (w.ndim - 1))
    new_b = b * scale + np.asarray(shift, np.float64)
    return new_w.astype(dtype), new_b.astype(dtype)


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
