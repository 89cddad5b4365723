"""Graph passes: fold constants, remove no-ops, fold batch-norm, fuse Conv+activation(+residual).

``optimize(graph)`` copies the graph, runs the pipeline and returns ``(graph, report)`` where
``report`` maps each pass name to the rewrites it made; each pass logs one line on
``tx2_infer.passes``. Every pass is also a plain function ``pass_name(graph) -> int`` that
mutates the graph it is given. Concat nodes are left intact: placing producers straight into
their slice of a Concat is the memory planner's job.
"""
import logging

from tx2_infer_core.passes.fold_batchnorm import fold_batchnorm, fold_scale_shift
from tx2_infer_core.passes.fold_constants import fold_constants
from tx2_infer_core.passes.fold_input_affine import fold_input_affine
from tx2_infer_core.passes.fold_pad import fold_pads
from tx2_infer_core.passes.fold_post_affine import fold_post_affine
from tx2_infer_core.passes.fuse_attention import fuse_attention
from tx2_infer_core.passes.fuse_conv import fuse_conv_activation
from tx2_infer_core.passes.fuse_layernorm import fuse_layernorm
from tx2_infer_core.passes.fuse_linear import fuse_linear
from tx2_infer_core.passes.fuse_linear_norm import fuse_linear_norm
from tx2_infer_core.passes.fuse_pointwise import fuse_activation_patterns, fuse_pointwise
from tx2_infer_core.passes.fuse_residual import fuse_residual_add
from tx2_infer_core.passes.graph_edit import drop_stale_values
from tx2_infer_core.passes.layouts import infer_layouts
from tx2_infer_core.passes.merge_matmuls import merge_matmuls
from tx2_infer_core.passes.remove_noops import remove_noops
from tx2_infer_core.passes.requantize import requantize_in_float
from tx2_infer_core.passes.rewrite_einsum import rewrite_einsum
from tx2_infer_core.passes.sink_transposes import sink_transposes
from tx2_infer_core.passes.weights import fuse_conv_affine_weights, fuse_conv_bn_weights

log = logging.getLogger('tx2_infer.passes')

# level -> passes, in order. Level 1 only simplifies; level 2 also fuses into FusedConv;
# level 3 (the cuda backend's) also finds decomposed activations and fuses the remaining chains
# of elementwise ops into FusedPointwise nodes (the numpy and cuda backends run them; the ONNX
# export behind the ort backend does not), and attention into FusedAttention (its Q, K, V
# projections into one MatMul) before the pointwise fusions take its scale and mask ops.
# Every level from 1 folds spatial Pads into Conv/MaxPool; from 2, affine chains into the
# unpadded Conv after them, and per-channel (per-column) constants into the Conv (MatMul or
# Gemm by a constant matrix) before them, ahead of the residual fusions; level 3 also writes
# decomposed layer norms as LayerNormalization and takes each product by a constant matrix with
# its bias, activation (GELU too) and residual into one FusedLinear (a GEMM with that epilogue
# on CUDA), then the LayerNorm of such a product's rows into one FusedLinearNorm
# (fuse_linear_norm.py), before the pointwise fusion; and it folds a scalar affine after an
# activated FusedConv (FusedLinear) into its epilogue's post_scale / post_shift
# (fold_post_affine.py: PP-LCNet's learnable affine blocks), before the residual fusion and
# again after fuse_linear.
# Level 3 first writes each Einsum as MatMul, Transpose, Reshape, Mul, ReduceSum nodes (the
# CUDA kernels'; the cpu levels keep numpy's einsum, bit for bit), and the QLinear ops' exact
# requantisation (int32 Cast, DequantizeLinear: ONNX Runtime's rounding, which the cpu levels
# keep) as a Mul that folds into the weights (requantize.py: FP16 holds no int32 sums).
SIMPLIFY = [fold_constants, remove_noops, sink_transposes, remove_noops, fold_pads]
FUSE = [fold_batchnorm, fold_scale_shift, fuse_conv_activation, fuse_residual_add,
        fold_input_affine]
FUSE_POINTWISE = [requantize_in_float, fuse_layernorm, fold_batchnorm, fold_scale_shift,
                  fuse_activation_patterns, fuse_conv_activation, fold_post_affine,
                  fuse_residual_add, fold_input_affine, fuse_linear, fold_post_affine,
                  fuse_linear_norm, fuse_pointwise]
ATTENTION = [fuse_attention, merge_matmuls]
PIPELINES = {0: [], 1: SIMPLIFY, 2: SIMPLIFY + FUSE,
             3: [rewrite_einsum] + SIMPLIFY + ATTENTION + FUSE_POINTWISE}
POINTWISE_LEVEL = 3

__all__ = ['optimize', 'PIPELINES', 'fold_constants', 'remove_noops', 'sink_transposes',
           'fold_batchnorm', 'fold_scale_shift', 'fuse_conv_activation', 'fuse_residual_add',
           'infer_layouts', 'fuse_conv_bn_weights', 'fuse_conv_affine_weights',
           'fuse_activation_patterns', 'fuse_pointwise', 'POINTWISE_LEVEL', 'fuse_attention',
           'merge_matmuls', 'fold_pads', 'fold_input_affine', 'fuse_layernorm', 'fuse_linear',
           'rewrite_einsum', 'fold_post_affine', 'requantize_in_float', 'fuse_linear_norm']


def run_pass(graph, fn) -> int:
    """Run one pass on ``graph`` in place, tidy dead nodes and values, log and return its count."""
    before = len(graph.nodes)
    count = fn(graph)
    graph.prune()
    drop_stale_values(graph)
    log.info('%s: %d rewrites (%d -> %d nodes)', fn.__name__, count, before, len(graph.nodes))
    return count


def optimize(graph, level=2):
    """Optimise a copy of ``graph``; returns ``(optimised graph, {pass name: rewrites})``.

    ``level`` 0 copies only, 1 folds constants and removes no-ops and layout transposes, 2 (the
    default) also folds batch-norm and fuses Conv + activation + residual into FusedConv, 3
    also rewrites Einsum (``rewrite_einsum.py``) and fuses decomposed activations and chains
    of elementwise ops (``fuse_pointwise.py``).
    """
    if level not in PIPELINES:
        raise ValueError(f'optimize: level must be one of {sorted(PIPELINES)}, got {level}')
    graph = graph.copy()
    report = {}
    for fn in PIPELINES[level]:
        report[fn.__name__] = report.get(fn.__name__, 0) + run_pass(graph, fn)
    report['infer_layouts'] = infer_layouts(graph)
    return graph, report
