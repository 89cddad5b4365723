"""The CUDA lowering of LSTM without a GPU (``lower_graph``): ddddocr-rec lowers for every
target, what the kernel does not do is refused by name, and what the two launches hand the
device computes the numpy op's answer: a numpy model of the projection (a 1x1 convolution)
and of ``kernels/lstm.cu``'s index maths runs on the launch records, the weight image and an
FP16 arena."""
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from recurrent_cases import LstmCase, lstm_cases
from tx2_infer_core.cuda import lower_recurrent
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Node, Value
from tx2_infer_core.onnx_import import load_onnx
from tx2_infer_core.passes import optimize

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
import zoo_data  # noqa: E402


class Memory:
    """The arena and the weight buffer of one lowering, as host bytes."""

    def __init__(self, lowered):
        self.bases = {'arena': np.zeros(max(lowered.plan.arena_bytes, 1), np.uint8),
                      'weights': lowered.weight_image()}

    def read(self, ref, count, dtype) -> np.ndarray:
        size = np.dtype(dtype).itemsize
        raw = self.bases[ref.base][ref.offset:ref.offset + count * size]
        return np.frombuffer(raw.tobytes(), dtype).copy()

    def write(self, ref, array):
        raw = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
        self.bases[ref.base][ref.offset:ref.offset + raw.size] = raw


def emulate_projection(mem, f):
    """The 1x1 convolution of ``linear_launch``: y[m, n] = x[m] . w[n] + bias[n] (FP16 out)."""
    rows, k, n = f['N'] * f['P'] * f['Q'], f['Cg'], f['Kg']
    x = mem.read(f['x'], rows * k, np.float16).astype(np.float32).reshape(rows, k)
    w = mem.read(f['w'], n * k, np.float16).astype(np.float32).reshape(n, k)
    bias = mem.read(f['bias'], n, np.float32) if f['bias'].base != 'null' else 0
    mem.write(f['y'], (x @ w.T + bias).astype(np.float16))


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _state(mem, ref, index):
    if ref.base == 'null':
        return np.zeros(len(index), np.float32)
    return mem.read(ref, index.max() + 1, np.float16)[index].astype(np.float32)


def emulate_recurrent(mem, launch):
    """``lstm_recurrent``: every CTA (batch entry b, direction d) over its units at once."""
    f, (batch, dirs, _) = launch.fields, launch.grid
    hidden, seq = f['H'], f['seq']
    xw = mem.read(f['xw'], seq * batch * dirs * hidden * 4, np.float16).astype(np.float32)
    xw = xw.reshape(-1, 4)
    r = mem.read(f['r'], dirs * hidden * hidden * 4, np.float16).astype(np.float32)
    r = r.reshape(-1, 4)
    lens = mem.read(f['lens'], batch, np.int32) if f['lens'].base != 'null' else [seq] * batch
    units = np.arange(hidden)
    for b in range(batch):
        for d in range(dirs):
            state = d * f['s_d'] + b * f['s_b'] + units
            h, c = _state(mem, f['h0'], state), _state(mem, f['c0'], state)
            y_at = {}
            for step in range(lens[b]):
                t = lens[b] - 1 - step if d == 1 or f['reverse'] else step
                row = t * f['x_t'] + b * f['x_b']
                acc = xw[(row * dirs + d) * hidden + units].copy()
                for k in range(hidden):
                    acc += r[d * hidden * hidden + k * hidden + units] * h[k]
                i, o, fg, g = sigmoid(acc[:, 0]), sigmoid(acc[:, 1]), sigmoid(acc[:, 2]), \
                    np.tanh(acc[:, 3])
                c = fg * c + i * g
                h = o * np.tanh(c)
                y_at[t] = h
            _store(mem, f, b, d, units, seq, y_at, h, c)


def _store(mem, f, b, d, units, seq, y_at, h, c):
    for t in range(seq):
        if f['y'].base != 'null':
            at = t * f['y_t'] + d * f['y_d'] + b * f['y_b'] + units
            _write_at(mem, f['y'], at, y_at.get(t, np.zeros_like(h)))
    state = d * f['s_d'] + b * f['s_b'] + units
    for name, value in (('y_h', h), ('y_c', c)):
        if f[name].base != 'null':
            _write_at(mem, f[name], state, value)


def _write_at(mem, ref, index, values):
    raw = mem.bases[ref.base]
    halves = raw[:raw.size // 2 * 2].view(np.float16)
    halves[ref.offset // 2 + index] = values.astype(np.float16)


def emulate_launches(graph, lowered, arrays, recurrent_model) -> dict:
    """{output: array}: the two launches of ``lowered`` (the projection, then the recurrence
    run by ``recurrent_model(mem, launch)``) emulated on the graph inputs of ``arrays``."""
    projection, recurrent = lowered.launches
    mem = Memory(lowered)
    for name in graph.inputs:
        mem.write(lowered.slots[name].ref, arrays[name].astype(np.float16))
    emulate_projection(mem, projection.fields)
    recurrent_model(mem, recurrent)
    out = {}
    for name in graph.outputs:
        slot = lowered.slots[name]
        out[name] = mem.read(slot.ref, int(np.prod(slot.shape)), np.float16).reshape(
            slot.shape).astype(np.float32)
    return out


def assert_matches_numpy(ours, case):
    """The emulated outputs ``ours`` are the numpy op's on ``case``, within FP16 rounding."""
    want = case.reference()
    assert sorted(ours) == sorted(want)
    for name, expected in want.items():
        np.testing.assert_allclose(ours[name], expected, atol=1.5e-2, rtol=0, err_msg=name)


def emulate(case, constants=()) -> dict:
    """{output: array} of the lowered one-node graph of ``case``, emulated."""
    graph = case.graph(constants)
    lowered = lower_graph(graph, arch=62)
    projection, recurrent = lowered.launches
    assert (projection.module.split('@')[0], recurrent.kernel) == ('conv', 'lstm_recurrent')
    return emulate_launches(graph, lowered, case.arrays(), emulate_recurrent)


def assert_emulation_matches(case, constants=()):
    assert_matches_numpy(emulate(case, constants), case)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lstm_cases(max_hidden=40).filter(lambda c: not c.peephole))
def test_lowered_lstm_computes_the_numpy_op(case):
    assert_emulation_matches(case)


@pytest.mark.parametrize('case, constants', [
    (LstmCase(seq=4, batch=3, hidden=33, direction='bidirectional', initial=True,
              lens=(4, 1, 2), seed=7), ()),
    (LstmCase(seq=5, batch=2, input_size=8, hidden=8, direction='reverse', layout=1,
              initial=True, lens=(3, 5), seed=8), ('initial_h', 'initial_c')),
    (LstmCase(seq=3, batch=1, hidden=4, bias=False, outputs=(True, False, False), seed=9), ()),
], ids=['bidirectional-lens', 'reverse-batch-first-constant-states', 'y-only-no-bias'])
def test_lowered_lstm_fixed_cases(case, constants):
    assert_emulation_matches(case, constants)


def test_lstm_weights_interleave_the_gates_per_unit():
    """Exact maths of the weight layout: w_nk row (d, unit, gate) is W[d][gate * H + unit],
    the bias adds Wb and Rb, r_kug[d, k, unit, gate] is R[d][gate * H + unit][k]."""
    rng = np.random.default_rng(3)
    dirs, hidden, inputs = 2, 3, 5
    w = rng.standard_normal((dirs, 4 * hidden, inputs))
    r = rng.standard_normal((dirs, 4 * hidden, hidden))
    b = rng.standard_normal((dirs, 8 * hidden))
    w_nk, bias, r_kug = lower_recurrent.lstm_weights(w, r, b)
    for d in range(dirs):
        for unit in range(hidden):
            for gate in range(4):
                row, onnx_row = (d * hidden + unit) * 4 + gate, gate * hidden + unit
                assert np.array_equal(w_nk[row], w[d, onnx_row])
                assert bias[row] == b[d, onnx_row] + b[d, 4 * hidden + onnx_row]
                assert np.array_equal(r_kug[d, :, unit, gate], r[d, onnx_row])


@pytest.fixture(scope='module')
def ddddocr_graph():
    model = zoo_data.BY_NAME['ddddocr-rec']
    path, _ = zoo_data.model_files(model)
    return optimize(load_onnx(path, input_shape=model.input_shape), level=3)[0]


@pytest.mark.parametrize('arch', [62, 72, 87, 90])
def test_ddddocr_rec_lowers_for_every_target(ddddocr_graph, arch):
    """Bidirectional, hidden 512, 32 steps of batch 1: one projection GEMM of 32 rows x 4096
    gates, one recurrent launch of a CTA per direction and a thread per unit."""
    [lstm] = [n for n in ddddocr_graph.nodes if n.op == 'LSTM']
    lowered = lower_graph(ddddocr_graph, arch)
    projection, recurrent = [k for k in lowered.launches if k.node == lstm.name]
    assert projection.module.startswith('conv')
    assert (projection.fields['Q'], projection.fields['Kg'], projection.fields['Cg']) == \
        (32, 4096, 512)
    assert recurrent.kernel == 'lstm_recurrent'
    assert (recurrent.grid, recurrent.block) == ((1, 2, 1), (512, 1, 1))
    assert (recurrent.fields['seq'], recurrent.fields['H'], recurrent.fields['dirs']) == \
        (32, 512, 2)


def with_attrs(case, **attrs):
    """The one-node graph of ``case``, its node given ``attrs`` too."""
    graph = case.graph()
    node = graph.nodes[0]
    graph.nodes[0] = Node(node.op, node.name, node.inputs, node.outputs,
                          dict(node.attrs, **attrs))
    return graph


@pytest.mark.parametrize('make, detail', [
    (lambda: LstmCase(seq=1, batch=1, input_size=2, hidden=1025).graph(), 'hidden size 1025'),
    (lambda: LstmCase(peephole=True).graph(), 'peepholes'),
    (lambda: LstmCase(lens=(3, 2)).graph(constants=()), None),   # constant lens: lowers
    (lambda: with_attrs(LstmCase(), clip=2.0), 'clip=2.0'),
    (lambda: with_attrs(LstmCase(), input_forget=1), 'input_forget=1'),
], ids=['hidden-1025', 'peepholes', 'constant-lens-lowers', 'clip', 'input-forget'])
def test_what_the_kernel_does_not_do_is_refused(make, detail):
    graph = make()
    if detail is None:
        assert lower_graph(graph, 90).launches[-1].kernel == 'lstm_recurrent'
        return
    with pytest.raises(UnsupportedOpError, match="'LSTM' at node 'lstm0'") as err:
        lower_graph(graph, 90)
    assert detail in str(err.value)


def test_sequence_lens_as_an_activation_is_refused():
    graph = LstmCase(lens=(3, 2)).graph()
    graph.inputs.append('sequence_lens')
    graph.values['sequence_lens'] = Value('sequence_lens', (2,), 'int32')
    del graph.weights['sequence_lens']
    with pytest.raises(UnsupportedOpError, match='sequence_lens must be a constant'):
        lower_graph(graph, 90)
