"""1-D convolutions and pools as the 2-D ones with H = 1, on the graph the CUDA lowering sees.

The CUDA kernels take NCHW images stored NHWC (``layout.py``); a 1-D op reads and writes
(N, C, L) tensors, stored row-major. ``lift_1d`` rewrites each such node into its 2-D twin
between an Unsqueeze and a Squeeze (copies)::

    x (N, C, L) ──Unsqueeze──▶ (N, C, 1, L) ──Conv (1, k)──▶ (N, K, 1, L') ──Squeeze──▶ y
                                NHWC                          NHWC          (N, K, L')

Kernel, strides, dilations, output padding and output shape get a leading 1, pads a 0 at
each end, weights (and a fused PRelu's slope) a size-1 H dim; the node keeps its name. A
lifted op reading another's output reads its 4-D twin (a Squeeze nobody reads is dropped).
The 4-D values are images, so NHWC; the copies become views where the strides allow
(``views.py``: a one-channel input is its own NHWC image), else each is one strided copy
(row-major <-> NHWC). Only the CUDA lowering runs this: the numpy backend and the plan file
keep the 1-D nodes.
"""
import dataclasses

import numpy as np

from tx2_infer_core.ir import Node, Value

CONV_OPS = ('Conv', 'FusedConv', 'ConvTranspose', 'FusedConvTranspose')
POOL_OPS = ('MaxPool', 'AveragePool', 'GlobalAveragePool', 'GlobalMaxPool', 'LpPool',
            'GlobalLpPool')
LEADING = {'kernel_shape': 1, 'strides': 1, 'dilations': 1, 'output_padding': 0,
           'output_shape': 1}  # per-axis attributes: the H entry put in front


def attrs_2d(attrs) -> dict:
    """A 1-D node's attributes for its H = 1 twin (pads [b, e] -> [0, b, 0, e])."""
    out = dict(attrs)
    for key, lead in LEADING.items():
        if attrs.get(key):
            out[key] = [lead] + [int(v) for v in attrs[key]]
    if attrs.get('pads'):
        begin, end = (int(v) for v in attrs['pads'])
        out['pads'] = [0, begin, 0, end]
    return out


def _rank(graph, name) -> int:
    v = graph.values.get(name)
    return len(v.shape) if v is not None else -1


def liftable(graph, node) -> bool:
    """A 1-D conv or pool: 3-D activation in and out, 3-D constant weights (a conv), one
    output (no MaxPool Indices), one entry per per-axis attribute, two pads."""
    if node.op not in CONV_OPS + POOL_OPS or len(node.outputs) != 1:
        return False
    x, y = node.inputs[0], node.outputs[0]
    if _rank(graph, x) != 3 or _rank(graph, y) != 3 or x in graph.weights:
        return False
    if node.op in CONV_OPS and (len(node.inputs) < 2 or node.inputs[1] not in graph.weights
                                or np.ndim(graph.weights[node.inputs[1]]) != 3):
        return False
    a = node.attrs
    return (all(len(a.get(key) or [0]) == 1 for key in LEADING)
            and len(a.get('pads') or [0, 0]) == 2)


class _Lifter:
    """One rewrite: the new nodes, values and weights (each 3-D input unsqueezed once)."""

    def __init__(self, graph):
        self.graph, self.nodes, self.lifted, self.squeezes = graph, [], {}, set()

    def fresh(self, name) -> str:
        while name in self.graph.values or name in self.graph.weights:
            name += '_'
        return name

    def value_4d(self, name, base) -> str:
        """A new NCHW value: ``base`` (N, C, L) as (N, C, 1, L)."""
        n, c, length = self.graph.values[base].shape
        new = self.fresh(name)
        self.graph.values[new] = Value(new, (n, c, 1, length), self.graph.values[base].dtype,
                                       'NCHW')
        return new

    def unsqueezed(self, name) -> str:
        if name not in self.lifted:
            new = self.value_4d(f'{name}.2d', name)
            self.nodes.append(Node('Unsqueeze', f'{new}/unsqueeze', [name], [new],
                                   {'axes': [2]}))
            self.lifted[name] = new
        return self.lifted[name]

    def lift(self, node):
        inputs = [self.unsqueezed(node.inputs[0])] + list(node.inputs[1:])
        if node.op in CONV_OPS:
            w = self.fresh(f'{node.inputs[1]}.2d')
            self.graph.weights[w] = np.expand_dims(self.graph.weights[node.inputs[1]], 2)
            inputs[1] = w
        if len(inputs) > 3 and inputs[3]:  # a FusedConv residual, shaped like y
            inputs[3] = self.unsqueezed(inputs[3])
        slope = node.inputs[4] if len(node.inputs) > 4 else ''
        if slope in self.graph.weights:  # a fused PRelu's slope [C, 1]: [C, 1, 1]
            inputs[4] = self.fresh(f'{slope}.2d')
            self.graph.weights[inputs[4]] = np.expand_dims(self.graph.weights[slope], 1)
        y = node.outputs[0]
        y4 = self.value_4d(f'{y}.2d', y)
        self.nodes.append(dataclasses.replace(node, inputs=inputs, outputs=[y4],
                                              attrs=attrs_2d(node.attrs)))
        self.nodes.append(Node('Squeeze', f'{y4}/squeeze', [y4], [y], {'axes': [2]}))
        self.squeezes.add(y)
        self.lifted[y] = y4

    def drop_unread_squeezes(self):
        read = {name for node in self.nodes for name in node.inputs} | set(self.graph.outputs)
        for y in self.squeezes - read:
            del self.graph.values[y]
        self.nodes = [n for n in self.nodes if n.outputs[0] not in self.squeezes - read]


def lift_1d(graph) -> tuple:
    """(graph, count): ``graph`` with every ``liftable`` node made 2-D (see the module doc),
    a copy when any was (weights shared, new ones added); the same graph when none was."""
    if not any(liftable(graph, node) for node in graph.nodes):
        return graph, 0
    lifter, count = _Lifter(graph.copy()), 0
    for node in lifter.graph.nodes:
        if liftable(lifter.graph, node):
            lifter.lift(node)
            count += 1
        else:
            lifter.nodes.append(node)
    lifter.drop_unread_squeezes()
    lifter.graph.nodes = lifter.nodes
    return lifter.graph, count
