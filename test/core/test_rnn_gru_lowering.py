"""The CUDA lowering of RNN and GRU without a GPU (``lower_graph``): madmom-onsets (6 RNNs)
and madmom-downbeats (4 GRUs) lower for every target, what the kernels do not do is refused
by name, and what the two launches hand the device computes the numpy op's answer: the
projection's numpy model (``test_lstm_lowering``) and one of ``kernels/recurrent.cu``'s index
maths run on the launch records, the weight image and an FP16 arena."""
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from recurrent_cases import RecurrentCase, rnn_gru_cases
from test_lstm_lowering import assert_matches_numpy, emulate_launches, sigmoid, with_attrs
from tx2_infer_core import engine as E
from tx2_infer_core.cuda import lower_recurrent
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.cuda.params import ACTIVATIONS
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Value
from tx2_infer_core.passes import POINTWISE_LEVEL, optimize

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
import zoo_data  # noqa: E402

FUNCTIONS = {ACTIVATIONS['Tanh']: np.tanh, ACTIVATIONS['Sigmoid']: sigmoid,
             ACTIVATIONS['Relu']: lambda v: np.maximum(v, 0)}


def _read(mem, ref, count, dtype, default):
    return default if ref.base == 'null' else mem.read(ref, count, dtype).astype(np.float32)


def _cell(f, kernel, d, x, dot, h, rb):
    """One step of ``kernel`` for every unit: ``x`` the projected gates, ``dot(g, v)`` the
    sum over k of R's gate g times v[k]."""
    if kernel == 'rnn_recurrent':
        return FUNCTIONS[int(f['act'][d])](x[0] + dot(0, h))
    z, reset = sigmoid(x[0] + dot(0, h)), sigmoid(x[1] + dot(1, h))
    if f['lbr']:
        n = np.tanh(x[2] + reset * (dot(2, h) + rb))
    else:
        n = np.tanh(x[2] + dot(2, reset * h))
    return (1 - z) * n + z * h


def emulate_recurrent(mem, launch):
    """``rnn_recurrent`` / ``gru_recurrent``: every CTA (batch entry b, direction d) over its
    units at once, reading xw, R and the states by the kernel's index maths."""
    f, (batch, dirs, _) = launch.fields, launch.grid
    gates = 1 if launch.kernel == 'rnn_recurrent' else 3
    hidden, seq = f['H'], f['seq']
    units = np.arange(hidden)
    xw = mem.read(f['xw'], seq * batch * dirs * gates * hidden, np.float16).astype(np.float32)
    r = mem.read(f['r'], dirs * hidden * gates * hidden, np.float16).astype(np.float32)
    rb = _read(mem, f['rb'], dirs * hidden, np.float32, np.zeros(dirs * hidden))
    lens = mem.read(f['lens'], batch, np.int32) if f['lens'].base != 'null' else [seq] * batch
    ks = np.arange(hidden)[:, None]
    for b in range(batch):
        for d in range(dirs):
            state = d * f['s_d'] + b * f['s_b'] + units
            h = _read(mem, f['h0'], state.max() + 1, np.float16, np.zeros(state.max() + 1))
            h = h[state]

            def dot(g, v):
                return v @ r[((d * hidden + ks) * gates + g) * hidden + units]
            for step in range(seq):
                t = lens[b] - 1 - step if d == 1 or f['reverse'] else step
                y = np.zeros(hidden)
                if step < lens[b]:
                    row = t * f['x_t'] + b * f['x_b']
                    x = [xw[((row * dirs + d) * gates + g) * hidden + units]
                         for g in range(gates)]
                    h = y = _cell(f, launch.kernel, d, x, dot, h, rb[d * hidden + units])
                else:
                    t = step
                _write(mem, f['y'], t * f['y_t'] + d * f['y_d'] + b * f['y_b'] + units, y)
            _write(mem, f['y_h'], state, h)


def _write(mem, ref, index, values):
    if ref.base != 'null':
        raw = mem.bases[ref.base]
        halves = raw[:raw.size // 2 * 2].view(np.float16)
        halves[ref.offset // 2 + index] = np.asarray(values).astype(np.float16)


def emulate(case, constants=(), arch=62) -> dict:
    """{output: array} of the lowered one-node graph of ``case``, emulated."""
    graph = case.graph(constants)
    lowered = lower_graph(graph, arch=arch)
    projection, recurrent = lowered.launches
    assert projection.module.startswith('conv')
    assert recurrent.kernel == {'RNN': 'rnn_recurrent', 'GRU': 'gru_recurrent'}[case.op]
    return emulate_launches(graph, lowered, case.arrays(), emulate_recurrent)


def assert_emulation_matches(case, constants=()):
    assert_matches_numpy(emulate(case, constants), case)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rnn_gru_cases(max_hidden=40))
def test_lowered_rnn_and_gru_compute_the_numpy_op(case):
    assert_emulation_matches(case)


FIXED = {
    'gru-bidirectional-lbr0-lens-initial': (RecurrentCase(
        seq=4, batch=3, hidden=33, direction='bidirectional', initial=True, lens=(4, 1, 2),
        seed=7), ()),
    'gru-reverse-lbr1-batch-first-constant-h0': (RecurrentCase(
        seq=5, batch=2, input_size=8, hidden=8, direction='reverse', layout=1, initial=True,
        lens=(3, 5), linear_before_reset=1, seed=8), ('initial_h',)),
    'gru-lbr1-no-bias-y-only': (RecurrentCase(seq=3, batch=1, hidden=4, bias=False,
                                              linear_before_reset=1, outputs=(True, False),
                                              seed=9), ()),
    'rnn-bidirectional-relu-sigmoid': (RecurrentCase(
        'RNN', seq=4, batch=2, hidden=7, direction='bidirectional',
        activations=('Relu', 'Sigmoid'), initial=True, seed=10), ()),
    'rnn-reverse-lens-no-bias': (RecurrentCase('RNN', seq=6, batch=3, hidden=5,
                                               direction='reverse', lens=(6, 2, 4), bias=False,
                                               seed=11), ()),
}


@pytest.mark.parametrize('name', sorted(FIXED))
def test_lowered_fixed_cases(name):
    assert_emulation_matches(*FIXED[name])


def test_gate_major_weights_keep_onnx_order():
    """Exact maths of the weight layout: w_nk row (d, gate, unit) is W[d][gate * H + unit];
    the bias adds Wb and Rb, but for gate h of linear_before_reset, whose Rb goes to rb_h;
    r_kgu[d, k, gate, unit] is R[d][gate * H + unit][k]."""
    rng = np.random.default_rng(3)
    dirs, hidden, inputs = 2, 3, 5
    w = rng.standard_normal((dirs, 3 * hidden, inputs))
    r = rng.standard_normal((dirs, 3 * hidden, hidden))
    b = rng.standard_normal((dirs, 6 * hidden))
    for lbr in (0, 1):
        w_nk, bias, r_kgu, rb_h = lower_recurrent.gate_major_weights(w, r, b, 3, lbr)
        assert (rb_h is None) == (not lbr)
        for d in range(dirs):
            for gate in range(3):
                for unit in range(hidden):
                    row, onnx_row = (d * 3 + gate) * hidden + unit, gate * hidden + unit
                    assert np.array_equal(w_nk[row], w[d, onnx_row])
                    rb = b[d, 3 * hidden + onnx_row]
                    if lbr and gate == 2:
                        assert (bias[row], rb_h[d, unit]) == (b[d, onnx_row], rb)
                    else:
                        assert bias[row] == b[d, onnx_row] + rb
                    assert np.array_equal(r_kgu[d, :, gate, unit], r[d, onnx_row])


def _zoo_graph(name):
    model = zoo_data.BY_NAME[name]
    path, weights = zoo_data.model_files(model)
    graph = E.import_model(path, model.input_shape, weights, E.DEFAULT_LIMITS)
    E.default_meta(graph)
    return optimize(graph, POINTWISE_LEVEL)[0]


@pytest.fixture(scope='module')
def madmom():
    return {name: _zoo_graph(name) for name in ('madmom-onsets', 'madmom-downbeats')}


@pytest.mark.parametrize('arch', [62, 72, 87, 90])
def test_madmom_models_lower_for_every_target(madmom, arch):
    """madmom-onsets: 6 Tanh RNNs of 144 steps, hidden 25 (the backward ones on reversed
    Slices); madmom-downbeats: 4 GRUs (linear_before_reset) of 4 steps, hidden 25. Each node
    a projection GEMM and one recurrent launch of one CTA and a warp."""
    for name, op, kernel, count, seq in (('madmom-onsets', 'RNN', 'rnn_recurrent', 6, 144),
                                         ('madmom-downbeats', 'GRU', 'gru_recurrent', 4, 4)):
        graph = madmom[name]
        lowered = lower_graph(graph, arch)
        nodes = [n.name for n in graph.nodes if n.op == op]
        assert len(nodes) == count
        for node in nodes:
            projection, recurrent = [k for k in lowered.launches if k.node == node]
            assert projection.module.startswith('conv')
            assert recurrent.kernel == kernel
            assert (recurrent.grid, recurrent.block) == ((1, 1, 1), (32, 1, 1))
            f = recurrent.fields
            assert (f['seq'], f['H'], f['dirs'], f['reverse']) == (seq, 25, 1, 0)
            assert f['h0'].base == 'arena'          # the model's state inputs
            if op == 'GRU':
                assert f['lbr'] == 1 and f['rb'].base == 'weights'
            else:
                assert list(f['act']) == [ACTIVATIONS['Tanh']] * 2


REFUSED = {
    'rnn-hidden-1025': (lambda: RecurrentCase('RNN', seq=1, batch=1, input_size=2,
                                              hidden=1025).graph(), 'hidden size 1025'),
    'gru-clip': (lambda: with_attrs(RecurrentCase(), clip=2.0), 'clip=2.0'),
    'rnn-clip': (lambda: with_attrs(RecurrentCase('RNN'), clip=2.0), 'clip=2.0'),
    'rnn-softsign': (lambda: with_attrs(RecurrentCase('RNN'), activations=['Softsign']),
                     "activations=['Softsign']"),
    'rnn-one-function-two-directions': (
        lambda: with_attrs(RecurrentCase('RNN', direction='bidirectional'),
                           activations=['Relu']), "activations=['Relu']"),
    'gru-relu': (lambda: with_attrs(RecurrentCase(), activations=['Relu', 'Tanh']),
                 "activations=['Relu', 'Tanh']"),
    'gru-alpha': (lambda: with_attrs(RecurrentCase(), activation_alpha=[0.5]),
                  'activation_alpha'),
    'gru-linear-before-reset-2': (lambda: with_attrs(RecurrentCase(), linear_before_reset=2),
                                  'linear_before_reset=2'),
}


@pytest.mark.parametrize('name', sorted(REFUSED))
def test_what_the_kernels_do_not_do_is_refused(name):
    make, detail = REFUSED[name]
    graph = make()
    op = graph.nodes[0].op
    with pytest.raises(UnsupportedOpError, match=f"'{op}' at node 'rec0'") as err:
        lower_graph(graph, 90)
    assert detail in str(err.value)


@pytest.mark.parametrize('op', ['RNN', 'GRU'])
def test_activation_inputs_where_constants_are_needed_are_refused(op):
    graph = RecurrentCase(op, lens=(3, 2)).graph()
    graph.inputs.append('sequence_lens')
    graph.values['sequence_lens'] = Value('sequence_lens', (2,), 'int32')
    del graph.weights['sequence_lens']
    with pytest.raises(UnsupportedOpError, match='sequence_lens must be a constant'):
        lower_graph(graph, 90)
    graph = RecurrentCase(op).graph()
    graph.inputs.append('W')
    graph.values['W'] = Value('W', graph.weights.pop('W').shape, 'float32')
    with pytest.raises(UnsupportedOpError, match='W, R and B must be constants'):
        lower_graph(graph, 90)
