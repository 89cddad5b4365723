"""CI compile check: every kernels/*.cu compiles for every GPU we target, without a GPU.

sm_90 (H100) with the installed CUDA 13 nvcc; sm_62 (Jetson TX2), sm_72 (Xavier) and sm_87 (Orin)
with NVRTC 12.9 from PyPI, since CUDA 13 no longer targets them. A compile error fails the test.
"""
import shutil
from pathlib import Path

import pytest

from tx2_infer_core.cuda import compile as cc

SOURCES = [p.stem for p in cc.kernel_sources()]
NVRTC_ARCHS = [62, 72, 87]


def _nvrtc_available():
    try:
        cc.load_nvrtc()
        return True
    except cc.CompileError:
        return False


def test_kernel_files_exist():
    for family in ('conv', 'pool', 'resize', 'elementwise', 'gemm', 'softmax', 'layernorm',
                   'preprocess', 'yolo'):
        assert family in SOURCES, f'kernels/{family}.cu is missing'


@pytest.mark.skipif(shutil.which('nvcc') is None, reason='nvcc (CUDA toolkit) not installed')
@pytest.mark.parametrize('name', SOURCES)
def test_compiles_sm90_nvcc(name):
    cubin = cc.compile_cached(name, 90, compiler='nvcc')
    assert cubin[:4] == b'\x7fELF'


@pytest.mark.skipif(not _nvrtc_available(), reason='nvidia-cuda-nvrtc-cu12 not installed')
@pytest.mark.parametrize('arch', NVRTC_ARCHS)
@pytest.mark.parametrize('name', SOURCES)
def test_compiles_nvrtc(name, arch):
    cubin = cc.compile_cached(name, arch, compiler='nvrtc')
    assert cubin[:4] == b'\x7fELF'


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
