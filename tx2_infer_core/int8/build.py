"""``build_quantized``: an optimised FP32 graph and an INT8 schedule to a runnable plan."""
from tx2_infer_core.errors import Tx2InferError
from tx2_infer_core.passes.layouts import infer_layouts
from tx2_infer_core.passes.quantize import boundary_problems, quantize_graph
from tx2_infer_core.planner import ALIGNMENT, plan_memory


def build_quantized(graph, schedule, alignment=ALIGNMENT) -> tuple:
    """``(int8 graph, memory plan)`` of ``graph`` (already through ``passes.optimize``, so
    its convs are FusedConv nodes) with the layers of ``schedule`` ({FusedConv name:
    LayerQuant}) in INT8; ``graph`` is not changed.

    The numpy backend runs the result as it is: ``Engine(graph, plan, options, 'numpy')``
    (``options['precision']`` as the caller names it), or ``NumpyBackend().prepare(graph,
    plan)``. Declined layers are in ``graph.meta['int8']['declined']``; a broken int8/float
    boundary (a bug) raises ``Tx2InferError``.
    """
    quantized = quantize_graph(graph, schedule)
    problems = boundary_problems(quantized)
    if problems:
        raise Tx2InferError(f'quantize: the int8 graph is inconsistent: {problems[:3]}')
    infer_layouts(quantized)
    return quantized, plan_memory(quantized, alignment)
