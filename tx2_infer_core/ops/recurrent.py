"""Recurrent ops: ONNX LSTM (the oracle of ``kernels/lstm.cu``)."""
import numpy as np

from tx2_infer_core.ops.common import unsupported
from tx2_infer_core.ops.elementwise import Sigmoid

DIRECTIONS = {'forward': 1, 'reverse': 1, 'bidirectional': 2}
LSTM_ACTIVATIONS = ('Sigmoid', 'Tanh', 'Tanh')  # f, g, h: the only ones implemented


def lstm_refusal(*, direction='forward', activations=None, activation_alpha=None,
                 activation_beta=None, clip=None, input_forget=0, layout=0) -> str:
    """Why an LSTM with these attributes (ONNX defaults) is not implemented ('' when it is);
    ``hidden_size`` is checked against R by the caller."""
    if direction not in DIRECTIONS:
        return f'direction={direction!r}'
    if activations is not None and \
            list(activations) != list(LSTM_ACTIVATIONS) * DIRECTIONS[direction]:
        return f'activations={list(activations)} (only Sigmoid, Tanh, Tanh)'
    if activation_alpha is not None or activation_beta is not None:
        return 'activation_alpha/activation_beta (only the default activations)'
    if clip is not None:
        return f'clip={clip}'
    if input_forget:
        return f'input_forget={input_forget}'
    if layout not in (0, 1):
        return f'layout={layout}'
    return ''


def _lstm_direction(xw, r, h, c, p, mask, reverse):
    """One direction over ``xw`` ([seq, batch, 4H]: X @ W^T + Wb + Rb) from state ``h``, ``c``
    ([batch, H]); gates i, o, f, c. Returns (Y [seq, batch, H], last h, last c)."""
    y = np.zeros(xw.shape[:2] + h.shape[1:], xw.dtype)
    steps = range(len(xw) - 1, -1, -1) if reverse else range(len(xw))
    for t in steps:
        i, o, f, g = np.split(xw[t] + h @ r.T, 4, axis=-1)
        if p is not None:
            i, f = i + p[0] * c, f + p[2] * c
        c_new = Sigmoid(f) * c + Sigmoid(i) * np.tanh(g)
        if p is not None:
            o = o + p[1] * c_new
        h_new = Sigmoid(o) * np.tanh(c_new)
        if mask is not None:        # steps past a sequence's length keep its state
            h_new = np.where(mask[t][:, None], h_new, h)
            c_new = np.where(mask[t][:, None], c_new, c)
            y[t] = np.where(mask[t][:, None], h_new, 0)
        else:
            y[t] = h_new
        h, c = h_new, c_new
    return y, h, c


def LSTM(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, *,
         activation_alpha=None, activation_beta=None, activations=None, clip=None,
         direction='forward', hidden_size=None, input_forget=0, layout=0):
    """Long short-term memory over the sequence X, returns (Y, Y_h, Y_c).

    Layout 0: X [seq, batch, in], Y [seq, dirs, batch, H], Y_h and Y_c [dirs, batch, H]
    (layout 1: batch first). Gates i, o, f, c (the ONNX order) with the default activations;
    ``sequence_lens`` (per batch entry) stops a sequence early, its later Y rows are zero.
    """
    why = lstm_refusal(direction=direction, activations=activations,
                       activation_alpha=activation_alpha, activation_beta=activation_beta,
                       clip=clip, input_forget=input_forget, layout=layout)
    if why:
        unsupported(why)
    dirs, hidden = DIRECTIONS[direction], R.shape[-1]
    if W.shape[0] != dirs or (hidden_size is not None and hidden_size != hidden):
        unsupported(f'W of shape {W.shape} and R {R.shape} for direction={direction!r}, '
                    f'hidden_size={hidden_size}')
    if layout:
        X = X.swapaxes(0, 1)
        initial_h = None if initial_h is None else initial_h.swapaxes(0, 1)
        initial_c = None if initial_c is None else initial_c.swapaxes(0, 1)
    state = (dirs, X.shape[1], hidden)
    h0 = np.zeros(state, X.dtype) if initial_h is None else initial_h
    c0 = np.zeros(state, X.dtype) if initial_c is None else initial_c
    mask = None
    if sequence_lens is not None:
        mask = np.arange(X.shape[0])[:, None] < np.asarray(sequence_lens)[None, :]
    ys, hs, cs = [], [], []
    for d in range(dirs):
        xw = X @ W[d].T
        if B is not None:
            xw = xw + B[d, :4 * hidden] + B[d, 4 * hidden:]
        p = None if P is None else np.split(P[d], 3)
        y, h, c = _lstm_direction(xw, R[d], h0[d], c0[d], p, mask,
                                  direction == 'reverse' or d == 1)
        ys.append(y)
        hs.append(h)
        cs.append(c)
    y, y_h, y_c = np.stack(ys, axis=1), np.stack(hs), np.stack(cs)
    if layout:
        y, y_h, y_c = y.transpose(2, 0, 1, 3), y_h.swapaxes(0, 1), y_c.swapaxes(0, 1)
    return tuple(np.ascontiguousarray(v, X.dtype) for v in (y, y_h, y_c))
