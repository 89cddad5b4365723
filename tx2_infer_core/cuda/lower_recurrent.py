"""Lowering of ONNX LSTM, RNN and GRU to two launches: the input projection ``X W^T`` plus
biases of every step as one 1x1-convolution GEMM (``lower_conv.linear_launch``: tensor cores
where the arch has them), then a recurrent kernel that loops over time inside itself (a CTA
per batch entry and direction, a thread per hidden unit): ``kernels/lstm.cu``'s
``lstm_recurrent``, ``kernels/recurrent.cu``'s ``rnn_recurrent`` and ``gru_recurrent``.

LSTM: the four gates of a hidden unit are interleaved ([unit][i, o, f, c]) in the
projection's output and in R, so a thread reads its gates as one 8-byte word and consecutive
threads read consecutive words. RNN and GRU keep ONNX's gate-major order ([gate][unit]; R as
[k][gate][unit]). The projection's output (FP16 ``[rows][dirs][gates * H]``) is scratch
memory in the weight buffer, as the convolutions' split-K workspace is.
"""
import numpy as np

from tx2_infer_core.cuda.launch import NULL, Launch, Slot, row_major
from tx2_infer_core.cuda.lower_conv import linear_launch
from tx2_infer_core.cuda.params import ACTIVATIONS, PTR
from tx2_infer_core.ops.recurrent import (DIRECTIONS, gru_refusal, lstm_refusal, rnn_functions,
                                          rnn_refusal)

MAX_HIDDEN = 1024                   # LSTM_/REC_MAX_HIDDEN of kernels/*.cu: a thread a unit
MAX_PROJECTION_BYTES = 64 << 20     # the FP16 input projection of all steps (scratch)
LSTM = np.dtype([(n, PTR) for n in ('xw', 'r', 'h0', 'c0', 'lens', 'y', 'y_h', 'y_c')]
                + [(n, 'i4') for n in ('seq', 'dirs', 'H', 'reverse')]
                + [(n, 'i8') for n in ('x_t', 'x_b', 'y_t', 'y_d', 'y_b', 's_d', 's_b')],
                align=True)
RECURRENT = np.dtype([(n, PTR) for n in ('xw', 'r', 'rb', 'h0', 'lens', 'y', 'y_h')]
                     + [(n, 'i4') for n in ('seq', 'dirs', 'H', 'reverse', 'lbr')]
                     + [('act', 'i4', (2,))]
                     + [(n, 'i8') for n in ('x_t', 'x_b', 'y_t', 'y_d', 'y_b', 's_d', 's_b')],
                     align=True)   # RecurrentParams of kernels/recurrent.cu


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


def gate_major_weights(w, r, b, gates, lbr=0) -> tuple:
    """The kernels' RNN or GRU weights from ONNX W [dirs, gates * H, in], R [dirs, gates * H,
    H], B [dirs, 2 * gates * H] (None: zeros): (projection weights [dirs * gates * H, in], its
    bias Wb + Rb (GRU with ``lbr``, linear_before_reset: gate h without Rb)
    [dirs * gates * H], recurrence weights [dirs, k, gate, unit], Rb of gate h [dirs, H] or
    None)."""
    dirs, hidden = r.shape[0], r.shape[-1]
    size = gates * hidden
    b = np.zeros((dirs, 2 * size), np.float32) if b is None else b
    wb, rb, rb_h = b[:, :size], b[:, size:].copy(), None
    if lbr:     # gate h's Rb is inside the reset product: the kernel adds it
        rb_h, rb[:, 2 * hidden:] = rb[:, 2 * hidden:].copy(), 0
    r_kgu = r.reshape(dirs, gates, hidden, hidden).transpose(0, 3, 1, 2)
    return w.reshape(dirs * size, -1), (wb + rb).reshape(-1), np.ascontiguousarray(r_kgu), rb_h


def _weights(lc, node, names) -> list:
    """W, R, B (None when omitted) as float32 constants; refused unless constant and no
    nonzero peephole P."""
    w, r, b, p = names
    if not all(lc.is_const(n) for n in (w, r, b, p) if n):
        inputs = 'W, R, B and P' if node.op == 'LSTM' else 'W, R and B'
        lc.unsupported(node, f'{inputs} must be constants')
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


def _sequence(lc, node, r, gates, names, lens) -> tuple:
    """What every recurrent lowering shares, from R [dirs, gates * H, H] and the node's X,
    initial states and outputs ``names``: (X slot, the other slots, the projection's output
    slot (scratch [rows, dirs * gates * H]), the recurrent launch's grid and block, its
    common fields)."""
    a = node.attrs
    dirs, hidden, layout = r.shape[0], r.shape[-1], int(a.get('layout', 0))
    if hidden > MAX_HIDDEN or dirs != DIRECTIONS[a.get('direction', 'forward')]:
        lc.unsupported(node, f'hidden size {hidden} over {MAX_HIDDEN} or {dirs} directions')
    x, *slots = _slots(lc, node, names)
    seq, batch = x.shape[1::-1] if layout else x.shape[:2]
    rows = seq * batch
    if rows * dirs * gates * hidden * 2 > MAX_PROJECTION_BYTES:
        lc.unsupported(node, f'input projection of {rows} rows x {dirs * gates * hidden} '
                             f'gates over {MAX_PROJECTION_BYTES >> 20} MiB')
    shape = (rows, dirs * gates * hidden)
    xw = Slot(lc.add_weight(np.zeros(shape, np.float16)), shape, row_major(shape))
    fields = dict(_strides(layout, seq, dirs, batch, hidden), xw=xw.ref,
                  lens=_lengths(lc, node, lens, seq, batch), seq=seq, dirs=dirs, H=hidden,
                  reverse=int(a.get('direction') == 'reverse'))
    geometry = ((batch, dirs, 1), (-(-hidden // 32) * 32, 1, 1))
    return x, slots, xw, geometry, fields


def _refs(**slots) -> dict:
    """{field: the slot's Ref, NULL where the slot is None}."""
    return {k: s.ref if s else NULL for k, s in slots.items()}


def _refuse(lc, node, refusal):
    """Refuse ``node`` for what ``refusal`` (``ops/recurrent.py``) says of its attributes."""
    why = refusal(**{k: v for k, v in node.attrs.items() if k != 'hidden_size'})
    if why:
        lc.unsupported(node, why)


def lower_lstm(lc, node):
    """LSTM (``ops/recurrent.py``): projection launch, then the recurrent launch."""
    _refuse(lc, node, lstm_refusal)
    x_name, w, r, b, lens, h0, c0, p = (list(node.inputs) + [''] * 8)[:8]
    w, r, b = _weights(lc, node, (w, r, b, p))
    x, (h0, c0, y, y_h, y_c), xw, geometry, fields = _sequence(
        lc, node, r, 4, [x_name, h0, c0] + (list(node.outputs) + ['', '', ''])[:3], lens)
    w_nk, bias, r_kug = lstm_weights(w, r, b)
    fields.update(_refs(h0=h0, c0=c0, y=y, y_h=y_h, y_c=y_c),
                  r=lc.add_weight(r_kug.astype(np.float16)))
    return [linear_launch(lc, node, x, xw, w_nk, bias),
            Launch('lstm', 'lstm_recurrent', *geometry, LSTM, fields, node.name)]


def _gate_major(lc, node, kernel, gates, **extra):
    """RNN or GRU (``ops/recurrent.py``): projection launch, then ``kernel``'s launch with the
    fields ``extra`` besides the common ones."""
    x_name, w, r, b, lens, h0 = (list(node.inputs) + [''] * 6)[:6]
    w, r, b = _weights(lc, node, (w, r, b, ''))
    x, (h0, y, y_h), xw, geometry, fields = _sequence(
        lc, node, r, gates, [x_name, h0] + (list(node.outputs) + ['', ''])[:2], lens)
    lbr = int(node.attrs.get('linear_before_reset', 0))
    w_nk, bias, r_kgu, rb_h = gate_major_weights(w, r, b, gates, lbr)
    fields.update(_refs(h0=h0, y=y, y_h=y_h), r=lc.add_weight(r_kgu.astype(np.float16)),
                  rb=NULL if rb_h is None else lc.add_weight(rb_h.astype(np.float32)),
                  lbr=lbr, **extra)
    return [linear_launch(lc, node, x, xw, w_nk, bias),
            Launch('recurrent', kernel, *geometry, RECURRENT, fields, node.name)]


def lower_rnn(lc, node):
    """RNN: h = f(X W^T + Wb + Rb + R h), f Tanh, Relu or Sigmoid per direction."""
    _refuse(lc, node, rnn_refusal)
    functions = rnn_functions(node.attrs.get('direction', 'forward'),
                              node.attrs.get('activations'))
    codes = [ACTIVATIONS[f] for f in functions]
    return _gate_major(lc, node, 'rnn_recurrent', 1, act=(codes * 2)[:2])


def lower_gru(lc, node):
    """GRU: gates z, r, h; linear_before_reset 0 (a second sync a step) or 1."""
    _refuse(lc, node, gru_refusal)
    return _gate_major(lc, node, 'gru_recurrent', 3)
