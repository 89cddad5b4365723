"""Programmatic dependent launches (cuda/pdl.py) on a GPU: on sm_90+ the split-K convolutions
of a real model are launched programmatically, replayed in the CUDA graph, and its outputs are
the same bits as the plain launches' and within FP16 of the CPU oracle. Below sm_90 nothing is
launched programmatically."""
import functools

import numpy as np

from conftest import assert_close
from tx2_infer_core import assets, detect
from tx2_infer_core.cuda import pdl
from tx2_infer_core.engine import Engine


def test_programmatic_launches_give_the_same_bits_as_plain_ones():
    import cv2
    cfg, weights, _ = assets.yolov3_tiny()
    build = functools.partial(Engine.build, cfg, input_shape=(1, 3, 416, 416),
                              weights_path=weights)
    engines = [build()]
    try:
        for use in (False, True):
            engines.append(build(backend='cuda', precision='fp16',
                                 backend_options=dict(conv_path='tc', pdl=use)))
        cpu, plain, programmatic = engines
        be = programmatic.backend
        kinds = [type(fn).__name__ for fn, _, _, _ in be.bound]
        wanted = [pdl.wants_pdl(k.kernel, be.ctx.arch) for k in be.launches]
        assert kinds == ['PdlKernel' if w else 'Function' for w in wanted]
        if be.ctx.arch >= pdl.MIN_ARCH:
            assert any(k.kernel == 'conv_splitk_reduce' or k.kernel.endswith('_cl')
                       for k in be.launches)  # split layers, either way
            assert sum(wanted) > len(wanted) // 2
        else:
            assert not any(wanted)
        assert all(type(fn).__name__ == 'Function' for fn, _, _, _ in plain.backend.bound)
        x, _ = detect.preprocess(cv2.imread(str(assets.fetch('dog.jpg'))),
                                 cpu.input_specs[0].shape, cpu.meta.get('input_format'))
        ref = cpu.run(x)
        for _ in range(3):  # graph replays, back to back
            out, out_plain = programmatic.run(x), plain.run(x)
            for name in ref:
                np.testing.assert_array_equal(out[name], out_plain[name])
                assert_close(f'yolov3-tiny pdl {name}', out[name], ref[name], 2e-2)
    finally:
        for engine in engines:
            engine.close()
