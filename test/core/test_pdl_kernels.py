"""The programmatic-launch contract (cuda/pdl.py): every kernel the backend may launch
programmatically on sm_90 waits for its predecessor (griddepcontrol.wait) before its first
global memory access, checked in the PTX that NVRTC makes; below sm_90 no kernel is."""
import re

import pytest

from tx2_infer_core.cuda import compile as cc
from tx2_infer_core.cuda import pdl
from tx2_infer_core.cuda.lower_conv import MMA_TILES

GLOBAL_ACCESS = re.compile(r'\b(ld|st|atom|red)\.global|cp\.async[.\w]*\.global')
needs_nvrtc = pytest.mark.skipif(not cc.nvrtc_available(),
                                 reason='nvidia-cuda-nvrtc-cu12 not installed')


def entries(ptx: str) -> dict:
    """{kernel name: its PTX body}."""
    parts = re.split(r'\.entry\s+(\w+)\(', ptx)
    return dict(zip(parts[1::2], parts[2::2]))


def waits_before_any_global_access(body: str) -> bool:
    wait, access = body.find('griddepcontrol.wait'), GLOBAL_ACCESS.search(body)
    return wait >= 0 and (access is None or wait < access.start())


def test_only_named_kernels_on_sm90_launch_programmatically():
    assert pdl.wants_pdl('conv_mma_64x64', 90) and pdl.wants_pdl('conv_splitk_reduce', 90)
    assert pdl.wants_pdl('conv_mma_gather_128x64', 100)
    assert not pdl.wants_pdl('conv_mma_64x64', 87)  # Orin: no griddepcontrol
    assert not pdl.wants_pdl('pool2d', 90) and not pdl.wants_pdl('conv_simt_h2_v8', 90)


@needs_nvrtc
@pytest.mark.parametrize('gather', [0, 1])
def test_every_programmatic_kernel_waits_first(gather):
    for bm, bn, _ in MMA_TILES:
        defines = {'CONV_MMA_TILE': bm * 1000 + bn, 'CONV_MMA_GATHER': gather}
        kernels = entries(cc.nvrtc_compile('conv_mma', 90, defines, ptx=True).decode())
        launched = [k for k in kernels if pdl.wants_pdl(k, 90)]
        assert len(launched) == 2, kernels.keys()  # the tile's conv and the split-K sum
        for name in launched:
            assert waits_before_any_global_access(kernels[name]), (name, defines)


@needs_nvrtc
def test_no_grid_dependency_control_below_sm90():
    ptx = cc.nvrtc_compile('conv_mma', 87, {'CONV_MMA_TILE': 64064}, ptx=True).decode()
    assert 'griddepcontrol' not in ptx


def test_the_check_sees_a_late_wait():
    late = 'ld.global.nc.u32 %r1, [%rd1];\n griddepcontrol.wait;'
    assert not waits_before_any_global_access(late)
    assert not waits_before_any_global_access('cp.async.cg.shared.global [%r1], [%rd2], 16;')
    assert waits_before_any_global_access('griddepcontrol.wait;\n ld.global.u32 %r1, [%rd1];')


def test_the_launch_passes_exactly_the_records_bytes(monkeypatch):
    """The driver gets the parameter record's own bytes and size (a byte more is 'too many
    arguments', CUresult 701)."""
    import ctypes

    import numpy as np
    seen = {}

    class Lib:
        def cuLaunchKernelEx(self, config, function, params, extra):
            size = ctypes.cast(extra[3], ctypes.POINTER(ctypes.c_size_t)).contents.value
            seen['bytes'] = ctypes.string_at(extra[1], size)
            cfg = config._obj
            seen['grid'], seen['block'] = tuple(cfg.grid), tuple(cfg.block)
            seen['attr'] = (cfg.attrs[0].id, cfg.attrs[0].value[0], cfg.num_attrs)
            return 0

    driver = pdl.Driver.__new__(pdl.Driver)
    driver.lib = Lib()
    record = np.zeros((), np.dtype([('a', '<i4'), ('b', '<u8')], align=True))[()]
    record['a'], record['b'] = 7, 2 ** 40

    class Stream:
        handle = 1234
    pdl.PdlKernel(driver, ctypes.c_void_p(5))(record, grid=(3, 2, 1), block=(128, 1, 1),
                                              stream=Stream())
    assert seen['bytes'] == record.tobytes() and len(seen['bytes']) == 16
    assert seen['grid'] == (3, 2, 1) and seen['block'] == (128, 1, 1)
    assert seen['attr'] == (pdl.PROGRAMMATIC_STREAM_SERIALIZATION, 1, 1)
