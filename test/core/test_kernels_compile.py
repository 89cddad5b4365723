"""CI compile check: every kernels/*.cu compiles for every GPU we target, without a GPU.

sm_90 (H100) with the installed CUDA 13 nvcc; sm_62 (Jetson TX2), sm_72 (Xavier) and sm_87 (Orin)
with NVRTC 12.9 from PyPI, since CUDA 13 no longer targets them. A compile error fails the test.
"""
import shutil
import subprocess
from pathlib import Path

import pytest

from tx2_infer_core.cuda import compile as cc

SOURCES = [p.stem for p in cc.kernel_sources()]
NVRTC_ARCHS = [62, 72, 87]


def test_kernel_files_exist():
    for family in ('conv', 'pool', 'resize', 'elementwise', 'gemm', 'softmax', 'layernorm',
                   'preprocess', 'yolo', 'lstm', 'recurrent', 'norm', 'arg', 'scan'):
        assert family in SOURCES, f'kernels/{family}.cu is missing'


@pytest.mark.skipif(shutil.which('nvcc') is None, reason='nvcc (CUDA toolkit) not installed')
@pytest.mark.parametrize('name', SOURCES)
def test_compiles_sm90_nvcc(name):
    cubin = cc.compile_cached(name, 90, compiler='nvcc')
    assert cubin[:4] == b'\x7fELF'


@pytest.mark.skipif(not cc.nvrtc_available(), reason='nvidia-cuda-nvrtc-cu12 not installed')
@pytest.mark.parametrize('arch', NVRTC_ARCHS)
@pytest.mark.parametrize('name', SOURCES)
def test_compiles_nvrtc(name, arch):
    cubin = cc.compile_cached(name, arch, compiler='nvrtc')
    assert cubin[:4] == b'\x7fELF'


# INT8 (kernels/conv_int8*.cu): the instruction each arch's path claims, in NVRTC's PTX.
DP4A_PTX = 'dp4a.s32.s32'
IMMA_PTX = 'mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32'


def int8_ptx(name, arch) -> str:
    return cc.nvrtc_compile(name, arch, {}, ptx=True).decode()


@pytest.mark.skipif(not cc.nvrtc_available(), reason='nvidia-cuda-nvrtc-cu12 not installed')
@pytest.mark.parametrize('arch', NVRTC_ARCHS)
def test_int8_dp4a_path_uses_dp4a(arch):
    """conv_dp4a (the TX2's sm_62 path, also Xavier's sm_72 in this version) is dp4a code."""
    ptx = int8_ptx('conv_int8', arch)
    for kernel in ('conv_dp4a', 'conv_dp4a_w', 'quantize_nhwc', 'dequantize_nhwc'):
        assert f'.entry {kernel}(' in ptx
    assert ptx.count(DP4A_PTX) >= 16  # the unrolled 4x4 inner product, both kernels


@pytest.mark.skipif(not cc.nvrtc_available(), reason='nvidia-cuda-nvrtc-cu12 not installed')
@pytest.mark.parametrize('arch', NVRTC_ARCHS)
def test_int8_mma_path_only_from_sm80(arch):
    """conv_i8_mma holds integer mma.sync on sm_87 (Orin); on sm_62/72 it is a trap stub the
    host never launches (lower_int8.MMA_MIN_ARCH)."""
    ptx = int8_ptx('conv_int8_mma', arch)
    assert '.entry conv_i8_mma_64x64(' in ptx
    assert (IMMA_PTX in ptx) == (arch >= 80)


@pytest.mark.skipif(shutil.which('nvcc') is None, reason='nvcc (CUDA toolkit) not installed')
def test_int8_mma_sm90_nvcc_ptx(tmp_path):
    """nvcc 13 for sm_90 (Hopper): the integer mma.sync path."""
    out = tmp_path / 'i8.ptx'
    src = cc.kernel_dir() / 'conv_int8_mma.cu'
    subprocess.run(['nvcc', '-ptx', '-arch=sm_90', f'-I{cc.kernel_dir()}', '-o', str(out),
                    str(src)], check=True, capture_output=True)
    assert IMMA_PTX in out.read_text()


def test_compile_error_is_reported(tmp_path, monkeypatch):
    (tmp_path / 'broken.cu').write_text('extern "C" __global__ void k() { undefined_thing; }\n')
    monkeypatch.setenv(cc.KERNEL_DIR_ENV, str(tmp_path))
    compiler = 'nvcc' if shutil.which('nvcc') else 'nvrtc'
    with pytest.raises(cc.CompileError, match='undefined_thing'):
        cc.compile_cached('broken', 90 if compiler == 'nvcc' else 62, compiler=compiler)


def test_cache_key_changes_with_defines_and_arch():
    a = cc.cache_key('conv', 62, {}, 'nvrtc')
    assert a != cc.cache_key('conv', 72, {}, 'nvrtc')
    assert a != cc.cache_key('conv', 62, {'X': 1}, 'nvrtc')
    assert a == cc.cache_key('conv', 62, {}, 'nvrtc')


def test_kernel_dir_is_the_checkouts_kernels_folder(monkeypatch):
    monkeypatch.delenv(cc.KERNEL_DIR_ENV, raising=False)
    assert cc.kernel_dir() == Path(__file__).resolve().parents[2] / 'kernels'


def test_kernel_dir_override_must_hold_kernels(tmp_path, monkeypatch):
    monkeypatch.setenv(cc.KERNEL_DIR_ENV, str(tmp_path))
    with pytest.raises(cc.CompileError, match=cc.KERNEL_DIR_ENV):
        cc.kernel_dir()


def test_no_kernels_anywhere_names_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.delenv(cc.KERNEL_DIR_ENV, raising=False)
    places = [tmp_path / 'checkout' / 'kernels', tmp_path / 'share' / 'tx2_infer_ros' / 'kernels']
    monkeypatch.setattr(cc, 'kernel_dir_candidates', lambda: places)
    with pytest.raises(cc.CompileError) as err:
        cc.kernel_dir()
    for place in places:
        assert str(place) in str(err.value)
