"""The ONNX node cases of what the CUDA lowering gained here (Gather with constant indices,
the 1-D pools; the 1-D ConvTranspose is in ``test_cuda_lowering_convt.py``), without a GPU:
each case as the GPU conformance test builds it (``test/cuda/test_node_conformance_cuda.py``:
data an activation, indices and weights constants), lowered for sm_90 and run over the
emulated arena (``emulated_arena``: the copy and gather kernels as launched, the 2-D twins of
the 1-D pools by the numpy ops), within the conformance test's FP16 tolerance of the ONNX
expected outputs."""

import pytest

import test_onnx_node_conformance as cpu
from node_cases import GPU, data_sets
from emulated_arena import emulate
from tx2_infer_core.cuda.lift_1d import lift_1d

CASES = {'test_gather_0': 'gather', 'test_gather_1': 'gather',
         'test_gather_2d_indices': 'unary', 'test_gather_negative_indices': 'gather',
         'test_maxpool_1d_default': 'pool2d', 'test_averagepool_1d_default': 'pool2d'}


@pytest.fixture(scope='module')
def folders():
    return {f.name: f for found in cpu.collect_cases().values() for f in found}


@pytest.mark.parametrize('name', sorted(CASES))
def test_node_case_lowers_and_matches(name, folders):
    for graph, acts, expected in data_sets(folders[name]):
        got, lowered = emulate(lift_1d(graph)[0], acts, {'Gather', 'Unsqueeze', 'Squeeze'})
        assert CASES[name] in [k.kernel for k in lowered.launches]
        for out, want in expected.items():
            assert GPU.close(got[out], want), (name, out)
