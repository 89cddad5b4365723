"""Lowering of FusedLinearNorm (``passes/fuse_linear_norm.py``): a product by a constant matrix
with FusedLinear's epilogue, then LayerNorm over each output row.

On sm_90, where the rows are 16-byte aligned and one output row spans at most
``LN_CLUSTER_MAX`` CTAs of the tensor-core tile, it is one ``conv_mma_<BM>x<BN>_ln`` launch
(``kernels/linear_norm.cuh``): the CTAs along a row form a thread-block cluster that sums the
row statistics in distributed shared memory and stores the normalised rows (and the sum, the
node's second output, when it has one). Elsewhere it is FusedLinear's GEMM launch into the sum
(the second output, else the normalised output itself) and a ``layernorm`` launch after it;
so too where ``launch_knobs.linear_splits`` splits that GEMM's K (few CTAs, or
$TX2_INFER_LINEAR_SPLITK=linear+norm).
"""
import numpy as np

from tx2_infer_core.cuda.cluster import CLUSTER_MIN_ARCH
from tx2_infer_core.cuda.launch import NULL, Launch
from tx2_infer_core.cuda.launch_knobs import linear_splits, norm_apart
from tx2_infer_core.cuda.lower_conv import (MMA_BK, conv_fields, linear_geometry,
                                            linear_launch, mma_config, mma_module, pick_kernel)
from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.lower_epilogue import fused_epilogue
from tx2_infer_core.cuda.lower_nn import layernorm_launch
from tx2_infer_core.passes.weights import column_vector

LN_CLUSTER_MAX = 8  # CTAs along a row: the portable cluster size
# conv_mma_<BM>x<BN>_ln's argument list: ConvParams, then the LayerNorm's.
CONV_MMA_LN = np.dtype([(n, params.CONV.fields[n][0]) for n in params.CONV.names]
                       + [('gamma', params.PTR), ('beta', params.PTR), ('ln_y', params.PTR),
                          ('ln_pix', 'i4'), ('eps', 'f4')], align=True)


def _norm_weights(lc, node, n) -> tuple:
    """(gamma, beta or NULL) FP32 weight Refs of the node's LayerNorm, one value per column."""
    refs = []
    for name in (list(node.inputs[5:7]) + [''])[:2]:
        vector = column_vector(lc.const(name), 2, n) if name else None
        if name and vector is None:
            lc.unsupported(node, f'a LayerNorm weight {name} not of one value per column')
        refs.append(lc.add_weight(vector.astype(np.float32)) if name else NULL)
    if refs[0] is NULL:
        lc.unsupported(node, 'a LayerNorm without its scale input')
    return tuple(refs)


def one_launch_ctas(lc, rows: int, k: int, n: int) -> int:
    """CTAs of the GEMM's one-launch form (``mma_config``'s tile, no split)."""
    bm, bn = mma_config(rows, n, -(-k // MMA_BK), 1, lc.sm_count, split_ok=False)[:2]
    return -(-rows // bm) * -(-n // bn)


def splits_instead(lc, rows: int, k: int, n: int, ctas: int) -> bool:
    """Whether the GEMM is to split K (``linear_splits`` allows it for a one-launch form of
    ``ctas`` CTAs and ``mma_config`` splits it) rather than take the one-launch form."""
    return (linear_splits(lc.arch, k, ctas)
            and mma_config(rows, n, -(-k // MMA_BK), 1, lc.sm_count, True, lc.arch)[3] > 1)


def cluster_tile(lc, rows: int, k: int, n: int, total: int):
    """(BM, BN, threads, CTAs along a row) of the one-launch form (``total`` CTAs) on
    ``lc``'s GPU, or None where it does not apply (module docstring)."""
    if lc.arch < CLUSTER_MIN_ARCH or k % 8 or splits_instead(lc, rows, k, n, total):
        return None
    kernel, _ = pick_kernel(lc.arch, lc.conv_path, k, n, 1, lambda v: True)
    if kernel != 'conv_mma':
        return None
    bm, bn, threads, _ = mma_config(rows, n, -(-k // MMA_BK), 1, lc.sm_count, split_ok=False)
    ctas = -(-n // bn)
    if ctas > LN_CLUSTER_MAX or norm_apart(lc.arch, total):
        return None
    return bm, bn, threads, ctas


def lower_linear_norm(lc, node):
    """FusedLinearNorm as one cluster launch, or a GEMM and a layernorm launch (module doc)."""
    x, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    s = lc.slot(node.outputs[1]) if len(node.outputs) > 1 and node.outputs[1] else None
    if not all(v.contiguous() for v in (x, y) + ((s,) if s else ())):
        lc.unsupported(node, 'row-major activations only')
    w = lc.const(node.inputs[1]).astype(np.float32)
    k, n = w.shape
    affine, eps = _norm_weights(lc, node, n), float(node.attrs.get('epsilon', 1e-5))
    geo = linear_geometry(x, k, n)
    rows = geo['Q']
    total = one_launch_ctas(lc, rows, k, n)
    tile = cluster_tile(lc, rows, k, n, total)
    if tile is None:
        sums = s or y
        return [linear_launch(lc, node, x, sums, w.T, epilogue=fused_epilogue(lc, node),
                              norm_ctas=total),
                layernorm_launch(node.name, sums.ref, y.ref, affine, rows, n, eps)]
    bm, bn, threads, ctas = tile
    w_ref = lc.add_weight(w.T, np.float16)
    fields = conv_fields((x.ref, k, 0), (s.ref if s else NULL, n, 0), geo, w_ref,
                         *fused_epilogue(lc, node))
    fields.update(gamma=affine[0], beta=affine[1], ln_y=y.ref, ln_pix=n, eps=eps)
    return [Launch(f'{mma_module(bm, bn, False)}@CONV_MMA_LN={ctas}', f'conv_mma_{bm}x{bn}_ln',
                   (-(-rows // bm), ctas, 1), (threads, 1, 1), CONV_MMA_LN, fields, node.name)]
