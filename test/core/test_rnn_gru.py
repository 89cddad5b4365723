"""ONNX RNN and GRU on the CPU: small models with the op between real ops (Relu before it,
Sigmoid and Mul after it), built by the engine on the numpy and ort backends, against ONNX
Runtime on the original model; every direction, sequence_lens, initial_h, layout 1, RNN's
activations (Tanh, Relu, Sigmoid) and GRU's linear_before_reset 0 and 1; and the refusals of
what is not implemented."""
from dataclasses import dataclass, replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Node
from tx2_infer_core.ops import run_node

GATES = {'RNN': 1, 'GRU': 3}


@dataclass(frozen=True)
class Case:
    """One RNN or GRU node in a small model; ``lens`` None: no sequence_lens input."""

    op: str = 'GRU'
    seq: int = 4
    batch: int = 3
    input_size: int = 5
    hidden: int = 6
    direction: str = 'forward'
    layout: int = 0
    initial: bool = False
    lens: tuple = None
    linear_before_reset: int = 0
    activations: tuple = None
    outputs: tuple = (True, True)
    seed: int = 0

    def weights(self) -> dict:
        rng = np.random.default_rng(self.seed)
        d, g, h = 2 if self.direction == 'bidirectional' else 1, GATES[self.op], self.hidden
        out = {'W': rng.uniform(-0.6, 0.6, (d, g * h, self.input_size)),
               'R': rng.uniform(-0.6, 0.6, (d, g * h, h)),
               'B': rng.uniform(-0.5, 0.5, (d, 2 * g * h))}
        if self.lens is not None:
            out['sequence_lens'] = np.array(self.lens, np.int32)
        return {n: a.astype(np.int32 if n == 'sequence_lens' else np.float32)
                for n, a in out.items()}

    def feeds(self) -> dict:
        """X [seq, batch, in] and initial_h [dirs, batch, H] (layout 0 in every case)."""
        rng = np.random.default_rng(self.seed + 100)
        out = {'X': rng.uniform(-1, 1, (self.seq, self.batch, self.input_size))}
        if self.initial:
            dirs = 2 if self.direction == 'bidirectional' else 1
            out['initial_h'] = rng.uniform(-1, 1, (dirs, self.batch, self.hidden))
        return {n: a.astype(np.float32) for n, a in out.items()}

    def model(self) -> onnx.ModelProto:
        """x -> Relu -> op -> Y: Sigmoid as [batch, seq, dirs, H], Y_h: Mul 2 as
        [batch, dirs, H]. A layout-1 op gets X and initial_h transposed to batch first and
        gives its outputs batch first, so both layouts compute the same numbers."""
        weights, nodes = self.weights(), [helper.make_node('Relu', ['X'], ['x'])]
        x, h0, y, y_h = 'x', 'initial_h' if self.initial else '', 'y', 'y_h'
        if self.layout:
            nodes.append(helper.make_node('Transpose', ['x'], ['x_bf'], perm=[1, 0, 2]))
            x = 'x_bf'
            if h0:
                nodes.append(helper.make_node('Transpose', [h0], ['h0_bf'], perm=[1, 0, 2]))
                h0 = 'h0_bf'
        inputs = [x, 'W', 'R', 'B', 'sequence_lens' if self.lens else '', h0]
        while not inputs[-1]:
            inputs.pop()
        attrs = {'hidden_size': self.hidden, 'direction': self.direction}
        if self.op == 'GRU':
            attrs['linear_before_reset'] = self.linear_before_reset
        if self.layout:
            attrs['layout'] = 1
        if self.activations:
            attrs['activations'] = list(self.activations)
        outs = [y if self.outputs[0] else '', y_h if self.outputs[1] else '']
        nodes.append(helper.make_node(self.op, inputs, outs, **attrs))
        graph_outputs = []
        if self.outputs[0]:
            if not self.layout:
                nodes.append(helper.make_node('Transpose', [y], ['y_t'], perm=[2, 0, 1, 3]))
            nodes.append(helper.make_node('Sigmoid', ['y' if self.layout else 'y_t'],
                                          ['out_y']))
            graph_outputs.append('out_y')
        if self.outputs[1]:
            if not self.layout:
                nodes.append(helper.make_node('Transpose', [y_h], ['y_h_t'], perm=[1, 0, 2]))
            nodes.append(helper.make_node('Mul', ['y_h' if self.layout else 'y_h_t', 'two'],
                                          ['out_h']))
            graph_outputs.append('out_h')
        inits = [helper.make_tensor(n, TensorProto.INT32 if a.dtype == np.int32 else
                                    TensorProto.FLOAT, a.shape, a.reshape(-1).tolist())
                 for n, a in weights.items()]
        inits.append(helper.make_tensor('two', TensorProto.FLOAT, [], [2.0]))
        graph = helper.make_graph(
            nodes, 'recurrent',
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape)
             for n, a in self.feeds().items()],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in graph_outputs],
            inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 14)])


def ort_outputs(case) -> dict:
    """ONNX Runtime on the original model; ORT has no layout 1, so a batch-first case runs
    as its layout-0 twin (the same graph outputs by construction)."""
    model = replace(case, layout=0).model()
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, case.feeds())))


CASES = {
    'rnn-forward': Case('RNN'),
    'rnn-reverse-lens': Case('RNN', direction='reverse', lens=(4, 2, 1), seed=1),
    'rnn-bidirectional-initial': Case('RNN', direction='bidirectional', initial=True, seed=2),
    'rnn-batch-first-lens-initial': Case('RNN', direction='bidirectional', layout=1,
                                         initial=True, lens=(1, 4, 3), seed=3),
    'rnn-only-y_h': Case('RNN', direction='reverse', outputs=(False, True), seed=4),
    'rnn-relu-lens': Case('RNN', activations=('Relu',), lens=(4, 3, 1), seed=11),
    'rnn-bidirectional-sigmoid-relu': Case('RNN', direction='bidirectional',
                                           activations=('Sigmoid', 'Relu'), initial=True,
                                           seed=12),
    'gru-forward': Case(),
    'gru-forward-lbr': Case(linear_before_reset=1, initial=True, seed=5),
    'gru-reverse-lens': Case(direction='reverse', lens=(3, 4, 1), seed=6),
    'gru-bidirectional-lbr-lens': Case(direction='bidirectional', linear_before_reset=1,
                                       lens=(2, 4, 3), initial=True, seed=7),
    'gru-batch-first-reverse': Case(direction='reverse', layout=1, initial=True, seed=8),
    'gru-batch-first-bidirectional-lbr': Case(direction='bidirectional', layout=1,
                                              linear_before_reset=1, lens=(4, 1, 2), seed=9),
    'gru-only-y': Case(direction='bidirectional', outputs=(True, False), seed=10),
}


@pytest.mark.parametrize('backend', ['numpy', 'ort'])
@pytest.mark.parametrize('case', CASES.values(), ids=CASES.keys())
def test_engine_matches_onnxruntime(case, backend, tmp_path):
    path = tmp_path / 'model.onnx'
    onnx.save(case.model(), path)
    feeds = case.feeds()
    engine = Engine.build(path, input_shape=feeds['X'].shape, backend=backend)
    try:
        ours = engine.run(feeds)
    finally:
        engine.close()
    want = ort_outputs(case)
    assert sorted(ours) == sorted(want)
    for name, expected in want.items():
        assert ours[name].shape == expected.shape, (name, ours[name].shape, expected.shape)
        np.testing.assert_allclose(ours[name], expected, rtol=1e-5, atol=2e-6, err_msg=name)


def _node(op, **attrs):
    gates = GATES[op]
    arrays = [np.zeros((2, 1, 3), np.float32), np.zeros((1, gates * 4, 3), np.float32),
              np.zeros((1, gates * 4, 4), np.float32)]
    return Node(op, 'rec0', ['X', 'W', 'R'], ['Y', 'Y_h'], dict(hidden_size=4, **attrs)), arrays


@pytest.mark.parametrize('op', ['RNN', 'GRU'])
@pytest.mark.parametrize('attrs, detail', [
    ({'clip': 3.0}, 'clip=3.0'),
    ({'activations': ['Softsign']}, 'activations'),
    ({'activations': ['Relu', 'Tanh']}, 'activations'),
    ({'activation_alpha': [0.5]}, 'activation_alpha'),
    ({'direction': 'sideways'}, 'direction'),
    ({'layout': 2}, 'layout=2'),
    ({'hidden_size': 7}, 'hidden_size=7'),
])
def test_unsupported_attributes_are_refused_by_name(op, attrs, detail):
    node, arrays = _node(op)
    node = Node(op, node.name, node.inputs, node.outputs, dict(node.attrs, **attrs))
    with pytest.raises(UnsupportedOpError, match=f"'{op}' at node 'rec0'") as err:
        run_node(node, arrays)
    assert detail in str(err.value)


def test_gru_refuses_other_linear_before_reset():
    node, arrays = _node('GRU', linear_before_reset=2)
    with pytest.raises(UnsupportedOpError, match='linear_before_reset=2'):
        run_node(node, arrays)


@pytest.mark.parametrize('op, activations', [('RNN', ['Tanh'] * 2),
                                             ('GRU', ['Sigmoid', 'Tanh'] * 2)])
def test_default_activations_spelled_out_are_accepted(op, activations):
    node, arrays = _node(op, direction='bidirectional')
    arrays[1:] = [np.concatenate([a, a]) for a in arrays[1:]]
    plain = run_node(node, arrays)
    spelled = run_node(Node(op, 'n', node.inputs, node.outputs,
                            dict(node.attrs, activations=activations)), arrays)
    for got, want in zip(spelled, plain):
        np.testing.assert_array_equal(got, want)
