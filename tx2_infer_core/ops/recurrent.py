"""Recurrent ops: ONNX LSTM, RNN and GRU (the oracles of ``kernels/lstm.cu`` and
``kernels/recurrent.cu``)."""
import numpy as np

from tx2_infer_core.ops.common import unsupported
from tx2_infer_core.ops.elementwise import Relu, Sigmoid

DIRECTIONS = {'forward': 1, 'reverse': 1, 'bidirectional': 2}
RNN_FUNCTIONS = {'Tanh': np.tanh, 'Relu': Relu, 'Sigmoid': Sigmoid}  # the first: ONNX default
# per function of a direction, the activations implemented
LSTM_ACTIVATIONS = (('Sigmoid',), ('Tanh',), ('Tanh',))  # f, g, h
RNN_ACTIVATIONS = (tuple(RNN_FUNCTIONS),)                # f
GRU_ACTIVATIONS = (('Sigmoid',), ('Tanh',))              # f, g


def _implemented(activations, allowed, dirs) -> bool:
    """True when ``activations`` names, for each of ``dirs`` directions, one of ``allowed``'s
    functions per slot."""
    return len(activations) == len(allowed) * dirs and \
        all(a in allowed[i % len(allowed)] for i, a in enumerate(activations))


def _refusal(allowed, direction, activations, activation_alpha, activation_beta, clip,
             layout) -> str:
    """Why a recurrent op with these attributes is not implemented ('' when it is): only the
    ``allowed`` activations (their alpha and beta at the defaults), no clip."""
    if direction not in DIRECTIONS:
        return f'direction={direction!r}'
    if activations is not None and \
            not _implemented(activations, allowed, DIRECTIONS[direction]):
        only = ', '.join('/'.join(names) for names in allowed)
        return f'activations={list(activations)} (only {only} per direction)'
    if activation_alpha is not None or activation_beta is not None:
        return 'activation_alpha/activation_beta (only the default activations)'
    if clip is not None:
        return f'clip={clip}'
    if layout not in (0, 1):
        return f'layout={layout}'
    return ''


def lstm_refusal(*, direction='forward', activations=None, activation_alpha=None,
                 activation_beta=None, clip=None, input_forget=0, layout=0) -> str:
    """Why an LSTM with these attributes (ONNX defaults) is not implemented ('' when it is);
    ``hidden_size`` is checked against R by the caller."""
    why = _refusal(LSTM_ACTIVATIONS, direction, activations, activation_alpha,
                   activation_beta, clip, layout)
    return why or (f'input_forget={input_forget}' if input_forget else '')


def rnn_refusal(*, direction='forward', activations=None, activation_alpha=None,
                activation_beta=None, clip=None, layout=0) -> str:
    """Why an RNN with these attributes is not implemented ('' when it is): Tanh, Relu or
    Sigmoid in each direction."""
    return _refusal(RNN_ACTIVATIONS, direction, activations, activation_alpha,
                    activation_beta, clip, layout)


def gru_refusal(*, direction='forward', activations=None, activation_alpha=None,
                activation_beta=None, clip=None, layout=0, linear_before_reset=0) -> str:
    """Why a GRU with these attributes is not implemented ('' when it is): the default
    activations (Sigmoid, Tanh), ``linear_before_reset`` 0 or 1."""
    why = _refusal(GRU_ACTIVATIONS, direction, activations, activation_alpha,
                   activation_beta, clip, layout)
    if not why and linear_before_reset not in (0, 1):
        why = f'linear_before_reset={linear_before_reset}'
    return why


def rnn_functions(direction='forward', activations=None) -> list:
    """The RNN's activation function name of each direction (Tanh where not given)."""
    return list(activations or ['Tanh'] * DIRECTIONS[direction])


def _check_weights(W, R, gates, direction, hidden_size):
    """Refuse W/R that do not fit ``direction`` and ``hidden_size``; returns (dirs, H)."""
    dirs, hidden = DIRECTIONS[direction], R.shape[-1]
    if W.shape[0] != dirs or W.shape[1] != gates * hidden or \
            (hidden_size is not None and hidden_size != hidden):
        unsupported(f'W of shape {W.shape} and R {R.shape} for direction={direction!r}, '
                    f'hidden_size={hidden_size}')
    return dirs, hidden


def _step_mask(seq, sequence_lens):
    """[seq, batch] True where a step is inside its sequence (None: every step is)."""
    if sequence_lens is None:
        return None
    return np.arange(seq)[:, None] < np.asarray(sequence_lens)[None, :]


def _time_major(layout, *arrays):
    """Layout 1 (batch first) arrays swapped to layout 0 (None stays None)."""
    return [a.swapaxes(0, 1) if layout and a is not None else a for a in arrays]


def _outputs(ys, states, layout, dtype):
    """(Y [seq, dirs, batch, H], *states [dirs, batch, H]) from per-direction lists, in
    ``layout``."""
    y, states = np.stack(ys, axis=1), [np.stack(s) for s in states]
    if layout:
        y, states = y.transpose(2, 0, 1, 3), [s.swapaxes(0, 1) for s in states]
    return tuple(np.ascontiguousarray(v, dtype) for v in (y, *states))


def _masked(mask, t, new, old):
    """``new`` where step ``t`` is inside its sequence, else ``old``."""
    return new if mask is None else np.where(mask[t][:, None], new, old)


def _steps(seq, reverse):
    return range(seq - 1, -1, -1) if reverse else range(seq)


def _lstm_direction(xw, r, h, c, p, mask, reverse):
    """One direction over ``xw`` ([seq, batch, 4H]: X @ W^T + Wb + Rb) from state ``h``, ``c``
    ([batch, H]); gates i, o, f, c. Returns (Y [seq, batch, H], last h, last c)."""
    y = np.zeros(xw.shape[:2] + h.shape[1:], xw.dtype)
    for t in _steps(len(xw), reverse):
        i, o, f, g = np.split(xw[t] + h @ r.T, 4, axis=-1)
        if p is not None:
            i, f = i + p[0] * c, f + p[2] * c
        c_new = Sigmoid(f) * c + Sigmoid(i) * np.tanh(g)
        if p is not None:
            o = o + p[1] * c_new
        h_new = Sigmoid(o) * np.tanh(c_new)
        # steps past a sequence's length keep its state, their Y rows are zero
        h, c = _masked(mask, t, h_new, h), _masked(mask, t, c_new, c)
        y[t] = _masked(mask, t, h_new, 0)
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
    dirs, hidden = _check_weights(W, R, 4, direction, hidden_size)
    X, initial_h, initial_c = _time_major(layout, X, initial_h, initial_c)
    state = (dirs, X.shape[1], hidden)
    h0 = np.zeros(state, X.dtype) if initial_h is None else initial_h
    c0 = np.zeros(state, X.dtype) if initial_c is None else initial_c
    mask = _step_mask(X.shape[0], sequence_lens)
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
    return _outputs(ys, (hs, cs), layout, X.dtype)


def _rnn_direction(xw, r, h, mask, reverse, f):
    """One direction over ``xw`` ([seq, batch, H]: X @ W^T + Wb + Rb) from state ``h``
    ([batch, H]): h = f(xw + h R^T). Returns (Y [seq, batch, H], last h)."""
    y = np.zeros(xw.shape[:2] + h.shape[1:], xw.dtype)
    for t in _steps(len(xw), reverse):
        h_new = f(xw[t] + h @ r.T)
        h = _masked(mask, t, h_new, h)
        y[t] = _masked(mask, t, h_new, 0)
    return y, h


def _gated_setup(X, W, R, gates, sequence_lens, initial_h, direction, hidden_size, layout):
    """RNN's and GRU's common start: (X time-major, directions, hidden size, initial state
    [dirs, batch, H] (zeros when omitted), the step mask)."""
    dirs, hidden = _check_weights(W, R, gates, direction, hidden_size)
    X, initial_h = _time_major(layout, X, initial_h)
    h0 = np.zeros((dirs, X.shape[1], hidden), X.dtype) if initial_h is None else initial_h
    return X, dirs, hidden, h0, _step_mask(X.shape[0], sequence_lens)


def RNN(X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha=None,
        activation_beta=None, activations=None, clip=None, direction='forward',
        hidden_size=None, layout=0):
    """Simple recurrent network over the sequence X, returns (Y, Y_h); activation Tanh (the
    default), Relu or Sigmoid per direction; shapes, layouts and ``sequence_lens`` as LSTM's."""
    why = rnn_refusal(direction=direction, activations=activations,
                      activation_alpha=activation_alpha, activation_beta=activation_beta,
                      clip=clip, layout=layout)
    if why:
        unsupported(why)
    X, dirs, hidden, h0, mask = _gated_setup(X, W, R, 1, sequence_lens, initial_h,
                                             direction, hidden_size, layout)
    functions = rnn_functions(direction, activations)
    ys, hs = [], []
    for d in range(dirs):
        xw = X @ W[d].T
        if B is not None:
            xw = xw + B[d, :hidden] + B[d, hidden:]
        y, h = _rnn_direction(xw, R[d], h0[d], mask, direction == 'reverse' or d == 1,
                              RNN_FUNCTIONS[functions[d]])
        ys.append(y)
        hs.append(h)
    return _outputs(ys, (hs,), layout, X.dtype)


def _gru_direction(xw, r, rb, h, mask, reverse, linear_before_reset):
    """One direction over ``xw`` ([seq, batch, 3H]: X @ W^T + Wb, gates z, r, h) from state
    ``h`` ([batch, H]); ``rb`` is Rb [3H]. Returns (Y [seq, batch, H], last h)."""
    y = np.zeros(xw.shape[:2] + h.shape[1:], xw.dtype)
    r_z, r_r, r_h = np.split(r, 3)
    rb_z, rb_r, rb_h = np.split(rb, 3)
    for t in _steps(len(xw), reverse):
        x_z, x_r, x_h = np.split(xw[t], 3, axis=-1)
        z = Sigmoid(x_z + h @ r_z.T + rb_z)
        reset = Sigmoid(x_r + h @ r_r.T + rb_r)
        if linear_before_reset:
            candidate = np.tanh(x_h + reset * (h @ r_h.T + rb_h))
        else:
            candidate = np.tanh(x_h + (reset * h) @ r_h.T + rb_h)
        h_new = (1 - z) * candidate + z * h
        h = _masked(mask, t, h_new, h)
        y[t] = _masked(mask, t, h_new, 0)
    return y, h


def GRU(X, W, R, B=None, sequence_lens=None, initial_h=None, *, activation_alpha=None,
        activation_beta=None, activations=None, clip=None, direction='forward',
        hidden_size=None, layout=0, linear_before_reset=0):
    """Gated recurrent unit over the sequence X, returns (Y, Y_h); gates z, r, h (the ONNX
    order) with the default activations (Sigmoid, Tanh), ``linear_before_reset`` 0 or 1;
    shapes, layouts and ``sequence_lens`` as LSTM's."""
    why = gru_refusal(direction=direction, activations=activations,
                      activation_alpha=activation_alpha, activation_beta=activation_beta,
                      clip=clip, layout=layout, linear_before_reset=linear_before_reset)
    if why:
        unsupported(why)
    X, dirs, hidden, h0, mask = _gated_setup(X, W, R, 3, sequence_lens, initial_h,
                                             direction, hidden_size, layout)
    ys, hs = [], []
    for d in range(dirs):
        xw, rb = X @ W[d].T, np.zeros(3 * hidden, X.dtype)
        if B is not None:
            xw, rb = xw + B[d, :3 * hidden], B[d, 3 * hidden:]
        y, h = _gru_direction(xw, R[d], rb, h0[d], mask, direction == 'reverse' or d == 1,
                              linear_before_reset)
        ys.append(y)
        hs.append(h)
    return _outputs(ys, (hs,), layout, X.dtype)
