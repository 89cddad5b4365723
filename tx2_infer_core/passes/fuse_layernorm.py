"""Fuse a decomposed layer normalisation into one ``LayerNormalization`` node (pass level 3:
one kernel on CUDA instead of six).

Pattern (how paddle2onnx and older torch exports write it)::

    x ──▶ ReduceMean(last axes) ──▶ m
    x, m ──▶ Sub ──▶ d ──┬──▶ Pow(2) | Mul(d, d) ──▶ ReduceMean(same axes) ──▶ v
                         │   v ──▶ Add(eps) ──▶ Sqrt ──▶ s
                         └──▶ Div(d, s) ──▶ n ──▶ [Mul(gamma)] ──▶ [Add(beta)] ──▶ y

becomes ``LayerNormalization(x, gamma, beta, axis, epsilon) -> y``, with gamma ones when the
Mul is missing (``layernorm_params`` broadcasts them to the normalised shape).

Safety: every intermediate value has only the readers drawn (d: the square and the Div) and is
no graph output; both means keep dims and reduce the same trailing axes; eps, gamma and beta are
float constants, gamma and beta broadcasting over the normalised axes only; float data.
"""
import numpy as np

from tx2_infer_core.ir import Node
from tx2_infer_core.passes.graph_edit import (FLOAT_DTYPES, add_weight, constant, dtype_of,
                                              rewrite_nodes, sole_consumer)


def layernorm_params(gamma, beta, norm_shape) -> tuple:
    """(scale, bias) of the normalised shape from the decomposition's ``gamma`` and ``beta``
    (None: 1 and no bias), or None when one varies along a dim that is not normalised."""
    out = []
    for c in (gamma, beta):
        if c is None:
            out.append(None)
            continue
        c = np.asarray(c, np.float32)
        lead = c.shape[:max(c.ndim - len(norm_shape), 0)]
        tail = c.shape[len(lead):]
        if any(d != 1 for d in lead) or any(
                d not in (1, n) for d, n in zip(tail[::-1], tuple(norm_shape)[::-1])):
            return None
        out.append(np.broadcast_to(c.reshape(tail), norm_shape).copy())
    scale = out[0] if out[0] is not None else np.ones(norm_shape, np.float32)
    return scale, out[1]


class _Chain:
    """Walks the pattern from one ReduceMean, collecting its nodes (see the module doc)."""

    def __init__(self, graph, consumers):
        self.graph, self.consumers = graph, consumers

    def one(self, name, op):
        node = sole_consumer(self.graph, self.consumers, name)
        return node if node is not None and node.op == op else None

    def scalar(self, node, value_input):
        """The scalar constant ``node`` combines ``value_input`` with, or None."""
        others = [i for i in node.inputs if i != value_input]
        c = constant(self.graph, others[0]) if len(others) == 1 else None
        return float(np.asarray(c).reshape(-1)[0]) if c is not None and np.size(c) == 1 \
            else None

    def const_operand(self, node, value_input):
        others = [i for i in node.inputs if i != value_input]
        return constant(self.graph, others[0]) if len(others) == 1 else None


def reduced_axes(graph, node, rank):
    """The sorted axes of ReduceMean ``node`` (keepdims=1, constant axes), or None."""
    if not node.attrs.get('keepdims', 1):
        return None
    axes = node.attrs.get('axes')
    if len(node.inputs) > 1 and node.inputs[1]:
        axes = constant(graph, node.inputs[1])
    if axes is None:
        return None
    return sorted(int(a) % rank for a in np.asarray(axes).reshape(-1))


def _square(chain, d):
    """The node squaring ``d`` (Pow 2 or d * d), the other reader of ``d``."""
    readers = list({id(n): n for n in chain.consumers.get(d, [])}.values())
    if len(readers) != 2 or d in chain.graph.outputs:
        return None, None
    for sq, div in (readers, readers[::-1]):
        pow2 = sq.op == 'Pow' and sq.inputs[0] == d and chain.scalar(sq, d) == 2.0
        if (pow2 or (sq.op == 'Mul' and sq.inputs == [d, d])) and div.op == 'Div' \
                and div.inputs[0] == d:
            return sq, div
    return None, None


def _variance(chain, sq, axes, rank):
    """(ReduceMean, Add eps, Sqrt, eps) after the square, or None."""
    mean2 = chain.one(sq.outputs[0], 'ReduceMean')
    if mean2 is None or reduced_axes(chain.graph, mean2, rank) != axes:
        return None
    add = chain.one(mean2.outputs[0], 'Add')
    eps = chain.scalar(add, mean2.outputs[0]) if add is not None else None
    sqrt = chain.one(add.outputs[0], 'Sqrt') if eps is not None else None
    return None if sqrt is None else (mean2, add, sqrt, eps)


def _affine(chain, n):
    """([Mul, Add] nodes found, gamma, beta, output) after the normalised value ``n``."""
    nodes, gamma, beta, out = [], None, None, n
    mul = chain.one(out, 'Mul')
    if mul is not None and chain.const_operand(mul, out) is not None:
        nodes, gamma, out = [mul], chain.const_operand(mul, out), mul.outputs[0]
    add = chain.one(out, 'Add')
    if add is not None and chain.const_operand(add, out) is not None:
        nodes, beta, out = nodes + [add], chain.const_operand(add, out), add.outputs[0]
    return nodes, gamma, beta, out


def match_layernorm(graph, consumers, mean):
    """(nodes of the pattern, x, scale, bias, axis, eps, output) from ReduceMean ``mean``, or
    None."""
    chain, x = _Chain(graph, consumers), mean.inputs[0]
    if x not in graph.values or dtype_of(graph, x) not in FLOAT_DTYPES:
        return None
    rank = len(graph.values[x].shape)
    axes = reduced_axes(graph, mean, rank)
    if not axes or axes != list(range(axes[0], rank)):
        return None
    sub = chain.one(mean.outputs[0], 'Sub')
    if sub is None or sub.inputs != [x, mean.outputs[0]]:
        return None
    sq, div = _square(chain, sub.outputs[0])
    var = _variance(chain, sq, axes, rank) if sq is not None else None
    if var is None or div.inputs[1] != var[2].outputs[0]:
        return None
    affine, gamma, beta, out = _affine(chain, div.outputs[0])
    params = layernorm_params(gamma, beta, graph.values[x].shape[axes[0]:])
    if params is None:
        return None
    nodes = [mean, sub, sq, *var[:3], div] + affine
    return nodes, x, params[0], params[1], axes[0], var[3], out


def fuse_layernorm(graph) -> int:
    """Write every decomposed layer normalisation as one LayerNormalization node; returns
    how many."""
    consumers = graph.consumers()
    replace, remove = {}, []
    for node in graph.nodes:
        found = match_layernorm(graph, consumers, node) if node.op == 'ReduceMean' else None
        if found is None or any(id(n) in replace or id(n) in remove for n in found[0]):
            continue
        nodes, x, scale, bias, axis, eps, out = found
        inputs = [x, add_weight(graph, f'{nodes[-1].name}.scale', scale)]
        if bias is not None:
            inputs.append(add_weight(graph, f'{nodes[-1].name}.bias', bias))
        replace[id(nodes[-1])] = [Node('LayerNormalization', nodes[-1].name, inputs, [out],
                                       {'axis': axis, 'epsilon': eps})]
        remove += [id(n) for n in nodes[:-1]]
    rewrite_nodes(graph, replace=replace, remove=remove)
    return len(replace)
