"""Pointwise fusion: chains of elementwise ops become one node (the groups and their maths
are in ``pointwise_chains.py``; the rewrites here).

- ``fuse_activation_patterns``: a group of one input that computes a known activation
  (decomposed HardSwish ``x * clip(x + 3, 0, 6) / 6``, HardSigmoid, SiLU ``x * sigmoid(x)`` or
  ``x / (1 + exp(-x))``, GELU's erf form) becomes that one activation node, which
  ``fuse_conv_activation`` then folds into the convolution before it (run it first).
- ``fuse_pointwise``: every other group of two or more nodes becomes one ``FusedPointwise``
  node whose ``program`` (``ops/fused.py``) lists the steps: one generated kernel on CUDA
  (``cuda/codegen_pointwise.py``). Run it after the convolution fusions.
"""
from tx2_infer_core.ir import Node
from tx2_infer_core.ops.fused import program_text
from tx2_infer_core.passes.graph_edit import rewrite_nodes
from tx2_infer_core.passes.pointwise_chains import activation_groups, chain_groups, \
    group_program


def _replace(graph, groups_and_nodes) -> int:
    """Put each new node in place of its group's last node, drop the others."""
    replace, remove = {}, []
    for group, node in groups_and_nodes:
        replace[id(group[-1])] = [node]
        remove += [id(n) for n in group[:-1]]
    rewrite_nodes(graph, replace=replace, remove=remove)
    return len(replace)


def fuse_activation_patterns(graph) -> int:
    """Write decomposed activations as one activation node each; returns how many."""
    return _replace(graph, [(group, Node(op, group[-1].name, [x], group[-1].outputs[:1], attrs))
                            for group, x, (op, attrs) in activation_groups(graph)])


def fuse_pointwise(graph) -> int:
    """Fuse every chain of two or more elementwise ops into one ``FusedPointwise`` node;
    returns the number of fused nodes made."""
    made = []
    for group in chain_groups(graph):
        inputs, steps = group_program(graph, group)
        made.append((group, Node('FusedPointwise', group[-1].name, inputs,
                                 group[-1].outputs[:1], {'program': program_text(steps)})))
    return _replace(graph, made)
