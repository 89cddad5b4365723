"""A real model on real photos: the CUDA engine (both conv paths) against the CPU oracle."""
import pytest

from conftest import assert_close
from tx2_infer_core import assets, detect
from tx2_infer_core.backends.cuda_backend import CudaBackend
from tx2_infer_core.engine import Engine


@pytest.mark.parametrize('path', ['simt', 'tc'])
def test_yolov8_photos_match_cpu(path, monkeypatch):
    import cv2
    model = assets.fetch('yolov8-fall.onnx')
    cpu = Engine.build(model, backend='numpy')      # the oracle (cpu may be ort)
    gpu = Engine.build(model, backend='cuda', precision='fp16')
    gpu.close()
    defaults = list(CudaBackend.__init__.__defaults__)      # conv_path is the second
    defaults[1] = path
    monkeypatch.setattr(CudaBackend.__init__, '__defaults__', tuple(defaults))
    gpu = Engine.build(model, backend='cuda', precision='fp16')
    shape = cpu.input_specs[0].shape
    photos = assets.fetch_photos()
    assert len(photos) >= 8
    try:
        for photo in photos:
            x, _ = detect.preprocess(cv2.imread(str(photo)), shape, cpu.meta.get('input_format'))
            ref, out = cpu.run(x), gpu.run(x)
            for name in ref:
                assert_close(f'yolov8 {path} {photo.name} {name}', out[name], ref[name], 2e-2)
    finally:
        cpu.close()
        gpu.close()
