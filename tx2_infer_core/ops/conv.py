"""Conv and ConvTranspose (N-d) as pure numpy functions: im2col views + one matmul per group.

The window helpers here are shared with pooling. Everything stays in the input's dtype.
"""
import itertools

import numpy as np
from numpy.lib.stride_tricks import as_strided

from tx2_infer_core.ops.common import unsupported


def same_pads(sizes, kernel, strides, dilations, auto_pad):
    """Explicit [begins..., ends...] pads for auto_pad SAME_UPPER / SAME_LOWER."""
    begins, ends = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begins.append(small if auto_pad == 'SAME_UPPER' else big)
        ends.append(big if auto_pad == 'SAME_UPPER' else small)
    return begins + ends


def resolve_pads(sizes, kernel, strides, dilations, pads, auto_pad):
    """The [begins..., ends...] pads ONNX means by ``pads`` and ``auto_pad``."""
    if auto_pad in ('SAME_UPPER', 'SAME_LOWER'):
        return same_pads(sizes, kernel, strides, dilations, auto_pad)
    if auto_pad == 'VALID':
        return [0] * (2 * len(sizes))
    if auto_pad != 'NOTSET':
        unsupported(f"auto_pad='{auto_pad}'")
    return list(pads) if pads else [0] * (2 * len(sizes))


def pad_spatial(x, begins, ends, value=0.0):
    """x (N, C, *spatial) padded with ``value`` on the spatial axes (no copy when all zero)."""
    if not any(begins) and not any(ends):
        return x
    widths = [(0, 0), (0, 0)] + list(zip(begins, ends))
    return np.pad(x, widths, mode='constant', constant_values=value)


def out_sizes(sizes, kernel, strides, dilations):
    """Output sizes of a valid (already padded) window sweep."""
    return [(n - (k - 1) * d - 1) // s + 1
            for n, k, s, d in zip(sizes, kernel, strides, dilations)]


def window_view(xp, kernel, strides, dilations):
    """Read-only view (N, C, *kernel, *out) of the windows of padded ``xp`` (no copy)."""
    out = out_sizes(xp.shape[2:], kernel, strides, dilations)
    spatial = xp.strides[2:]
    shape = xp.shape[:2] + tuple(kernel) + tuple(out)
    steps = (xp.strides[:2] + tuple(st * d for st, d in zip(spatial, dilations))
             + tuple(st * s for st, s in zip(spatial, strides)))
    return as_strided(xp, shape, steps, writeable=False)


def window_slices(xp, kernel, strides, dilations):
    """Yield (kernel offset, strided slice of xp) per kernel position; the last len(kernel)
    axes of ``xp`` are the spatial ones."""
    out = out_sizes(xp.shape[-len(kernel):], kernel, strides, dilations)
    for offset in itertools.product(*(range(k) for k in kernel)):
        index = tuple(slice(o * d, o * d + (n - 1) * s + 1, s)
                      for o, d, n, s in zip(offset, dilations, out, strides))
        yield offset, xp[(Ellipsis,) + index]


def im2col(xp, kernel, strides, dilations, rows):
    """Columns (prod(kernel) * C, band size) of one padded image xp (C, *S), offset-major,
    for the output rows ``rows`` = (first, stop) of the first spatial axis.

    One strided copy per kernel offset, no per-pixel work.
    """
    out = out_sizes(xp.shape[1:], kernel, strides, dilations)
    first, stop = rows
    band = [stop - first] + out[1:]
    cols = np.empty((int(np.prod(kernel)), xp.shape[0]) + tuple(band), dtype=xp.dtype)
    for j, offset in enumerate(itertools.product(*(range(k) for k in kernel))):
        starts = [o * d for o, d in zip(offset, dilations)]
        starts[0] += first * strides[0]
        index = tuple(slice(b, b + (n - 1) * s + 1, s) for b, n, s in zip(starts, band, strides))
        cols[j] = xp[(slice(None),) + index]
    return cols.reshape(-1, int(np.prod(band)))


COLS_BUDGET = 4 << 20  # bytes of im2col columns per matmul: keeps them in cache
BAND_BUDGET = 1 << 20  # bytes of input rows per matmul in the stride-1 path


def conv2d_shifted(xp, w, dilations, y):
    """Stride-1 2-D conv of one padded image xp (C, Hp + 1, Wp) into y (M, out_h, Wp).

    Over the flattened image, kernel offset (i, j) is a shift by i * dh * Wp + j * dw, so each
    offset is one matmul of an (M, C) weight slice with a strided (C, rows * Wp) view: no
    im2col copy. Outputs cover the padded width (the caller crops); the spare bottom row
    of xp keeps the last shifted view in bounds.
    """
    c, wp = xp.shape[0], xp.shape[2]
    m, out_h = y.shape[:2]
    flat = xp.reshape(c, -1)
    taps = np.ascontiguousarray(w.transpose(2, 3, 0, 1))  # (kh, kw, M, C)
    step = max(1, BAND_BUDGET // (c * wp * xp.itemsize))
    spare = np.empty((m, step * wp), dtype=y.dtype)
    for first in range(0, out_h, step):
        size = (min(first + step, out_h) - first) * wp
        acc = y[:, first:first + step].reshape(m, size)
        for j, (i, k) in enumerate(itertools.product(*map(range, w.shape[2:]))):
            start = (first + i * dilations[0]) * wp + k * dilations[1]
            part = flat[:, start:start + size]
            if j == 0:
                np.matmul(taps[i, k], part, out=acc)
            else:
                acc += np.matmul(taps[i, k], part, out=spare[:, :size])


def shifted_pays(channels, sizes) -> bool:
    """Shifted matmuls beat im2col only with enough channels per tap (a K of 3 starves BLAS)
    and a large enough image (on 13x13 the padded width wastes 15% and the matmuls are tiny);
    measured on YOLOv3-tiny / YOLOv8 layer shapes, 2-core x86."""
    return channels >= 16 and int(np.prod(sizes)) > 400


def _conv2d_stride1(x, w, group, dilations, pads):
    """Stride-1 2-D grouped conv through ``conv2d_shifted``; returns a cropped view."""
    xp = pad_spatial(x, pads[:2], [pads[2] + 1, pads[3]])
    (n, c), (m, _, kh, kw) = x.shape[:2], w.shape
    out_h = xp.shape[2] - 1 - (kh - 1) * dilations[0]
    out_w = xp.shape[3] - (kw - 1) * dilations[1]
    y = np.empty((n, m, out_h, xp.shape[3]), dtype=np.result_type(x, w))
    cg, mg = c // group, m // group
    for i, g in itertools.product(range(n), range(group)):
        conv2d_shifted(xp[i, g * cg:(g + 1) * cg], w[g * mg:(g + 1) * mg], dilations,
                       y[i, g * mg:(g + 1) * mg])
    return y[..., :out_w]


def conv_nd(x, w, group=1, strides=None, dilations=None, pads=None):
    """Cross-correlation of x (N, C, *S) with w (M, C/group, *K); explicit pads."""
    nd = x.ndim - 2
    kernel = w.shape[2:]
    strides, dilations = strides or [1] * nd, dilations or [1] * nd
    pads = pads or [0] * (2 * nd)
    n, c, m = x.shape[0], x.shape[1], w.shape[0]
    pointwise = all(k == 1 for k in kernel) and all(s == 1 for s in strides)
    if nd == 2 and list(strides) == [1, 1] and not pointwise and not (group == c == m) \
            and shifted_pays(c // group, x.shape[2:]):
        return _conv2d_stride1(x, w, group, dilations, pads)
    xp = pad_spatial(x, pads[:nd], pads[nd:])
    if group == c and m == c:
        return _depthwise(xp, w, strides, dilations)
    cg, mg = c // group, m // group
    w_rows = np.moveaxis(w, 1, -1).reshape(m, -1)  # (M, *K, C/group) matches the columns
    out = out_sizes(xp.shape[2:], kernel, strides, dilations)
    y = np.empty((n, m, out[0], int(np.prod(out[1:]))), dtype=np.result_type(x, w))
    row_bytes = w_rows.shape[1] * y.shape[3] * xp.itemsize
    step = out[0] if pointwise else max(1, COLS_BUDGET // row_bytes)
    for i, g, first in itertools.product(range(n), range(group), range(0, out[0], step)):
        xg, rows = xp[i, g * cg:(g + 1) * cg], (first, min(first + step, out[0]))
        cols = xg.reshape(cg, -1) if pointwise else im2col(xg, kernel, strides, dilations, rows)
        target = y[i, g * mg:(g + 1) * mg, rows[0]:rows[1]].reshape(mg, -1)
        np.matmul(w_rows[g * mg:(g + 1) * mg], cols, out=target)
    return y.reshape((n, m) + tuple(out))


def _depthwise(xp, w, strides, dilations):
    """One filter per channel: accumulate kernel-offset slices times per-channel weights."""
    kernel = w.shape[2:]
    extra = (1,) * len(kernel)
    y = None
    for offset, part in window_slices(xp, kernel, strides, dilations):
        term = part * w[(slice(None), 0) + offset].reshape((1, -1) + extra)
        y = term if y is None else np.add(y, term, out=y)
    return y


def conv_transpose_nd(x, w, group=1, strides=None, dilations=None, output_padding=None):
    """Full (uncropped) transposed convolution: x (N, C, *S), w (C, M/group, *K)."""
    nd = x.ndim - 2
    kernel, sizes = w.shape[2:], x.shape[2:]
    strides, dilations = strides or [1] * nd, dilations or [1] * nd
    output_padding = output_padding or [0] * nd
    n, c = x.shape[:2]
    cg, mg = c // group, w.shape[1]
    full = [s * (i - 1) + (k - 1) * d + 1 + p
            for s, i, k, d, p in zip(strides, sizes, kernel, dilations, output_padding)]
    y = np.zeros([n, mg * group] + full, dtype=np.result_type(x, w))
    for g in range(group):
        wg = w[g * cg:(g + 1) * cg].reshape(cg, -1)
        cols = np.matmul(wg.T, x[:, g * cg:(g + 1) * cg].reshape(n, cg, -1))
        cols = cols.reshape((n, mg) + tuple(kernel) + tuple(sizes))
        for offset in itertools.product(*(range(k) for k in kernel)):
            index = tuple(slice(o * d, o * d + (i - 1) * s + 1, s)
                          for o, d, i, s in zip(offset, dilations, sizes, strides))
            y[(slice(None), slice(g * mg, (g + 1) * mg)) + index] += cols[
                (slice(None), slice(None)) + offset]
    return y


def Conv(x, w, b=None, *, auto_pad='NOTSET', dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None):
    """ONNX Conv: cross-correlation plus optional per-channel bias."""
    nd = x.ndim - 2
    strides, dilations = strides or [1] * nd, dilations or [1] * nd
    if kernel_shape and list(kernel_shape) != list(w.shape[2:]):
        unsupported(f'kernel_shape={kernel_shape} differs from weight shape {w.shape}')
    if x.dtype.kind != 'f' or w.dtype.kind != 'f':
        unsupported(f'input dtype {x.dtype}, weight dtype {w.dtype} (Conv is float only)')
    if group < 1 or x.shape[1] % group or w.shape[0] % group or w.shape[1] * group != x.shape[1]:
        unsupported(f'group={group} with {x.shape[1]} input channels and weight shape '
                    f'{w.shape}: group must divide the input and output channels, and the '
                    'weight must have input channels / group channels')
    pads = resolve_pads(x.shape[2:], w.shape[2:], strides, dilations, pads, auto_pad)
    y = conv_nd(x, w, group, strides, dilations, pads)
    if b is not None:
        y += b.reshape((1, -1) + (1,) * nd)
    return y.astype(x.dtype, copy=False)


def _transpose_pads(x, w, strides, dilations, output_padding, output_shape, pads, auto_pad):
    """Begin pads and output sizes of ConvTranspose (ONNX rules for output_shape/auto_pad)."""
    nd = x.ndim - 2
    full = [s * (i - 1) + (k - 1) * d + 1 + p for s, i, k, d, p in
            zip(strides, x.shape[2:], w.shape[2:], dilations, output_padding)]
    if pads and auto_pad == 'NOTSET':
        sizes = output_shape or [f - b - e for f, b, e in zip(full, pads[:nd], pads[nd:])]
        return list(pads[:nd]), list(sizes)
    if auto_pad not in ('NOTSET', 'SAME_UPPER', 'SAME_LOWER', 'VALID'):
        unsupported(f"auto_pad='{auto_pad}'")
    if output_shape:
        sizes = list(output_shape)[-nd:]
    elif auto_pad in ('SAME_UPPER', 'SAME_LOWER'):
        sizes = [i * s for i, s in zip(x.shape[2:], strides)]
    else:
        return [0] * nd, full
    totals = [f - o for f, o in zip(full, sizes)]
    upper = auto_pad == 'SAME_UPPER'
    return [t // 2 if upper else t - t // 2 for t in totals], sizes


def ConvTranspose(x, w, b=None, *, auto_pad='NOTSET', dilations=None, group=1,
                  kernel_shape=None, output_padding=None, output_shape=None, pads=None,
                  strides=None):
    """ONNX ConvTranspose (a.k.a. deconvolution), with output_shape / auto_pad handling."""
    nd = x.ndim - 2
    strides, dilations = strides or [1] * nd, dilations or [1] * nd
    output_padding = output_padding or [0] * nd
    begins, sizes = _transpose_pads(x, w, strides, dilations, output_padding, output_shape,
                                    pads, auto_pad)
    full = conv_transpose_nd(x, w, group, strides, dilations, output_padding)
    grow = [max(b + s - f, 0) for b, s, f in zip(begins, sizes, full.shape[2:])]
    full = pad_spatial(full, [0] * nd, grow)
    y = full[(Ellipsis,) + tuple(slice(b, b + s) for b, s in zip(begins, sizes))]
    if b is not None:
        y = y + b.reshape((1, -1) + (1,) * nd)
    return np.ascontiguousarray(y).astype(x.dtype, copy=False)
