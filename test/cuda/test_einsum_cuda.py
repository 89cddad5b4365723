"""Einsum on the GPU (issue 14): one-Einsum graphs, which ``lower_graph`` rewrites into MatMul,
Transpose, Reshape, Slice, Mul and ReduceSum (``passes/rewrite_einsum.py``), against numpy's
einsum on the same FP16-rounded inputs, on attention shapes (BERT-base heads: 12 of 64 over
128 tokens) and the other forms exporters write; and a cuda build of a small Einsum-attention
model (level 3: the Einsums become one FusedAttention) against the numpy backend's build."""
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import assert_close, fp16_round, one_node_graph
from tx2_infer_core.backends.cuda_backend import CudaBackend
from tx2_infer_core.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'test' / 'core'))
from einsum_cases import attention_model  # noqa: E402

RNG = np.random.default_rng(14)
TOL = 3e-3  # relative L2: FP16 storage, FP32 accumulation
CASES = [  # equation, activation shapes, constant shapes, a kernel the lowering must use
    ('bhid,bhjd->bhij', [(1, 12, 128, 64), (1, 12, 128, 64)], [], 'matmul'),  # Q K^T
    ('bhij,bhjd->bhid', [(1, 12, 128, 128), (1, 12, 128, 64)], [], 'matmul'),  # P V
    ('bij,bjk->bik', [(8, 64, 32), (8, 32, 48)], [], 'matmul'),
    ('bid,bjd->bij', [(4, 50, 32), (4, 70, 32)], [], 'matmul'),
    ('bnd,dh->bnh', [(2, 50, 64)], [(64, 96)], ''),  # a projection by a constant matrix
    ('nchw,nc->nhw', [(2, 64, 20, 24), (2, 64)], [], 'global_reduce'),  # Mul + ReduceSum
    ('bi,bi->b', [(64, 512), (64, 512)], [], 'global_reduce'),
    ('i,j->ij', [(300,), (200,)], [], ''),
    ('bhid->bihd', [(1, 12, 128, 64)], [], ''),
    ('ij->i', [(256, 300)], [], 'global_reduce'),
    ('...ii->...i', [(4, 32, 32)], [], ''),
    ('ijk,jkl,lm->im', [(8, 6, 5), (6, 5, 16), (16, 12)], [], 'matmul'),
]


def _graph(equation, act_shapes, const_shapes):
    """(one-Einsum graph, feeds, the numpy.einsum answer), every operand FP16-exact."""
    acts = {f'x{i}': fp16_round(RNG.standard_normal(s)) for i, s in enumerate(act_shapes)}
    consts = {f'w{i}': fp16_round(RNG.standard_normal(s) / 8)
              for i, s in enumerate(const_shapes)}
    want = np.einsum(equation, *[a.astype(np.float64) for a in [*acts.values(),
                                                                *consts.values()]])
    graph = one_node_graph('Einsum', {n: a.shape for n, a in acts.items()}, want.shape,
                           consts, {'equation': equation})
    return graph, acts, want


@pytest.mark.parametrize('equation, acts, consts, kernel', CASES, ids=[c[0] for c in CASES])
def test_einsum_matches_numpy(equation, acts, consts, kernel):
    graph, feeds, want = _graph(equation, acts, consts)
    backend = CudaBackend()
    backend.prepare(graph)
    try:
        got = backend.run(feeds)['y']
        kernels = [k.kernel for k in backend.launches]
    finally:
        backend.close()
    assert not kernel or kernel in kernels, kernels
    assert_close(f'Einsum {equation} {want.shape}', got, want, TOL)


def test_einsum_attention_model_builds_for_cuda(tmp_path):
    """Level 3 makes the Einsum attention one FusedAttention after the merged QKV GEMM; the
    cuda FP16 build matches the numpy backend's (numpy's einsum, level 2)."""
    path = tmp_path / 'einsum_attention.onnx'
    onnx.save(attention_model(RNG, seq=128, dim=256, heads=4), str(path))
    x = {'x': fp16_round(RNG.standard_normal((1, 128, 256)))}
    cpu = Engine.build(path, backend='numpy')
    gpu = Engine.build(path, backend='cuda', precision='fp16')
    try:
        want, got = cpu.run(x)['y'], gpu.run(x)['y']
        kernels = [k.kernel for k in gpu.backend.launches]
    finally:
        cpu.close()
        gpu.close()
    assert any(k.startswith('attention') for k in kernels), kernels
    assert_close('Einsum attention model', got, want, 1e-2)
