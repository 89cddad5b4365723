"""Prepared convolutions (and max pools) for the numpy backend: build once, run many.

At ``prepare`` each 2-D Conv / FusedConv (group 1, float32, constant weights) becomes a
``PreparedConv``: the weights are laid out once as (M, kh * kw * C) rows (plus the bias as one
more column), a zero-bordered copy of the input is allocated once, and every strided copy is
fixed as a (destination, source) view pair. A run copies the input into the bordered buffer,
then per band of output rows fills the columns, multiplies straight into the output's arena
view and applies residual and activation in place while the band is still in cache::

    x view ──copy──▶ bordered x ──im2col band──▶ cols ──matmul──▶ y band (arena) ──epilogue

Bands are independent, so ``workers`` threads (the caller's and ``workers - 1`` from a pool)
run them side by side, each with its own columns and scratch from a ``ConvWorkspace`` shared by
all convs (they run one after another). numpy releases the GIL in copies, matmul and ufuncs, so
the copies and the epilogue use every core too, not only the BLAS part; the backend holds BLAS
itself to one thread meanwhile. On small images the workers split output channels instead.

The op functions in ``ops/`` stay the plain reference (the ONNX conformance tests run them);
only the summation order of the matmul differs, so results agree to float32 rounding.
"""
import itertools

import numpy as np

from tx2_infer_core.ops.conv import out_sizes, resolve_pads
from tx2_infer_core.ops.fused import activation_inplace, post_affine_inplace
from tx2_infer_core.ops.pool import pool_geometry, sliding_max

BAND_BYTES = 2 << 20  # im2col columns per matmul: sized to stay in L2/L3 with the output band
# Up to this many output pixels the workers split channels, not rows (measured on 2 cores: row
# split wins down to 13x13; on 7x7 each worker's rows are too few for the matmul).
CHANNEL_SPLIT_PIXELS = 100


def flat(view, shape):
    """``view`` reshaped without a copy (a copy would silently detach it from the arena)."""
    return np.reshape(view, shape, copy=False)


class ConvWorkspace:
    """Per-worker im2col columns and epilogue scratch (float32), sized for the largest conv."""

    def __init__(self, convs, workers):
        self.workers = workers
        cols = max([conv.cols_elems for conv in convs], default=0)
        scratch = max([conv.scratch_elems for conv in convs], default=0)
        self.cols = [np.empty(cols, np.float32) for _ in range(workers)]
        self.scratch = [np.empty(scratch, np.float32) for _ in range(workers)]


class PreparedConv:
    """One conv node bound to its arena views; ``run()`` computes it in place.

    Geometry is fixed at construction; ``bind(workspace, pool)`` then makes the band views.
    """

    def __init__(self, node, x, w, b, residual, y, workers=1):
        attrs = node.attrs
        self.kernel = w.shape[2:]
        self.strides = list(attrs.get('strides') or [1, 1])
        self.dilations = list(attrs.get('dilations') or [1, 1])
        pads = resolve_pads(x.shape[2:], self.kernel, self.strides, self.dilations,
                            attrs.get('pads'), attrs.get('auto_pad', 'NOTSET'))
        self.x, self.residual, self.y = x, residual, y
        self.act = {k: attrs[k] for k in ('alpha', 'beta', 'clip_min', 'clip_max')
                    if k in attrs}
        self.activation = attrs.get('activation', '')
        self.after_act = bool(attrs.get('residual_after_act', 0))
        self.post = (attrs.get('post_scale', 1.0), attrs.get('post_shift', 0.0))
        self.pointwise = w.shape[2:] == (1, 1) and self.strides == [1, 1]
        self.w_rows, self.bias = self._weight_rows(w, b)
        self.xp = self._bordered(pads)
        out_h, out_w = y.shape[2:]
        assert out_sizes(self.xp.shape[2:], self.kernel, self.strides,
                         self.dilations) == [out_h, out_w]
        rows = max(1, BAND_BYTES // (self.w_rows.shape[1] * out_w * y.itemsize))
        self.split_channels = workers > 1 and out_h * out_w <= CHANNEL_SPLIT_PIXELS
        if not self.split_channels:
            rows = min(rows, -(-out_h // workers))
        self.step = rows
        band = self.step * out_w
        self.cols_elems = 0 if self.pointwise else self.w_rows.shape[1] * band
        self.scratch_elems = y.shape[1] * band
        self.stages, self.pool = [], None

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

    def bind(self, workspace, pool=None):
        """Stages of band views into the arena and ``workspace``.

        A stage is (copies for the calling thread, one task list per worker). Row split: one
        stage, band j goes to worker j % workers with its own im2col copies. Channel split
        (small images, where row bands would be tiny): per band, the calling thread fills the
        columns, then each worker multiplies its share of the output channels.
        """
        n, m, out_h, out_w = self.y.shape
        workers, self.pool = workspace.workers, pool
        self.stages = [] if self.split_channels else [([], [[] for _ in range(workers)])]
        bands = itertools.product(range(n), range(0, out_h, self.step))
        for j, (i, first) in enumerate(bands):
            rows = slice(first, min(first + self.step, out_h))
            size = (rows.stop - rows.start) * out_w
            worker = 0 if self.split_channels else j % workers
            copies, cols = self._columns(workspace.cols[worker], i, rows, size)
            out = flat(self.y[i, :, rows], (m, size))
            residual = None if self.residual is None else \
                flat(self.residual[i, :, rows], (m, size))
            if not self.split_channels:
                scratch = flat(workspace.scratch[worker][:m * size], (m, size))
                task = (copies, self.w_rows, self.bias, cols, out, residual, scratch)
                self.stages[0][1][worker].append(task)
                continue
            tasks = []
            for w, part in enumerate(channel_parts(m, workers)):
                scratch = flat(workspace.scratch[w][:(part.stop - part.start) * size], (-1, size))
                bias = None if self.bias is None else self.bias[part]
                tasks.append([([], self.w_rows[part], bias, cols, out[part],
                               None if residual is None else residual[part], scratch)])
            self.stages.append((copies, tasks))

    def _columns(self, buffer, i, rows, size):
        """(im2col copies, columns) of image i's output rows; pointwise reads x in place."""
        if self.pointwise:
            return [], flat(self.xp[i, :, rows], (-1, size))
        k = self.w_rows.shape[1]
        cols = flat(buffer[:k * size], (k, size))
        return self._im2col_pairs(self.xp[i], cols, rows), cols

    def _im2col_pairs(self, xp, cols, rows):
        """(destination, source) pairs: cols row block j * C.. holds kernel offset j; with a
        bias column in the weights the last row is ones (refilled: the buffer is shared)."""
        c, (sh, sw), (dh, dw) = xp.shape[0], self.strides, self.dilations
        band = (rows.stop - rows.start, cols.shape[1] // (rows.stop - rows.start))
        pairs = []
        for j, (oi, oj) in enumerate(itertools.product(*map(range, self.kernel))):
            top, left = oi * dh + rows.start * sh, oj * dw
            source = xp[:, top:top + (band[0] - 1) * sh + 1:sh,
                        left:left + (band[1] - 1) * sw + 1:sw]
            pairs.append((flat(cols[j * c:(j + 1) * c], (c,) + band), source))
        if cols.shape[0] > c * len(pairs):
            pairs.append((cols[-1], np.float32(1)))
        return pairs

    def run(self) -> None:
        """y = act(conv(x, w) + b + residual) (or the residual after act), in y's view."""
        if self.interior is not None:
            self.interior[...] = self.x
        for copies, work in self.stages:
            for dst, src in copies:
                np.copyto(dst, src)
            others = [self.pool.submit(self._run_tasks, tasks) for tasks in work[1:]]
            self._run_tasks(work[0])      # the calling thread is worker 0
            for future in others:
                future.result()

    def _run_tasks(self, tasks) -> None:
        for copies, w_rows, bias, cols, out, residual, scratch in tasks:
            for dst, src in copies:
                np.copyto(dst, src)
            np.matmul(w_rows, cols, out=out)
            if bias is not None:
                out += bias
            if residual is not None and not self.after_act:
                out += residual
            activation_inplace(out, scratch, self.activation, **self.act)
            post_affine_inplace(out, *self.post)
            if residual is not None and self.after_act:
                out += residual


def channel_parts(m, workers, align=16):
    """``workers`` slices splitting range(m) into near-equal parts (bounds multiples of align)."""
    bounds = [min(m, round(m * w / workers / align) * align) for w in range(workers + 1)]
    bounds[-1] = m
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


def prepare_conv(node, args, outs, graph, workers=1):
    """A ``PreparedConv`` for ``node`` when it qualifies, else None (the reference op runs)."""
    if node.op not in ('Conv', 'FusedConv') or len(outs) != 1 or outs[0] is None:
        return None
    if node.attrs.get('activation') == 'PRelu':  # its slope input: the reference op runs it
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
    return PreparedConv(node, x, w, b, residual, y, workers)


class PreparedMaxPool:
    """A MaxPool that needs no padding, written straight into its arena view; the workers
    split the channels."""

    def __init__(self, x, y, geometry, workers=1, pool=None):
        self.geometry, self.pool = geometry, pool
        self.tasks = [(x[:, part], y[:, part]) for part in channel_parts(x.shape[1], workers, 1)]

    def run(self) -> None:
        """y = max over each window of x."""
        others = [self.pool.submit(self._run_part, *task) for task in self.tasks[1:]]
        self._run_part(*self.tasks[0])
        for future in others:
            future.result()

    def _run_part(self, x, y) -> None:
        sliding_max(x, *self.geometry, out=y)


def prepare_max_pool(node, args, outs, workers=1, pool=None):
    """A ``PreparedMaxPool`` for a float32 2-D MaxPool without padding, else None."""
    if node.op != 'MaxPool' or len(outs) != 1 or outs[0] is None or args[0] is None:
        return None
    x, y, attrs = args[0], outs[0], node.attrs
    if x.ndim != 4 or x.dtype != np.float32 or np.may_share_memory(x, y):
        return None
    kernel = list(attrs['kernel_shape'])
    strides = list(attrs.get('strides') or [1, 1])
    dilations = list(attrs.get('dilations') or [1, 1])
    pads = pool_geometry(x.shape[2:], kernel, strides, dilations, attrs.get('pads'),
                         attrs.get('auto_pad', 'NOTSET'), attrs.get('ceil_mode', 0))
    if any(sum(pads, [])) or out_sizes(x.shape[2:], kernel, strides, dilations) != \
            list(y.shape[2:]):
        return None
    return PreparedMaxPool(x, y, (kernel, strides, dilations), workers, pool)
