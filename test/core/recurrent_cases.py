"""Small ONNX RNNs, GRUs and LSTMs as one-node IR graphs, for the op, lowering and GPU tests,
and the ddddocr-rec text helpers.

``RecurrentCase`` describes one RNN or GRU node (sizes, direction, layout, activations,
linear_before_reset, which optional inputs and outputs it has), ``LstmCase`` one LSTM node
(and its ONNX model for ONNX Runtime); each makes its arrays, its IR node and graph, and the
numpy op's answer (``OneNodeCase``, what they share). ``rnn_gru_cases()`` and ``lstm_cases()``
are the hypothesis strategies over them.
"""
from dataclasses import dataclass

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper

from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops import run_node

GATES = {'RNN': 1, 'GRU': 3}


class OneNodeCase:
    """What the recurrent cases share: a subclass (a frozen dataclass) names its op, node,
    INPUTS, OUTPUTS and ACTIVATIONS (graph inputs; the rest are constants) and has ``arrays()``
    and ``attrs()``."""

    @property
    def dirs(self) -> int:
        return 2 if self.direction == 'bidirectional' else 1

    def _batched(self, array) -> np.ndarray:
        """``array`` (layout 0) with its batch axis first for layout 1."""
        return np.ascontiguousarray(array.swapaxes(0, 1)) if self.layout else array

    def node(self) -> Node:
        """The IR node; omitted inputs and outputs are ''."""
        have = self.arrays()
        inputs = [n if n in have else '' for n in self.INPUTS]
        while not inputs[-1]:
            inputs.pop()
        outputs = [n if keep else '' for n, keep in zip(self.OUTPUTS, self.outputs)]
        attrs = {'hidden_size': self.hidden, 'direction': self.direction}
        if self.layout:
            attrs['layout'] = 1
        attrs.update(self.attrs())
        return Node(self.op, self.NODE, inputs, outputs, attrs)

    def reference(self, arrays=None) -> dict:
        """{output name: array} from ``ops.run_node`` (the numpy op) on ``arrays`` (default
        this case's)."""
        node, have = self.node(), arrays or self.arrays()
        results = run_node(node, [have.get(n) if n else None for n in node.inputs])
        return {n: r for n, r in zip(node.outputs, results) if n}

    def graph(self, constants=()) -> Graph:
        """A one-node IR graph; the inputs named in ``constants`` become weights too."""
        node, have = self.node(), self.arrays()
        acts = [n for n in self.ACTIVATIONS if n in have and n not in constants]
        values = {n: Value(n, have[n].shape, 'float32') for n in acts}
        values.update({n: Value(n, a.shape, 'float32') for n, a in self.reference().items()})
        weights = {n: a for n, a in have.items() if n not in acts}
        return Graph([node], acts, [n for n in node.outputs if n], values, weights)


@dataclass(frozen=True)
class RecurrentCase(OneNodeCase):
    """One RNN or GRU node; ``lens`` None: no sequence_lens input; ``activations`` None: the
    attribute left out (the ONNX default)."""

    NODE = 'rec0'
    INPUTS = ('X', 'W', 'R', 'B', 'sequence_lens', 'initial_h')
    OUTPUTS = ('Y', 'Y_h')
    ACTIVATIONS = ('X', 'initial_h')

    op: str = 'GRU'
    seq: int = 3
    batch: int = 2
    input_size: int = 4
    hidden: int = 5
    direction: str = 'forward'
    layout: int = 0
    bias: bool = True
    initial: bool = False
    lens: tuple = None
    linear_before_reset: int = 0
    activations: tuple = None
    outputs: tuple = (True, True)
    seed: int = 0

    def arrays(self) -> dict:
        """{input name: array} of the inputs this case has."""
        rng = np.random.default_rng(self.seed)
        d, g, h = self.dirs, GATES[self.op], self.hidden

        def uniform(*shape, scale=1.0):
            return rng.uniform(-scale, scale, shape).astype(np.float32)

        out = {'X': self._batched(uniform(self.seq, self.batch, self.input_size)),
               'W': uniform(d, g * h, self.input_size, scale=1 / np.sqrt(self.input_size)),
               'R': uniform(d, g * h, h, scale=1 / np.sqrt(h))}
        if self.bias:
            out['B'] = uniform(d, 2 * g * h, scale=0.5)
        if self.lens is not None:
            out['sequence_lens'] = np.array(self.lens, np.int32)
        if self.initial:
            out['initial_h'] = self._batched(uniform(d, self.batch, h))
        return out

    def attrs(self) -> dict:
        attrs = {}
        if self.op == 'GRU':
            attrs['linear_before_reset'] = self.linear_before_reset
        if self.activations is not None:
            attrs['activations'] = list(self.activations)
        return attrs


@st.composite
def rnn_gru_cases(draw, max_hidden=6):
    """Small RNNs and GRUs over every direction, layout, activation, linear_before_reset and
    optional input and output."""
    op = draw(st.sampled_from(['RNN', 'GRU']))
    seq, batch = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    direction = draw(st.sampled_from(['forward', 'reverse', 'bidirectional']))
    lens = None
    if draw(st.booleans()):
        lens = tuple(draw(st.lists(st.integers(1, seq), min_size=batch, max_size=batch)))
    activations = None
    if op == 'RNN' and draw(st.booleans()):
        dirs = 2 if direction == 'bidirectional' else 1
        activations = tuple(draw(st.lists(st.sampled_from(['Tanh', 'Relu', 'Sigmoid']),
                                          min_size=dirs, max_size=dirs)))
    return RecurrentCase(
        op, seq, batch, draw(st.integers(1, 5)), draw(st.integers(1, max_hidden)), direction,
        draw(st.integers(0, 1)), draw(st.booleans()), draw(st.booleans()), lens,
        draw(st.integers(0, 1)) if op == 'GRU' else 0, activations,
        draw(st.sampled_from([(True, True), (True, False), (False, True)])),
        draw(st.integers(0, 1000)))


@dataclass(frozen=True)
class LstmCase(OneNodeCase):
    """One LSTM node; ``lens`` None: no sequence_lens input."""

    op = 'LSTM'
    NODE = 'lstm0'
    INPUTS = ('X', 'W', 'R', 'B', 'sequence_lens', 'initial_h', 'initial_c', 'P')
    OUTPUTS = ('Y', 'Y_h', 'Y_c')
    ACTIVATIONS = ('X', 'initial_h', 'initial_c')

    seq: int = 3
    batch: int = 2
    input_size: int = 4
    hidden: int = 5
    direction: str = 'forward'
    layout: int = 0
    bias: bool = True
    initial: bool = False
    lens: tuple = None
    peephole: bool = False
    outputs: tuple = (True, True, True)
    seed: int = 0

    def arrays(self) -> dict:
        """{input name: array} of the inputs this case has (the same numbers, transposed,
        for both layouts)."""
        rng = np.random.default_rng(self.seed)
        d, h = self.dirs, self.hidden

        def uniform(*shape, scale=1.0):
            return rng.uniform(-scale, scale, shape).astype(np.float32)

        out = {'X': self._batched(uniform(self.seq, self.batch, self.input_size)),
               'W': uniform(d, 4 * h, self.input_size, scale=1 / np.sqrt(self.input_size)),
               'R': uniform(d, 4 * h, h, scale=1 / np.sqrt(h))}
        if self.bias:
            out['B'] = uniform(d, 8 * h, scale=0.5)
        if self.lens is not None:
            out['sequence_lens'] = np.array(self.lens, np.int32)
        if self.initial:
            out['initial_h'] = self._batched(uniform(d, self.batch, h))
            out['initial_c'] = self._batched(uniform(d, self.batch, h))
        if self.peephole:
            out['P'] = uniform(d, 3 * h, scale=0.5)
        return out

    def attrs(self) -> dict:
        return {}

    def onnx_model(self) -> onnx.ModelProto:
        """The node as an ONNX model (opset 14: layout) for ONNX Runtime."""
        node, have = self.node(), self.arrays()
        acts = [n for n in self.ACTIVATIONS if n in have]
        inits = [helper.make_tensor(n, TensorProto.INT32 if a.dtype == np.int32 else
                                    TensorProto.FLOAT, a.shape, a.reshape(-1).tolist())
                 for n, a in have.items() if n not in acts]
        graph = helper.make_graph(
            [helper.make_node('LSTM', node.inputs, node.outputs, **node.attrs)], 'lstm',
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, have[n].shape) for n in acts],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, None)
             for n in node.outputs if n], inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 14)])

    def feeds(self) -> dict:
        """The graph inputs of ``onnx_model``."""
        return {n: a for n, a in self.arrays().items() if n in self.ACTIVATIONS}


@st.composite
def lstm_cases(draw, max_hidden=6):
    """Small LSTMs over every direction, layout and optional input and output."""
    seq, batch = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    lens = None
    if draw(st.booleans()):
        lens = tuple(draw(st.lists(st.integers(1, seq), min_size=batch, max_size=batch)))
    outputs = draw(st.tuples(st.booleans(), st.booleans(), st.booleans()).filter(any))
    return LstmCase(seq, batch, draw(st.integers(1, 5)), draw(st.integers(1, max_hidden)),
                    draw(st.sampled_from(['forward', 'reverse', 'bidirectional'])),
                    draw(st.integers(0, 1)), draw(st.booleans()), draw(st.booleans()), lens,
                    draw(st.booleans()), outputs, draw(st.integers(0, 1000)))


# --- ddddocr-rec (CRNN + CTC) on rendered text -------------------------------------------------

TEXTS = ('x7k9p', '2024')   # ONNX Runtime reads these with a wide margin at every step


def render_text(text) -> np.ndarray:
    """Black ``text`` on a white 64x256 BGR image (cv2's Hershey font)."""
    import cv2
    image = np.full((64, 256, 3), 255, np.uint8)
    cv2.putText(image, text, (8, 44), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 0, 0), 3,
                cv2.LINE_AA)
    return image


def ctc_decode(logits) -> list:
    """Greedy CTC of ddddocr-rec's [steps, 1, classes] logits: the best class a step, repeats
    merged, blanks (class 0) dropped."""
    best = np.asarray(logits).reshape(logits.shape[0], -1).argmax(-1)
    return [int(c) for i, c in enumerate(best) if c and (i == 0 or c != best[i - 1])]


def ctc_margin(logits) -> float:
    """The smallest gap between the best and second-best logit over the steps."""
    top = np.sort(np.asarray(logits).reshape(logits.shape[0], -1), axis=-1)[:, -2:]
    return float((top[:, 1] - top[:, 0]).min())
