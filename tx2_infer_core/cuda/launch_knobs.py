"""Launch-shape knobs for few-CTA transformer launches on sm_90 (issue 12: BERT-tiny's launches
are latency-bound, 4-16 CTAs on 132 SMs), read from the environment when a graph is lowered,
like $TX2_INFER_SPLITK. Unset, the lowering is today's; below sm_90 they change nothing.

- $TX2_INFER_ATTN_WARPS (4, the default, 2 or 1): warps of an ``attention_mma`` CTA, each
  16 query rows, so fewer warps give more CTAs for short sequences.
- $TX2_INFER_LINEAR_SPLITK ('auto', the default, 'off', 'linear', 'linear+norm', 'fused_few'):
  'linear' lets a product by a constant matrix (FusedLinear, MatMul, Gemm) whose K is at least
  ``SPLIT_MIN_K`` split K as ``mma_config`` splits a conv (few CTAs only), its splits summed
  in a thread-block cluster (the ``conv_mma_*_cl`` kernels; where $TX2_INFER_SPLITK=launch, no
  split: the product stays one launch); 'linear+norm' also lowers such a FusedLinearNorm as
  that split GEMM and a ``layernorm`` launch instead of its one ``_ln`` cluster launch (the
  split-K cluster along z and the row cluster along y in one launch would need a new kernel).
  'auto' lowers every FusedLinearNorm whose one launch would have at most ``FEW_CTAS`` CTAs
  as a GEMM (K split in a cluster where K >= ``SPLIT_MIN_K``) and a layernorm launch: BERT-tiny's
  FFN out (4 CTAs, each a K = 512 loop) splits, its o-proj (K = 128) is a plain GEMM; its 4-CTA
  ``_ln`` launch took 12.1 us under Nsight Compute, a plain GEMM 6.1 and a layernorm 4. On the
  H200, same run: 0.0714 ms a pass vs 0.0774 with only the FFN out split ('fused_few', the
  previous 'auto') and 0.0901 with neither ('off'): `launch_knobs_apart_h200.json`.
  'off' is the one-launch form always.
"""
from tx2_infer_core.cuda.cluster import CLUSTER_MIN_ARCH, env_choice, splitk_mode

ATTN_WARPS = (4, 2, 1)
LINEAR_SPLITK = ('auto', 'off', 'linear', 'linear+norm', 'fused_few')
SPLIT_MIN_K = 256
FEW_CTAS = 8  # 'auto': a LayerNorm GEMM of at most this many CTAs is lowered apart


def attention_warps(arch: int) -> int:
    """Warps of an attention_mma CTA at most on ``arch`` ($TX2_INFER_ATTN_WARPS from sm_90)."""
    warps = int(env_choice('TX2_INFER_ATTN_WARPS', ATTN_WARPS))
    return warps if arch >= CLUSTER_MIN_ARCH else ATTN_WARPS[0]


def linear_splits(arch: int, k: int, norm_ctas: int = None) -> bool:
    """Whether a constant-matrix product of depth ``k`` on ``arch`` may split K in a cluster
    ($TX2_INFER_LINEAR_SPLITK); ``norm_ctas``: the product of a FusedLinearNorm whose one
    launch would have that many CTAs (None: any other product)."""
    mode = env_choice('TX2_INFER_LINEAR_SPLITK', LINEAR_SPLITK)
    norm = norm_ctas is not None
    if mode in ('auto', 'fused_few'):
        wanted = norm and norm_ctas <= FEW_CTAS
    else:
        wanted = mode == 'linear+norm' if norm else mode in ('linear', 'linear+norm')
    return (wanted and k >= SPLIT_MIN_K and arch >= CLUSTER_MIN_ARCH
            and splitk_mode(arch) == 'cluster')


def norm_apart(arch: int, ctas: int) -> bool:
    """Whether a FusedLinearNorm whose one launch would have ``ctas`` CTAs is lowered as a
    GEMM and a layernorm launch on ``arch`` ($TX2_INFER_LINEAR_SPLITK auto, few CTAs)."""
    mode = env_choice('TX2_INFER_LINEAR_SPLITK', LINEAR_SPLITK)
    return mode == 'auto' and ctas <= FEW_CTAS and arch >= CLUSTER_MIN_ARCH
