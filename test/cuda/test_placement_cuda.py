"""Channel Concat/Split by placement on the GPU: a YOLOv8-like graph (C2f, SPPF, upsample
concat, odd split) against the numpy ops, with placement on and off."""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_close, fp16_round
from tx2_infer_core.backends.cuda_backend import CudaBackend

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'core'))
from test_cuda_placement import reference, yolov8_like  # noqa: E402


@pytest.mark.parametrize('place', [True, False])
@pytest.mark.parametrize('path', ['tc', 'simt'])
def test_yolov8_like_graph_matches_numpy(place, path):
    graph = yolov8_like()
    feeds = {'x': fp16_round(np.random.default_rng(5).standard_normal((1, 16, 8, 8)))}
    want = reference(graph, feeds)
    backend = CudaBackend(conv_path=path, place_channels=place)
    backend.prepare(graph)
    try:
        copies = sum(k.kernel == 'unary' for k in backend.launches)
        got = backend.run(feeds)
    finally:
        backend.close()
    for name in graph.outputs:
        assert_close(f'yolov8-like place={place} {path} {name}', got[name], want[name], 1e-2)
    assert (copies <= 3) if place else (copies >= 12)
