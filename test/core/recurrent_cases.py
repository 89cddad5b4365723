"""Small ONNX RNNs and GRUs as one-node IR graphs, for the lowering and GPU tests.

``RecurrentCase`` describes one RNN or GRU node (sizes, direction, layout, activations,
linear_before_reset, which optional inputs and outputs it has); it makes its arrays, its IR
node and graph, and the numpy op's answer. ``cases()`` is the hypothesis strategy over them.
"""
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops import run_node

GATES = {'RNN': 1, 'GRU': 3}
INPUTS = ('X', 'W', 'R', 'B', 'sequence_lens', 'initial_h')
OUTPUTS = ('Y', 'Y_h')
ACTIVATIONS = ('X', 'initial_h')      # graph inputs; the rest are constants


@dataclass(frozen=True)
class RecurrentCase:
    """One RNN or GRU node; ``lens`` None: no sequence_lens input; ``activations`` None: the
    attribute left out (the ONNX default)."""

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

    @property
    def dirs(self) -> int:
        return 2 if self.direction == 'bidirectional' else 1

    def _batched(self, array) -> np.ndarray:
        """``array`` (layout 0) with its batch axis first for layout 1."""
        return np.ascontiguousarray(array.swapaxes(0, 1)) if self.layout else array

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

    def node(self) -> Node:
        """The IR node; omitted inputs and outputs are ''."""
        have = self.arrays()
        inputs = [n if n in have else '' for n in INPUTS]
        while not inputs[-1]:
            inputs.pop()
        outputs = [n if keep else '' for n, keep in zip(OUTPUTS, self.outputs)]
        attrs = {'hidden_size': self.hidden, 'direction': self.direction}
        if self.layout:
            attrs['layout'] = 1
        if self.op == 'GRU':
            attrs['linear_before_reset'] = self.linear_before_reset
        if self.activations is not None:
            attrs['activations'] = list(self.activations)
        return Node(self.op, 'rec0', inputs, outputs, attrs)

    def reference(self, arrays=None) -> dict:
        """{output name: array} from ``ops.run_node`` (the numpy op) on ``arrays`` (default
        this case's)."""
        node, have = self.node(), arrays or self.arrays()
        results = run_node(node, [have.get(n) if n else None for n in node.inputs])
        return {n: r for n, r in zip(node.outputs, results) if n}

    def graph(self, constants=()) -> Graph:
        """A one-node IR graph; the inputs named in ``constants`` become weights too."""
        node, have = self.node(), self.arrays()
        acts = [n for n in ACTIVATIONS if n in have and n not in constants]
        values = {n: Value(n, have[n].shape, 'float32') for n in acts}
        values.update({n: Value(n, a.shape, 'float32') for n, a in self.reference().items()})
        weights = {n: a for n, a in have.items() if n not in acts}
        return Graph([node], acts, [n for n in node.outputs if n], values, weights)


@st.composite
def cases(draw, max_hidden=6):
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
