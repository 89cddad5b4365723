"""Batch plans on the GPU: the engine at batch 4 against batch-1 runs of each photo, and
``Detector.detect_batch`` through the GPU frame pipeline (one graph for the whole batch) against
``detect`` of each photo on the batch-1 plan and against the host path of the same batch plan.

Data: ``$TX2_INFER_DEVDATA`` as for test_pipeline.py, plus the batch-4 plans this module writes:
``python test/cuda/test_pipeline_batch.py prepare DIR`` (on any CPU, after
``bench/cuda_accuracy.py prepare DIR``).
"""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tx2_infer_core.detect_params import DEFAULTS
from tx2_infer_core.detector import Detector
from tx2_infer_core.engine import Engine
from tx2_infer_core.metrics import pairing

DATA = Path(os.environ.get('TX2_INFER_DEVDATA', '.devdata'))
BATCH = 4
CONF = DEFAULTS.conf_threshold
pytestmark = pytest.mark.skipif(not (DATA / f'yolov8-b{BATCH}.tx2plan').is_file(),
                                reason='no batch plans (test/cuda/test_pipeline_batch.py '
                                       'prepare)')


def _photos():
    import cv2
    return [cv2.imread(str(p)) for p in sorted((DATA / 'photos').glob('*.jpg'))]


def _engine(name):
    return Engine.load(DATA / f'{name}.tx2plan', backend='cuda')


def _rows(dets):
    return [[d.x1, d.y1, d.x2, d.y2, d.score, d.class_id] for d in dets]


def _same(a, b, totals):
    """Pairs both ways; adds to ``totals`` (exact, flip, missing)."""
    for x, y in ((a, b), (b, a)):
        pair = pairing(_rows(x), _rows(y), CONF)
        for key in totals:
            totals[key] += pair[key]


@pytest.mark.parametrize('model', ['yolov8', 'yolov3-tiny', 'open_nsfw'])
def test_batch_engine_outputs_match_batch_one(model):
    """engine.run at batch 4 on the GPU: image b's outputs are its batch-1 run's (FP16)."""
    four, one = _engine(f'{model}-b{BATCH}'), _engine(model)
    try:
        spec = four.input_specs[0]
        assert spec.shape[0] == BATCH
        rng = np.random.default_rng(0)
        x = rng.random(tuple(spec.shape), np.float32)
        ours = four.run({spec.name: x})
        for b in range(BATCH):
            ref = one.run({spec.name: x[b:b + 1]})
            for name, array in ref.items():
                err = np.linalg.norm(ours[name][b:b + 1] - array) / np.linalg.norm(array)
                assert err < 5e-3, (model, b, name, err)
    finally:
        four.close()
        one.close()


@pytest.mark.parametrize('model', ['yolov8', 'yolov3-tiny'])
def test_detect_batch_gpu_matches_detect_of_each(model):
    four, one = _engine(f'{model}-b{BATCH}'), _engine(model)
    totals = {'exact': 0, 'flip': 0, 'missing': 0}
    try:
        gpu, host = Detector(four), Detector(four, path='host')
        single = Detector(one)
        assert gpu.path == 'gpu' and single.path == 'gpu' and gpu.batch == BATCH
        photos = _photos()
        for start in range(0, len(photos), 3):      # batches of 3 (one padded slot) and less
            group = photos[start:start + 3]
            results = gpu.detect_batch(group)
            on_host = host.detect_batch(group)
            assert len(results) == len(group)
            for image, got, want in zip(group, results, on_host):
                _same(got, single.detect(image), totals)
                _same(got, want, totals)
        assert gpu.padded >= 1
    finally:
        four.close()
        one.close()
    print(f'{model} GPU batch vs batch-1 GPU and batch host path: {totals}')
    assert totals['exact'] > 0 and totals['missing'] == 0, totals
    assert totals['flip'] <= 0.15 * (totals['exact'] + totals['flip']), totals


def test_one_graph_per_batch_size_and_no_allocation():
    """Batches of 1..4 same-size photos: one graph each; steady batches allocate nothing and
    give the same detections."""
    import cv2
    four = _engine(f'yolov8-b{BATCH}')
    try:
        detector = Detector(four, path='gpu')
        photos = [cv2.resize(p, (640, 480)) for p in _photos()[:BATCH]]
        first = [detector.detect_batch(photos[:k]) for k in range(1, BATCH + 1)]
        before = four.backend.device_allocations
        for _ in range(3):
            again = [detector.detect_batch(photos[:k]) for k in range(1, BATCH + 1)]
        assert four.backend.device_allocations == before
        assert again == first
        assert len(four.backend.frame_pipeline.graphs) == BATCH
        for k in range(1, BATCH):       # image b's detections do not depend on the batch size
            assert first[k][:k] == first[k - 1]
    finally:
        four.close()


def test_classifier_batch_top1():
    four, one = _engine(f'open_nsfw-b{BATCH}'), _engine('open_nsfw')
    try:
        gpu, single = Detector(four, path='gpu'), Detector(one, path='gpu')
        photos = _photos()[:BATCH]
        for image, got in zip(photos, gpu.detect_batch(photos)):
            want = single.detect(image)
            assert got[0].class_id == want[0].class_id
            assert abs(got[0].score - want[0].score) < 1e-2
            assert got[0].x2 == image.shape[1] and got[0].y2 == image.shape[0]
    finally:
        four.close()
        one.close()


def prepare(folder):
    """Batch-4 FP16 plans of the three models into ``folder`` (any CPU)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
    from cuda_accuracy import _fp16_plan, _models
    for name, spec in _models().items():
        graph_shape = {'open_nsfw': (BATCH, 224, 224, 3)}.get(name)
        size = 640 if name == 'yolov8' else 416
        engine = Engine.build(spec['model'], graph_shape or (BATCH, 3, size, size),
                              weights_path=spec.get('weights'))
        if 'format' in spec:
            engine.graph.meta['input_format'] = dict(spec['format'])
        _fp16_plan(engine, Path(folder) / f'{name}-b{BATCH}.tx2plan')
        print('wrote', name, engine.input_specs[0].shape, flush=True)


if __name__ == '__main__' and sys.argv[1:2] == ['prepare']:
    prepare(sys.argv[2])
