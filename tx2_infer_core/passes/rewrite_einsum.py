"""Einsum as the ops the CUDA backend lowers (MatMul, Transpose, Reshape, Slice, Mul, ReduceSum,
Identity): the thin matcher around ``einsum_plan.einsum_plan``.

Pattern::

    A ─┐                                   A ─Transpose─Reshape─┐
       Einsum('bhid,bhjd->bhij') ─▶ Y  =>                       MatMul ─▶ Y
    B ─┘                                   B ─Transpose─Reshape─┘   (say, see einsum_plan)

Safety: every shape static, every operand and the output a float; the equation one the plan
takes (else the node is left alone and the CUDA lowering refuses it, naming the equation and
why: ``cuda/lower_einsum.py``). The last step writes the Einsum's own output, so graph output
names stay. Pass level 3 (the cuda builds) runs it first, so the later passes see plain MatMuls
(attention, linear layers); ``cuda.lowering.lower_graph`` runs it again on the graph it lowers
(plans made at another level, one-node graphs). The cpu levels keep the Einsum node: numpy's
einsum, bit for bit.
"""
import numpy as np

from tx2_infer_core.ir import Node, Value
from tx2_infer_core.passes.einsum_plan import EinsumRefused, einsum_plan
from tx2_infer_core.passes.graph_edit import add_weight, dtype_of, rewrite_nodes, shape_of, \
    unique_name


def node_plan(graph, node) -> list:
    """The plan (``einsum_plan.Step`` list) of Einsum ``node``; raises ``EinsumRefused``."""
    names = [n for n in node.inputs if n] + node.outputs[:1]
    shapes = [shape_of(graph, n) for n in names]
    if any(s is None for s in shapes):
        raise EinsumRefused('a shape not known at build time')
    dtypes = sorted({dtype_of(graph, n) or '?' for n in names})
    if any(d == '?' or np.dtype(d).kind != 'f' for d in dtypes):
        raise EinsumRefused(f"dtype {', '.join(dtypes)}: floats only")
    steps = einsum_plan(node.attrs.get('equation', ''), shapes[:-1])
    if steps[-1].shape != shapes[-1]:
        raise EinsumRefused(f'the plan makes {steps[-1].shape}, the output is {shapes[-1]}')
    return steps


def _ints(graph, base, values) -> str:
    return add_weight(graph, base, np.asarray(values, np.int64))


def _node(graph, step, name, inputs, out) -> Node:
    """The node of one plan step: ``inputs`` its tensors' names, writing ``out``."""
    if step.op == 'Transpose':
        return Node('Transpose', name, inputs, [out], {'perm': list(step.args)})
    if step.op == 'Reshape':
        return Node('Reshape', name, inputs + [_ints(graph, f'{name}/shape', step.shape)], [out])
    if step.op == 'Slice':
        axis, stride, end = step.args
        bounds = [_ints(graph, f'{name}/{k}', [v])
                  for k, v in (('starts', 0), ('ends', end), ('axes', axis), ('steps', stride))]
        return Node('Slice', name, inputs + bounds, [out])
    if step.op == 'ReduceSum':
        return Node('ReduceSum', name, inputs + [_ints(graph, f'{name}/axes', step.args)], [out],
                    {'keepdims': 0})
    return Node(step.op, name, inputs, [out])  # MatMul, Mul, Identity


def einsum_nodes(graph, node, steps) -> list:
    """The nodes of ``steps`` for Einsum ``node`` (their values and constants added)."""
    tensors = [n for n in node.inputs if n]
    dtype = dtype_of(graph, node.outputs[0])
    nodes = []
    for i, step in enumerate(steps):
        name = f'{node.name}/{step.op.lower()}{i}'
        if i == len(steps) - 1:
            out = node.outputs[0]
        else:
            out = unique_name(graph, f'{node.outputs[0]}.einsum{i}')
            graph.values[out] = Value(out, step.shape, dtype, '')
        nodes.append(_node(graph, step, name, [tensors[j] for j in step.inputs], out))
        tensors.append(out)
    return nodes


def rewrite_einsum(graph) -> int:
    """Replace every Einsum that has a plan by its steps' nodes; returns how many."""
    matches = []
    for node in graph.nodes:
        if node.op != 'Einsum':
            continue
        try:
            matches.append((node, node_plan(graph, node)))
        except EinsumRefused:
            continue  # left alone: the CUDA lowering refuses it by name
    replace = {id(node): einsum_nodes(graph, node, steps) for node, steps in matches}
    rewrite_nodes(graph, replace)
    return len(matches)


def without_einsum(graph) -> tuple:
    """(graph, count): a copy of ``graph`` with its Einsum nodes rewritten when it has any;
    the same graph when it has none."""
    if not any(node.op == 'Einsum' for node in graph.nodes):
        return graph, 0
    graph = graph.copy()
    return graph, rewrite_einsum(graph)
