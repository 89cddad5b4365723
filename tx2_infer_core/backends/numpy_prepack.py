"""Prepared convolutions for the numpy backend: build once, run many.

At ``prepare`` each 2-D Conv / FusedConv (group 1, float32, constant weights) becomes a
``PreparedConv``: the weights are laid out once as (M, kh * kw * C) rows, a zero-bordered copy
of the input and an im2col buffer are allocated once, and every strided copy is fixed as a
(destination, source) view pair. A run then copies the input into the bordered buffer, and per
band of output rows fills the columns, multiplies straight into the output's arena view and
applies bias, residual and activation in place while the band is still in cache::

    x view ──copy──▶ bordered x ──im2col band──▶ cols ──matmul──▶ y band (arena) ──epilogue──┐
                                                                   ▲                         │
                                                                   └─────────── next band ◀──┘

The op functions in ``ops/`` stay the plain reference (the ONNX conformance tests run them);
only the summation order of the matmul differs, so results agree to float32 rounding.
"""
import itertools

import numpy as np

from tx2_infer_core.ops.conv import out_sizes, resolve_pads
from tx2_infer_core.ops.fused import activation_inplace

BAND_BYTES = 2 << 20  # im2col columns per matmul: sized to stay in L2/L3 with the output band


def flat(view, shape):
    """``view`` reshaped without a copy (a copy would silently detach it from the arena)."""
    return np.reshape(view, shape, copy=False)


class PreparedConv:
    """One conv node bound to its arena views; ``run()`` computes it in place."""

    def __init__(self, node, x, w, b, residual, y):
        attrs = node.attrs
        kernel, nd = w.shape[2:], 2
        strides = list(attrs.get('strides') or [1] * nd)
        dilations = list(attrs.get('dilations') or [1] * nd)
        pads = resolve_pads(x.shape[2:], kernel, strides, dilations, attrs.get('pads'),
                            attrs.get('auto_pad', 'NOTSET'))
        self.x, self.residual, self.y = x, residual, y
        self.act = {k: attrs[k] for k in ('alpha', 'beta', 'clip_min', 'clip_max')
                    if k in attrs}
        self.activation = attrs.get('activation', '')
        self.after_act = bool(attrs.get('residual_after_act', 0))
        self.pointwise = w.shape[2:] == (1, 1) and strides == [1, 1]
        self.w_rows, self.bias = self._weight_rows(w, b)
        self.xp = self._bordered(pads)
        self.bands = self._bands(kernel, strides, dilations)

    def _weight_rows(self, w, b):
        """(M, kh * kw * C) rows matching the im2col columns, and the bias left to add.

        With im2col the bias rides in the matmul as one more weight column against a row of
        ones under the columns (no pass over the output); a pointwise conv reads x in place,
        so it adds the bias afterwards.
        """
        rows = np.moveaxis(w, 1, -1).reshape(w.shape[0], -1)
        if b is None:
            return np.ascontiguousarray(rows), None
        if self.pointwise:
            return np.ascontiguousarray(rows), b.reshape(-1, 1)
        return np.concatenate([rows, b.reshape(-1, 1)], axis=1), None

    def _bordered(self, pads):
        """Zero-bordered input buffer and the view of its interior (None without pads)."""
        if not any(pads):
            self.interior = None
            return self.x
        (n, c, h, w), (top, left, bottom, right) = self.x.shape, pads
        xp = np.zeros((n, c, top + h + bottom, left + w + right), self.x.dtype)
        self.interior = xp[:, :, top:top + h, left:left + w]
        return xp

    def _bands(self, kernel, strides, dilations):
        """Per image and band of output rows: im2col copies, columns, output, residual."""
        n, m = self.y.shape[:2]
        out_h, out_w = self.y.shape[2:]
        assert list(out_sizes(self.xp.shape[2:], kernel, strides, dilations)) == [out_h, out_w]
        k = self.w_rows.shape[1]
        step = max(1, BAND_BYTES // (k * out_w * self.y.itemsize))
        pointwise = self.pointwise
        cols = None if pointwise else np.ones((k, step * out_w), self.y.dtype)
        scratch = np.empty((m, step * out_w), self.y.dtype)
        bands = []
        for i, first in itertools.product(range(n), range(0, out_h, step)):
            rows = slice(first, min(first + step, out_h))
            size = (rows.stop - rows.start) * out_w
            if pointwise:
                copies, band_cols = [], flat(self.xp[i, :, rows], (-1, size))
            else:
                band_cols = cols[:, :size]
                copies = self._im2col_pairs(self.xp[i], band_cols, kernel, strides, dilations,
                                            rows)
            residual = None if self.residual is None else \
                flat(self.residual[i, :, rows], (m, size))
            bands.append((copies, band_cols, flat(self.y[i, :, rows], (m, size)), residual,
                          scratch[:, :size]))
        return bands

    @staticmethod
    def _im2col_pairs(xp, cols, kernel, strides, dilations, rows):
        """(destination, source) views: cols row block j * C.. holds kernel offset j."""
        c = xp.shape[0]
        band = (rows.stop - rows.start, cols.shape[1] // (rows.stop - rows.start))
        pairs = []
        for j, (oi, oj) in enumerate(itertools.product(*map(range, kernel))):
            top = oi * dilations[0] + rows.start * strides[0]
            left = oj * dilations[1]
            source = xp[:, top:top + (band[0] - 1) * strides[0] + 1:strides[0],
                        left:left + (band[1] - 1) * strides[1] + 1:strides[1]]
            pairs.append((flat(cols[j * c:(j + 1) * c], (c,) + band), source))
        return pairs

    def run(self) -> None:
        """y = act(conv(x, w) + b + residual) (or the residual after act), in y's view."""
        if self.interior is not None:
            self.interior[...] = self.x
        for copies, cols, out, residual, scratch in self.bands:
            for dst, src in copies:
                np.copyto(dst, src)
            np.matmul(self.w_rows, cols, out=out)
            if self.bias is not None:
                out += self.bias
            if residual is not None and not self.after_act:
                out += residual
            activation_inplace(out, scratch, self.activation, **self.act)
            if residual is not None and self.after_act:
                out += residual


def prepare_conv(node, args, outs, graph):
    """A ``PreparedConv`` for ``node`` when it qualifies, else None (the reference op runs)."""
    if node.op not in ('Conv', 'FusedConv') or len(outs) != 1 or outs[0] is None:
        return None
    x, w, b, residual = (list(args) + [None] * 4)[:4]
    y = outs[0]
    weights = [name for name in node.inputs[1:3] if name]
    if not all(name in graph.weights for name in weights) or x is None or w.ndim != 4:
        return None
    kernel = node.attrs.get('kernel_shape')
    if kernel and list(kernel) != list(w.shape[2:]):
        return None
    if node.attrs.get('group', 1) != 1 or node.attrs.get('auto_pad', 'NOTSET') not in (
            'NOTSET', 'VALID'):
        return None
    arrays = [a for a in (x, w, b, residual, y) if a is not None]
    if any(a.dtype != np.float32 or not a.flags.c_contiguous for a in arrays):
        return None
    if any(np.may_share_memory(y, a) for a in (x, residual) if a is not None):
        return None
    return PreparedConv(node, x, w, b, residual, y)
