"""Host emulations of the row kernels (``kernels/norm.cu``, ``arg.cu``, ``scan.cu``,
``softmax.cu``) and of ``pool2d`` (``kernels/pool.cu``, LpPool among its modes), for
``launch_emulator.run_launch``.

Each reads and writes exactly the elements its launch record names: a RowWalk's row r is
(r / (r2 r3), r / r3 % r2, r % r3), its element j (j / j2, j % j2), each index with its strides
(``kernels/rows.cuh``), so a wrong stride, offset or count in a lowering changes the result.
The maths is numpy's (FP32); the kernels' own maths is checked on the GPU. An int32 element
(``cuda/int32_values.py``) spans two halves of the emulated arena: its value in the first, NaN
in the second (``put_int32``).
"""
import numpy as np

from tx2_infer_core.cuda.lower_axis import ARG_MODES
from tx2_infer_core.cuda.lower_norm import NORM_MODES

NORM = {code: mode for mode, code in NORM_MODES.items()}
ARG = {code: op for op, code in ARG_MODES.items()}


def _at(memory, ref):
    """(buffer, first element) of an FP16 Ref."""
    return memory[ref.base], ref.offset // 2


def int32_at(first, offsets) -> np.ndarray:
    """Indices into an emulated arena of halves of the int32 elements at ``offsets`` from the
    one at half ``first``: an int32 element spans two halves, its value kept in the first."""
    return first + 2 * np.asarray(offsets, np.int64)


def put_int32(buffer, first, offsets, values):
    """Write int32 ``values`` (integers, truncated as the kernels store them) at element
    ``offsets`` from half ``first``; the second half of each gets NaN, so an FP16 read of
    int32 storage shows."""
    at = int32_at(first, offsets)
    buffer[at] = np.trunc(np.asarray(values, np.float64))
    buffer[at + 1] = np.nan


def _rows(w, s1, s2, s3):
    r, r2, r3 = np.arange(int(w['rows']), dtype=np.int64), int(w['r2']), int(w['r3'])
    q = r // r3
    return (q // r2) * int(s1) + (q % r2) * int(s2) + (r % r3) * int(s3)


def _elements(w, s1, s2):
    j = np.arange(int(w['n']), dtype=np.int64)
    return (j // int(w['j2'])) * int(s1) + (j % int(w['j2'])) * int(s2)


def walk_offsets(w, side) -> np.ndarray:
    """[rows, n] element offsets of tensor ``side`` ('x' or 'y') in RowWalk ``w``."""
    rows = _rows(w, *(w[side + k] for k in ('r1', 'r2', 'r3')))
    return rows[:, None] + _elements(w, w[side + 'j1'], w[side + 'j2'])[None, :]


def _param(memory, ref, w, strides):
    """[rows, n] of an FP32 parameter array at ``ref`` read with (r1, r2, r3, j1, j2)
    ``strides``."""
    idx = _rows(w, *strides[:3])[:, None] + _elements(w, *strides[3:])[None, :]
    raw = memory['weight_bytes']
    return np.frombuffer(raw, np.float32, int(idx.max()) + 1, ref.offset)[idx]


def norm_rows(memory, f):
    (src, x0), (dst, y0), w = _at(memory, f['x']), _at(memory, f['y']), f['w']
    x = src[x0 + walk_offsets(w, 'x')].astype(np.float32)
    mode, eps = NORM[int(f['mode'])], np.float32(f['eps'])
    if mode == 'meanvar':
        mean = x.mean(axis=1, keepdims=True)
        y = (x - mean) / np.sqrt(((x - mean) ** 2).mean(axis=1, keepdims=True) + eps)
    elif mode == 'rms':
        y = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps)
    else:
        norm = np.abs(x).sum(1, keepdims=True) if mode == 'l1' else \
            np.sqrt((x * x).sum(1, keepdims=True))
        with np.errstate(invalid='ignore', divide='ignore'):
            y = np.where(norm == 0, 0, x / norm)
    strides = [int(f[k]) for k in ('gr1', 'gr2', 'gr3', 'gj1', 'gj2')]
    if f['gamma'].base != 'null':
        y = y * _param(memory, f['gamma'], w, strides)
    if f['beta'].base != 'null':
        y = y + _param(memory, f['beta'], w, strides)
    dst[y0 + walk_offsets(w, 'y')] = y


def lrn(memory, f):
    (src, x0), (dst, y0), w = _at(memory, f['x']), _at(memory, f['y']), f['w']
    assert int(w['j2']) == int(w['n']), 'the channels are one dim'
    x = src[x0 + walk_offsets(w, 'x')].astype(np.float32)
    size, c = int(f['size']), int(w['n'])
    sq = np.pad(x * x, [(0, 0), ((size - 1) // 2, size // 2)])
    total = sum(sq[:, i:i + c] for i in range(size))
    base = np.float32(f['bias']) + np.float32(f['alpha']) / size * total
    dst[y0 + walk_offsets(w, 'y')] = x / base ** np.float32(f['beta'])


def arg_rows(memory, f):
    (src, x0), (dst, y0), w = _at(memory, f['x']), _at(memory, f['y']), f['w']
    x = src[x0 + walk_offsets(w, 'x')]
    op, n = ARG[int(f['mode'])], int(w['n'])
    fn = np.argmin if op == 'ArgMin' else np.argmax
    at = n - 1 - fn(x[:, ::-1], axis=1) if int(f['last']) else fn(x, axis=1)
    if op == 'Hardmax':
        dst[y0 + walk_offsets(w, 'y')] = (np.arange(n)[None, :] == at[:, None]).astype(float)
    elif int(f['y_i32']):
        put_int32(dst, y0, walk_offsets(w, 'y')[:, 0], at)
    else:
        dst[y0 + walk_offsets(w, 'y')[:, 0]] = at


def scan_rows(memory, f):
    (src, x0), (dst, y0), w = _at(memory, f['x']), _at(memory, f['y']), f['w']
    x = src[x0 + walk_offsets(w, 'x')].astype(np.float32)
    prod, reverse = int(f['prod']), int(f['reverse'])
    x = x[:, ::-1] if reverse else x
    out = np.cumprod(x, axis=1) if prod else np.cumsum(x, axis=1)
    if int(f['exclusive']):
        out = np.concatenate([np.full((len(x), 1), float(prod)), out[:, :-1]], axis=1)
    dst[y0 + walk_offsets(w, 'y')] = out[:, ::-1] if reverse else out


def softmax(memory, f):
    (src, x0), (dst, y0), w = _at(memory, f['x']), _at(memory, f['y']), f['w']
    x = src[x0 + walk_offsets(w, 'x')].astype(np.float32)
    v = x - x.max(axis=1, keepdims=True)
    lsum = np.log(np.exp(v).sum(axis=1, keepdims=True))
    dst[y0 + walk_offsets(w, 'y')] = v - lsum if int(f['log_softmax']) else np.exp(v - lsum)


def pool2d(memory, f):
    """Max, average and Lp windows over NHWC views, as the kernel indexes them."""
    (src, x0), (dst, y0) = _at(memory, f['x']), _at(memory, f['y'])
    n_, h_, w_, c_, p_, q_ = (int(f[k]) for k in ('N', 'H', 'W', 'C', 'P', 'Q'))
    lp, avg = int(f['lp']), int(f['is_avg'])
    n, oh, ow, c = np.meshgrid(*(np.arange(k) for k in (n_, p_, q_, c_)), indexing='ij')
    acc = np.zeros(n.shape) if lp or avg else np.full(n.shape, -np.inf)
    for r in range(int(f['R'])):
        ih = oh * int(f['sh']) - int(f['ph']) + r * int(f['dh'])
        for s in range(int(f['S'])):
            iw = ow * int(f['sw']) - int(f['pw']) + s * int(f['dw'])
            inside = (ih >= 0) & (ih < h_) & (iw >= 0) & (iw < w_)
            at = ((n * h_ + np.clip(ih, 0, h_ - 1)) * w_ + np.clip(iw, 0, w_ - 1))
            v = src[x0 + at * int(f['x_pix']) + int(f['x_off']) + c]
            assert not avg, 'average windows: emulated elsewhere'
            acc = np.where(inside, acc + np.abs(v) ** lp if lp else np.fmax(acc, v), acc)
    if lp:
        acc = acc ** (1.0 / lp)
    m = (n * p_ + oh) * q_ + ow
    dst[y0 + m * int(f['y_pix']) + int(f['y_off']) + c] = acc


KERNELS = {'norm_rows': norm_rows, 'lrn': lrn, 'arg_rows': arg_rows, 'scan_rows': scan_rows,
           'softmax': softmax, 'pool2d': pool2d}
