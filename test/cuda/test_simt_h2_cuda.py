"""conv_simt_h2 (half2 FMA, FP16 chunks flushed into FP32) and the FP32-FMA conv_simt on real
layers of YOLOv3-tiny and open_nsfw (a ResNet-50) fed their real activations
(test/core/simt_h2_cases.py), on channel views, and in the whole YOLOv3-tiny against ONNX
Runtime.

Per layer, conv_path 'simt' (h2) must be within ``REL_L2_TOL`` = 2.5e-3 (relative L2) of the
float64 reference (the chunked FP16 sums: ~8e-4 expected, see simt_h2_cases.py) and within
one FP16 unit of the numpy model of its arithmetic at sampled pixels (a flush skipped, a lane
order or a chunk boundary changed moves outputs by many units); 'simt_fp32' within 1e-3 (its
FP16 output rounding only)."""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import TOLERANCE_LINES, assert_close
from tx2_infer_core import assets, detect
from tx2_infer_core.backends.cuda_backend import CudaBackend
from tx2_infer_core.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'core'))
import simt_h2_cases as cases  # noqa: E402

FP32_TOL = 1e-3
H2 = ('conv_simt_h2', 'conv_simt_h2_v8')


def run(graph, feeds, path):
    """(y, conv kernel names) of ``graph`` on the CUDA backend with ``conv_path=path``."""
    backend = CudaBackend(conv_path=path)
    backend.prepare(graph)
    try:
        kernels = [k.kernel for k in backend.launches if k.kernel.startswith('conv_simt')]
        return backend.run(feeds)['y'], kernels
    finally:
        backend.close()


def check_model(label, case, y):
    """The GPU's fp16 outputs at sampled pixels against the model: at most one FP16 unit."""
    pixels = cases.sample_pixels(case, 16)
    want = cases.h2_model(case, pixels).astype(np.float16)
    got = y.reshape(y.shape[1], -1)[:, pixels].T.astype(np.float16)
    ulp = np.spacing(np.abs(want)).astype(np.float64)
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64)) / ulp
    line = (f'{label} vs model: {int((diff > 0).sum())} of {diff.size} differ, max '
            f"{float(diff.max()):g} fp16 ulp, tolerance 1: {'ok' if diff.max() <= 1 else 'FAIL'}")
    TOLERANCE_LINES.append(line)
    print(line)
    assert diff.max() <= 1, line


LAYERS = ([('yolov3-tiny', n) for n in cases.TINY]
          + [('open_nsfw', i) for i in list(range(0, 52, 4)) + [49, 50, 51]])


@pytest.mark.parametrize('model,layer', LAYERS, ids=[f'{m}:{n}' for m, n in LAYERS])
def test_real_layer(model, layer):
    if isinstance(layer, int):
        layer = cases.resnet_layers()[layer]
    case = cases.layer_case(model, layer)
    graph, feeds, ref, _ = case
    y, kernels = run(graph, feeds, 'simt')
    assert len(kernels) == 1 and kernels[0] in H2, kernels
    k = graph.weights['w'][0].size
    assert_close(f'{model} {layer} K={k} {kernels[0]}', y, ref, cases.REL_L2_TOL)
    check_model(f'{model} {layer} {kernels[0]}', case, y)
    y32, kernels32 = run(graph, feeds, 'simt_fp32')
    assert kernels32[0] in ('conv_simt', 'conv_simt_v4'), kernels32
    assert_close(f'{model} {layer} K={k} {kernels32[0]}', y32, ref, FP32_TOL)


@pytest.mark.parametrize('path', ['simt', 'simt_fp32'])
def test_channel_offsets(path):
    """Input, residual and output as 256-channel views at offset 128 of 384-channel pixels."""
    graph, feeds, ref = cases.offsets_case()
    y, kernels = run(graph, feeds, path)
    assert kernels == ['conv_simt_h2_v8' if path == 'simt' else 'conv_simt_v4']
    assert_close(f'offsets {path} {kernels[0]}', y, ref,
                 cases.REL_L2_TOL if path == 'simt' else FP32_TOL)


@pytest.fixture(scope='module')
def yolov3_tiny_ort(tmp_path_factory):
    import onnxruntime as ort
    from tx2_infer_core.darknet import load_darknet
    from tx2_infer_core.onnx_export import save_onnx
    cfg, weights, _ = assets.yolov3_tiny()
    path = tmp_path_factory.mktemp('dn') / 'yolov3-tiny.onnx'
    save_onnx(load_darknet(cfg, weights), path)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


@pytest.mark.parametrize('path', ['simt', 'simt_fp32'])
def test_yolov3_tiny_matches_onnxruntime(yolov3_tiny_ort, path):
    import cv2
    cfg, weights, _ = assets.yolov3_tiny()
    engine = Engine.build(cfg, weights_path=weights, backend='cuda', precision='fp16',
                          backend_options={'conv_path': path})
    try:
        kernels = {k.kernel for k in engine.backend.launches if k.kernel.startswith('conv_')}
        assert kernels == (set(H2) if path == 'simt' else {'conv_simt', 'conv_simt_v4'})
        spec = engine.input_specs[0]
        for photo in ('dog.jpg', 'bus.jpg', 'zidane.jpg'):
            image = cv2.imread(str(assets.fetch(photo)))
            x, _ = detect.preprocess(image, spec.shape, engine.meta.get('input_format'))
            ours = engine.run({spec.name: x})
            ref = yolov3_tiny_ort.run(engine.graph.outputs, {spec.name: x})
            for name, want in zip(engine.graph.outputs, ref):
                assert_close(f'yolov3-tiny {path} {photo} {name}', ours[name], want, 2e-2)
    finally:
        engine.close()
