"""Code size of the batch-1 kernels (sm_90, nvcc): at batch 1 most launches run one CTA an SM,
so every SM fetches the kernel's code once, and a fully unrolled epilogue cost more in
instruction fetches than in maths (BERT-tiny's GEMMs under Nsight Compute, notes/cuda.md,
session 10). The staged epilogues keep one copy of the epilogue's code; these bounds sit well
below the unrolled kernels' sizes (in the docstrings) and above today's."""
import shutil

import pytest

from cubin_text import instructions
from tx2_infer_core.cuda.compile import nvcc_compile

pytestmark = pytest.mark.skipif(shutil.which('nvcc') is None, reason='needs nvcc')
ACTS = {'none|gelu': 1 << 0 | 1 << 10, 'none|relu|silu|gelu': 1 << 0 | 1 << 1 | 1 << 4 | 1 << 10}


@pytest.mark.parametrize('tile, acts, bound', [
    (64064, 'none|gelu', 3000),             # unrolled: 5,688; staged: 2,144
    (64064, 'none|relu|silu|gelu', 3600),   # unrolled: 8,088; staged: 2,560
    (128064, 'none|relu|silu|gelu', 3600),  # unrolled: 8,072; staged: 2,424
])
def test_conv_mma_epilogue_is_one_copy(tile, acts, bound):
    name = f'conv_mma_{tile // 1000}x{tile % 1000}'
    sizes = instructions(nvcc_compile('conv_mma', 90, {'CONV_MMA_TILE': tile,
                                                       'CONV_MMA_GATHER': 0,
                                                       'TX2_ACTS': ACTS[acts]}))
    assert sizes[name] <= bound, sizes


def test_layernorm_gemm_epilogue_is_one_copy():
    """The LayerNorm-fused GEMM (a cluster of 2): unrolled 4,024, staged 1,968."""
    sizes = instructions(nvcc_compile('conv_mma', 90, {'CONV_MMA_TILE': 64064,
                                                       'CONV_MMA_GATHER': 0, 'CONV_MMA_LN': 2,
                                                       'TX2_ACTS': 1}))
    assert sizes['conv_mma_64x64_ln'] <= 2800, sizes


def test_small_head_attention_build_is_smaller():
    """attention_mma for heads <= 64 (ATT_MMA_D=64): 3,312 against 4,096 for 128."""
    small = instructions(nvcc_compile('attention', 90, {'ATT_MMA_D': 64}))['attention_mma']
    large = instructions(nvcc_compile('attention', 90, {}))['attention_mma']
    assert small <= 3600 and small < large


@pytest.mark.parametrize('acts, bound', [('none|gelu', 2000), ('none|relu|silu|gelu', 2600)])
def test_int8_mma_epilogue_is_one_copy(acts, bound):
    """conv_int8_mma's staged epilogue, built (as the lowering names its modules) with the
    activations its launches apply: ~1,600 / 2,100 instructions for the tiles whose int32 tile
    fits the pipeline's shared memory; with every activation built, unrolled ~18,000, staged
    ~5,200 (4-channel vector stores)."""
    sizes = instructions(nvcc_compile('conv_int8_mma', 90, {'TX2_ACTS': ACTS[acts]}))
    assert all(sizes[f'conv_i8_mma_{t}'] <= bound for t in ('64x64', '128x64', '64x128')), sizes
