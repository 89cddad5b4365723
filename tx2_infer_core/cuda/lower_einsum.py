"""Einsum on CUDA: ``lower_graph`` first rewrites every Einsum it can into MatMul, Transpose,
Reshape, Slice, Mul and ReduceSum nodes (``passes/rewrite_einsum.py``); an Einsum still here
is one it could not, refused naming its equation and why."""
from tx2_infer_core.passes.einsum_plan import EinsumRefused
from tx2_infer_core.passes.rewrite_einsum import node_plan


def lower_einsum(lc, node):
    """Refuse the Einsum ``node`` that the rewrite left (an integer operand, an equation the
    plan does not take)."""
    equation = node.attrs.get('equation', '')
    try:
        node_plan(lc.graph, node)
    except EinsumRefused as why:
        lc.unsupported(node, f"equation '{equation}': {why}")
    lc.unsupported(node, f"equation '{equation}': not rewritten before lowering")
