"""Lowering of ONNX LSTM to two launches: the input projection ``X W^T + Wb + Rb`` of every
step as one 1x1-convolution GEMM (``lower_conv.linear_launch``: tensor cores where the arch
has them), then ``kernels/lstm.cu``'s ``lstm_recurrent``, which loops over time inside the
kernel (a CTA per batch entry and direction, a thread per hidden unit).

The four gates of a hidden unit are interleaved ([unit][i, o, f, c]) in the projection's
output and in R, so a thread reads its gates as one 8-byte word and consecutive threads read
consecutive words. The projection's output (FP16 ``[rows][dirs][H][4]``) is scratch memory
in the weight buffer, as the convolutions' split-K workspace is.
"""
import numpy as np

from tx2_infer_core.cuda.launch import NULL, Launch, Slot, row_major
from tx2_infer_core.cuda.lower_conv import linear_launch
from tx2_infer_core.cuda.params import PTR
from tx2_infer_core.ops.recurrent import DIRECTIONS, lstm_refusal

MAX_HIDDEN = 1024                   # LSTM_MAX_HIDDEN of kernels/lstm.cu: a thread a unit
MAX_PROJECTION_BYTES = 64 << 20     # the FP16 input projection of all steps (scratch)
LSTM = np.dtype([(n, PTR) for n in ('xw', 'r', 'h0', 'c0', 'lens', 'y', 'y_h', 'y_c')]
                + [(n, 'i4') for n in ('seq', 'dirs', 'H', 'reverse')]
                + [(n, 'i8') for n in ('x_t', 'x_b', 'y_t', 'y_d', 'y_b', 's_d', 's_b')],
                align=True)


def interleave_gates(a, hidden) -> np.ndarray:
    """``a`` [dirs, 4H, ...] (rows g * H + unit, gates i, o, f, c) -> [dirs, H, 4, ...]."""
    return a.reshape((a.shape[0], 4, hidden) + a.shape[2:]).swapaxes(1, 2)


def lstm_weights(w, r, b=None) -> tuple:
    """The kernels' LSTM weights from ONNX W [dirs, 4H, in], R [dirs, 4H, H], B [dirs, 8H]:
    (projection weights [dirs * H * 4, in], its bias Wb + Rb [dirs * H * 4], recurrence
    weights [dirs, k, unit, 4]), gates interleaved per unit."""
    dirs, hidden = r.shape[0], r.shape[-1]
    w_nk = interleave_gates(w, hidden).reshape(dirs * hidden * 4, -1)
    bias = np.zeros((dirs, 4 * hidden), np.float32) if b is None else \
        b[:, :4 * hidden] + b[:, 4 * hidden:]
    r_kug = interleave_gates(r, hidden).transpose(0, 3, 1, 2)
    return w_nk, interleave_gates(bias, hidden).reshape(-1), np.ascontiguousarray(r_kug)


def _weights(lc, node, names) -> list:
    """W, R, B (None when omitted) as float32 constants; refused unless constant and no
    nonzero peephole P."""
    w, r, b, p = names
    if not all(lc.is_const(n) for n in (w, r, b, p) if n):
        lc.unsupported(node, 'W, R, B and P must be constants')
    if p and np.any(lc.const(p)):
        lc.unsupported(node, 'peepholes (a nonzero P)')
    return [lc.const(n).astype(np.float32) if n else None for n in (w, r, b)]


def _lengths(lc, node, name, seq, batch):
    """The weight Ref of constant ``sequence_lens`` (int32), NULL when every one is ``seq``."""
    if not name:
        return NULL
    if not lc.is_const(name):
        lc.unsupported(node, 'sequence_lens must be a constant')
    lens = lc.const(name).astype(np.int64).reshape(-1)
    if lens.shape != (batch,) or lens.min() < 0 or lens.max() > seq:
        lc.unsupported(node, f'sequence_lens {lens.tolist()} for {batch} sequences of {seq}')
    return NULL if (lens == seq).all() else lc.add_weight(lens.astype(np.int32))


def _slots(lc, node, names) -> list:
    """The row-major slots of value ``names`` (None where omitted)."""
    slots = [lc.slot(n) if n else None for n in names]
    if not all(s is None or s.contiguous() for s in slots):
        lc.unsupported(node, 'row-major tensors only')
    return slots


def _strides(layout, seq, dirs, batch, hidden) -> dict:
    """Element strides of the X rows, Y and the states (h0, c0, Y_h, Y_c) for ``layout``."""
    if layout:      # batch first: X [batch, seq, in], Y [batch, seq, dirs, H], [batch, dirs, H]
        return dict(x_t=1, x_b=seq, y_t=dirs * hidden, y_d=hidden, y_b=seq * dirs * hidden,
                    s_d=hidden, s_b=dirs * hidden)
    return dict(x_t=batch, x_b=1, y_t=dirs * batch * hidden, y_d=batch * hidden, y_b=hidden,
                s_d=batch * hidden, s_b=hidden)


def lower_lstm(lc, node):
    """LSTM (``ops/recurrent.py``): projection launch, then the recurrent launch."""
    a = node.attrs
    why = lstm_refusal(**{k: v for k, v in a.items() if k != 'hidden_size'})
    if why:
        lc.unsupported(node, why)
    x_name, w, r, b, lens, h0, c0, p = (list(node.inputs) + [''] * 8)[:8]
    w, r, b = _weights(lc, node, (w, r, b, p))
    dirs, hidden, layout = r.shape[0], r.shape[-1], int(a.get('layout', 0))
    if hidden > MAX_HIDDEN or dirs != DIRECTIONS[a.get('direction', 'forward')]:
        lc.unsupported(node, f'hidden size {hidden} over {MAX_HIDDEN} or {dirs} directions')
    x, h0, c0, y, y_h, y_c = _slots(lc, node, [x_name, h0, c0]
                                    + (list(node.outputs) + ['', '', ''])[:3])
    seq, batch = x.shape[1::-1] if layout else x.shape[:2]
    rows = seq * batch
    if rows * dirs * 4 * hidden * 2 > MAX_PROJECTION_BYTES:
        lc.unsupported(node, f'input projection of {rows} rows x {dirs * 4 * hidden} gates '
                             f'over {MAX_PROJECTION_BYTES >> 20} MiB')
    w_nk, bias, r_kug = lstm_weights(w, r, b)
    shape = (rows, dirs * 4 * hidden)
    xw = Slot(lc.add_weight(np.zeros(shape, np.float16)), shape, row_major(shape))
    refs = {k: s.ref if s else NULL for k, s in
            (('h0', h0), ('c0', c0), ('y', y), ('y_h', y_h), ('y_c', y_c))}
    fields = dict(_strides(layout, seq, dirs, batch, hidden), **refs, xw=xw.ref,
                  r=lc.add_weight(r_kug.astype(np.float16)),
                  lens=_lengths(lc, node, lens, seq, batch), seq=seq, dirs=dirs, H=hidden,
                  reverse=int(a.get('direction') == 'reverse'))
    threads = -(-hidden // 32) * 32
    return [linear_launch(lc, node, x, xw, w_nk, bias),
            Launch('lstm', 'lstm_recurrent', (batch, dirs, 1), (threads, 1, 1), LSTM, fields,
                   node.name)]
