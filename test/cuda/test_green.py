"""cuda/green.py on a GPU: work in an SM slice (a green context) runs on at most the slice's
SMs (kernels/probe.cu's %smid probe), nested blocks keep it there, and a real model run in the
slice matches the CPU oracle and, bit for bit, the same launches on the whole GPU."""
import functools
import gc

import numpy as np
import pytest

from conftest import assert_close
from tx2_infer_core import assets, detect
from tx2_infer_core.cuda.runtime import DeviceContext, driver_api
from tx2_infer_core.engine import Engine

SLICE = 8  # an H200's smallest SM partition


def _green_contexts_supported() -> bool:
    try:
        err, version = driver_api().cuDriverGetVersion()
    except Exception:  # noqa: BLE001 - cuda-bindings missing or no driver
        return False
    return int(err) == 0 and version >= 12040


pytestmark = pytest.mark.skipif(not _green_contexts_supported(),
                                reason='needs cuda-bindings and a CUDA 12.4+ driver')


def _whole_gpu(lowering_sms):
    """A CudaBackend context on the whole GPU whose lowering is told ``lowering_sms`` SMs."""
    def make(device):
        ctx = DeviceContext(device)
        ctx.sm_count = lowering_sms
        return ctx
    return make


def test_a_slice_runs_on_at_most_its_sms():
    from tx2_infer_core.cuda.green import distinct_sms, green_context
    with green_context(SLICE) as ctx:
        device_sms, ctas = ctx.green.device_sm_count, 16 * ctx.green.device_sm_count
        inside = distinct_sms(ctx, ctas)
        with ctx:
            nested = distinct_sms(ctx, ctas)
        after = distinct_sms(ctx, ctas)  # the nested block gave the slice back
    whole_ctx = DeviceContext(0)
    try:
        whole = distinct_sms(whole_ctx, ctas)
    finally:
        whole_ctx.drv.Context.pop()
        whole_ctx.close()
    print(f'slice of {ctx.sm_count} SMs: {inside}, {nested}, {after} distinct SMs; whole GPU '
          f'({device_sms} SMs): {whole}')
    assert ctx.sm_count >= SLICE
    assert 1 <= inside <= ctx.sm_count and 1 <= nested <= ctx.sm_count
    assert 1 <= after <= ctx.sm_count
    assert whole > ctx.sm_count  # the probe does see more SMs outside the slice


def test_the_clock_probe_is_plausible():
    from tx2_infer_core.cuda.green import green_context, sm_clock_hz
    with green_context(SLICE) as ctx:
        clock = sm_clock_hz(ctx)
    print(f'SM clock {clock / 1e6:.0f} MHz')
    assert 0.3e9 < clock < 3.5e9


def test_yolov3_tiny_in_a_slice_matches_the_cpu_and_the_whole_gpu():
    import cv2
    from tx2_infer_core.cuda.green import GreenContext, SliceContext
    cfg, weights, _ = assets.yolov3_tiny()
    build = functools.partial(Engine.build, cfg, input_shape=(1, 3, 128, 128),
                              weights_path=weights)
    green = GreenContext(SLICE)
    engines = []
    try:
        cpu = build()
        engines.append(cpu)
        sliced = build(backend='cuda', precision='fp16', backend_options=dict(
            conv_path='simt', context=functools.partial(SliceContext, green)))
        engines.append(sliced)
        whole = build(backend='cuda', precision='fp16', backend_options=dict(
            conv_path='simt', context=_whole_gpu(green.sm_count)))
        engines.append(whole)
        assert [(k.kernel, k.grid) for k in sliced.backend.launches] == \
            [(k.kernel, k.grid) for k in whole.backend.launches]
        x, _ = detect.preprocess(cv2.imread(str(assets.fetch('dog.jpg'))),
                                 cpu.input_specs[0].shape, cpu.meta.get('input_format'))
        ref, out, out_whole = cpu.run(x), sliced.run(x), whole.run(x)
        for name in ref:
            assert_close(f'yolov3-tiny simt in {green.sm_count} SMs {name}', out[name],
                         ref[name], 2e-2)
            np.testing.assert_array_equal(out[name], out_whole[name])
    finally:
        for engine in engines:
            engine.close()
        engines.clear()
        cpu = sliced = whole = None  # pycuda objects made in the slice go before it does
        gc.collect()
        green.close()
