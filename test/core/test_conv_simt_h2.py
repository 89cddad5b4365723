"""conv_simt_h2 (kernels/conv.cu, half2 FMA) without a GPU: the SIMT lowering picks it (the
FP32-FMA kernels stay behind conv_path 'simt_fp32'), its PTX multiplies in f16x2 on every
target, and the numpy model of its chunked FP16 accumulation (simt_h2_cases.py) against exact
maths on real layers: within the GPU tests' tolerance, and never flushed beyond it."""
import collections
import re
import shutil
import subprocess

import numpy as np
import pytest

import simt_h2_cases as cases
from tx2_infer_core.backends.cuda_backend import CudaBackend
from tx2_infer_core.cuda import compile as cc
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import Tx2InferError

H2 = ('conv_simt_h2', 'conv_simt_h2_v8')
FP32 = {'conv_simt_h2': 'conv_simt', 'conv_simt_h2_v8': 'conv_simt_v4'}


def _gemm_convs(lowered):
    return [k for k in lowered.launches if k.kernel.startswith('conv_simt')]


@pytest.mark.parametrize('arch,path', [(62, 'auto'), (62, 'simt'), (90, 'simt')])
def test_simt_lowering_picks_the_half2_kernel(arch, path):
    """YOLOv3-tiny: the 3-channel stem on conv_simt_h2 (2-byte loads), every other conv on
    conv_simt_h2_v8 (16-byte loads)."""
    graph, _ = cases.model_env('yolov3-tiny')
    convs = _gemm_convs(lower_graph(graph, arch, path))
    kernels = {k.node: k.kernel for k in convs}
    assert len(kernels) == 13 and set(kernels.values()) == set(H2)
    assert kernels['conv_0'] == 'conv_simt_h2'
    assert all(k == 'conv_simt_h2_v8' for n, k in kernels.items() if n != 'conv_0')


@pytest.mark.parametrize('arch', [62, 90])
def test_simt_fp32_keeps_the_fp32_kernels_with_the_same_launches(arch):
    graph, _ = cases.model_env('yolov3-tiny')
    h2 = lower_graph(graph, arch, 'simt')
    fp32 = lower_graph(graph, arch, 'simt_fp32')
    assert fp32.conv_path == 'simt_fp32'
    assert len(h2.launches) == len(fp32.launches)
    bases = collections.defaultdict(int)  # every buffer at 0: the records compare as bytes
    for a, b in zip(h2.launches, fp32.launches):
        assert b.kernel == FP32.get(a.kernel, a.kernel)
        assert (a.module, a.grid, a.block, a.node) == (b.module, b.grid, b.block, b.node)
        assert a.bind(bases).tobytes() == b.bind(bases).tobytes()


def test_tensor_cores_unchanged():
    graph, _ = cases.model_env('yolov3-tiny')
    assert not _gemm_convs(lower_graph(graph, 90, 'auto'))


def test_offsets_case_reads_and_writes_channel_views():
    """The placed Split -> conv -> Concat graph runs on conv_simt_h2_v8 with all three channel
    offsets at 128 of 384 (what test/cuda/test_simt_h2_cuda.py checks on the GPU)."""
    graph, _, _ = cases.offsets_case()
    conv = next(k for k in lower_graph(graph, 62).launches if k.node == 'conv')
    f = conv.fields
    assert conv.kernel == 'conv_simt_h2_v8'
    assert (f['x_off'], f['y_off'], f['r_off']) == (128, 128, 128)
    assert (f['x_pix'], f['y_pix'], f['r_pix']) == (384, 384, 384)


def test_unknown_conv_path_is_refused_by_name():
    graph, _ = cases.model_env('yolov3-tiny')
    with pytest.raises(Tx2InferError, match="simt_fp32.*not 'simt16'"):
        lower_graph(graph, 62, 'simt16')
    with pytest.raises(Tx2InferError, match='simt_fp32'):
        CudaBackend(conv_path='fp32')


# -- the instructions ----------------------------------------------------------------------
def _entry(ptx, name) -> str:
    start = ptx.index(f'.entry {name}(')
    nxt = ptx.find('.entry ', start + 1)
    return ptx[start:nxt if nxt > 0 else len(ptx)]


def _check_h2_ptx(ptx):
    """16 pairs x 4 x 4 outputs of f16x2 FMA a chunk, one FP16 lane sum per output a flush;
    the FP32 kernel has none."""
    for name in H2:
        body = _entry(ptx, name)
        assert body.count('fma.rn.f16x2') == 256, name
        assert len(re.findall(r'\badd\.f16\b', body)) == 16, name
    assert 'fma.rn.f16x2' not in _entry(ptx, 'conv_simt_v4')


@pytest.mark.skipif(not cc.nvrtc_available(), reason='nvidia-cuda-nvrtc-cu12 not installed')
@pytest.mark.parametrize('arch', [62, 72, 87])
def test_h2_ptx_multiplies_in_half2_nvrtc(arch):
    _check_h2_ptx(cc.nvrtc_compile('conv', arch, {}, ptx=True).decode())


@pytest.mark.skipif(shutil.which('nvcc') is None, reason='nvcc (CUDA toolkit) not installed')
def test_h2_ptx_multiplies_in_half2_sm90(tmp_path):
    out = tmp_path / 'conv.ptx'
    subprocess.run(['nvcc', '-ptx', '-arch=sm_90', f'-I{cc.kernel_dir()}', '-o', str(out),
                    str(cc.kernel_dir() / 'conv.cu')], check=True, capture_output=True)
    _check_h2_ptx(out.read_text())


# -- the model of the arithmetic -----------------------------------------------------------
def test_model_pairs_words_as_the_kernel_does():
    """With small integers every FP16 sum is exact: the model is then the exact convolution
    (an odd channel count, stride 2, padding), so its words pair the right channels."""
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, (1, 5, 9, 7)).astype(np.float32)
    w = rng.integers(-3, 4, (6, 5, 3, 3)).astype(np.float32)
    attrs = dict(strides=[2, 2], pads=[1, 1, 1, 1])
    from tx2_infer_core.ops.conv import Conv
    want = Conv(x.astype(np.float64), w.astype(np.float64), **attrs)
    pixels = np.arange(want.shape[2] * want.shape[3])
    a, b = cases.pair_words(x, w, attrs, pixels)
    assert a.shape[1] == 9 * 3  # 3 pairs a tap, the last one half padding
    got = cases.h2_accumulate(a, b)
    np.testing.assert_array_equal(got, want.reshape(6, -1).T)


def test_tolerance_separates_flushed_from_unflushed():
    """YOLOv3-tiny conv_12 (3x3, 512 -> 1024 channels, K = 4608) on its real input: the model's
    outputs are within REL_L2_TOL / 2 of the float64 reference, never flushed (a lane sums
    2304 products in FP16) more than twice REL_L2_TOL from it."""
    case = cases.layer_case('yolov3-tiny', 'conv_12')
    pixels = cases.sample_pixels(case, 8)
    ref = case[2].reshape(case[2].shape[1], -1)[:, pixels].T
    flushed = cases.rel_l2(cases.h2_model(case, pixels), ref)
    unflushed = cases.rel_l2(cases.h2_model(case, pixels, chunk=10 ** 9), ref)
    print(f'conv_12: flushed {flushed:.2e}, unflushed {unflushed:.2e}, '
          f'tolerance {cases.REL_L2_TOL:.1e}')
    assert flushed < cases.REL_L2_TOL / 2 and unflushed > 2 * cases.REL_L2_TOL
