"""Scaled dot-product attention: the internal ``FusedAttention`` op (``passes/fuse_attention.py``
makes it; ``kernels/attention.cu`` runs it on CUDA).

Each operand is read from its input tensor as a strided view: ``[offset, stride_b, stride_h,
stride_s, stride_d]`` in elements of the input's row-major storage gives element
``(b, h, s, d)``, so the Reshape/Transpose/Slice copies around an attention never run (Q, K and
V may be three views of one merged QKV tensor). The result ``[B, H, Sq, Dv]`` is written the
same way through ``out_view`` into a tensor of ``out_shape`` (e.g. ``[B, Sq, H * Dv]``).
"""
import numpy as np

from tx2_infer_core.ops.common import unsupported
from tx2_infer_core.ops.nn import Softmax

VIEW_FIELDS = 5  # offset, then the strides of batch, head, row, column


def view_index(view, shape):
    """The element indices a ``[offset, *strides]`` view reads over ``shape``."""
    index = np.full(shape, view[0], np.int64)
    for axis, (n, step) in enumerate(zip(shape, view[1:])):
        dims = [1] * len(shape)
        dims[axis] = n
        index = index + np.arange(n, dtype=np.int64).reshape(dims) * step
    return index


def _checked_index(name, view, shape, size):
    """``view_index`` of one operand, refused unless it is 5 ints reading inside ``size``."""
    if view is None or len(view) != VIEW_FIELDS:
        unsupported(f'{name}={view}: [offset, stride_b, stride_h, stride_s, stride_d] needed')
    index = view_index([int(v) for v in view], shape)
    if index.size and (index.min() < 0 or index.max() >= size):
        unsupported(f'{name}={list(view)} reaches outside its tensor of {size} elements')
    return index


def read_operand(x, view, shape, name='view'):
    """The ``shape`` ([B, H, S, D]) operand that ``view`` reads from ``x``."""
    return x.reshape(-1)[_checked_index(name, view, shape, x.size)]


def _dims(dims):
    if dims is None or len(dims) != 6 or min(int(d) for d in dims) < 1:
        unsupported(f'dims={dims}: [batch, heads, q_len, kv_len, head_dim, v_head_dim] of '
                    'positive ints needed')
    return [int(d) for d in dims]


def FusedAttention(q, k, v, mask=None, *, scale=1.0, dims=None, q_view=None, k_view=None,
                   v_view=None, out_view=None, out_shape=None):
    """``softmax(scale * Q @ K^T + mask) @ V`` over the last axis, per batch and head.

    ``dims`` = [B, H, Sq, Sk, D, Dv]; Q [B, H, Sq, D], K [B, H, Sk, D] (not transposed) and V
    [B, H, Sk, Dv] are read through ``q_view``, ``k_view``, ``v_view``; ``mask`` broadcasts to
    the scores [B, H, Sq, Sk]. The result goes through ``out_view`` into a new tensor of
    ``out_shape``, every element of which it must write exactly once.
    """
    b, h, sq, sk, d, dv = _dims(dims)
    qs = read_operand(q, q_view, (b, h, sq, d), 'q_view').astype(np.float32)
    ks = read_operand(k, k_view, (b, h, sk, d), 'k_view').astype(np.float32)
    vs = read_operand(v, v_view, (b, h, sk, dv), 'v_view').astype(np.float32)
    scores = np.matmul(qs, ks.swapaxes(-1, -2)) * np.float32(scale)
    if mask is not None:
        scores = scores + mask.astype(np.float32)
    if scores.shape != (b, h, sq, sk):
        unsupported(f'a mask of shape {mask.shape} that does not broadcast to the scores')
    result = np.matmul(Softmax(scores, axis=-1), vs)
    shape = tuple(int(n) for n in out_shape or ())
    size = int(np.prod(shape, dtype=np.int64))
    where = _checked_index('out_view', out_view, result.shape, size).reshape(-1)
    if size != where.size or np.unique(where).size != size:
        unsupported(f'out_view={out_view} does not write each element of {shape} once')
    out = np.empty(size, np.float32)
    out[where] = result.reshape(-1)
    return out.reshape(shape).astype(q.dtype, copy=False)
