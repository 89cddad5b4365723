"""backend auto on a GPU whose kernels refuse the model (an op with no CUDA kernel): the node's
engine loader (``pipeline.load_detector``) runs the model on the CPU backend instead and says
so, naming the op; an explicit ``backend: cuda`` keeps the refusal. The GPU is simulated (none
here): resolve_backend answers 'cuda' for auto, and the CUDA build refuses as lowering does."""
import numpy as np
import pytest

from tx2_infer_core import engine as engine_module
from tx2_infer_core.backends.numpy_backend import NumpyBackend
from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_ros import pipeline


@pytest.fixture
def gpu_that_refuses(monkeypatch):
    """A 'GPU' for auto whose build refuses every model, as lowering refuses a CPU-only op."""
    resolve = engine_module.resolve_backend
    monkeypatch.setattr(pipeline, 'resolve_backend',
                        lambda name: 'cuda' if name == 'auto' else resolve(name))
    real_build, calls = Engine.build_cached.__func__, []

    def build_cached(cls, model_path, shape, precision, backend, **kw):
        calls.append((backend, precision))
        if backend == 'cuda':
            raise UnsupportedOpError('GridSample', 'warp', ['Conv'], 'no CUDA kernel')
        return real_build(cls, model_path, shape, precision, backend, **kw)
    monkeypatch.setattr(Engine, 'build_cached', classmethod(build_cached))
    return calls


def test_auto_falls_back_to_the_cpu_naming_the_op(gpu_that_refuses):
    lines = []
    detector, info = pipeline.load_detector(backend='auto', precision='fp16', input_size=160,
                                            log=lines.append)
    try:
        cpu = engine_module.resolve_backend('cpu')
        assert gpu_that_refuses == [('cuda', 'fp16'), (cpu, 'fp32')]
        assert info['backend'] == cpu and info['precision'] == 'fp32'
        said = ' '.join(lines)
        assert "'GridSample'" in said and "'warp'" in said and 'on the CPU instead' in said
        dets = detector.detect(np.full((240, 320, 3), 128, np.uint8))
        assert isinstance(dets, list)
    finally:
        detector.engine.close()


def test_an_explicit_cuda_backend_keeps_the_refusal(gpu_that_refuses, monkeypatch):
    monkeypatch.setattr(pipeline, 'resolve_backend', lambda name: name)
    with pytest.raises(UnsupportedOpError, match='GridSample'):
        pipeline.load_detector(backend='cuda', input_size=160, log=lambda _: None)
    assert gpu_that_refuses == [('cuda', 'fp32')]


@pytest.mark.parametrize('precision, want', [('fp16', 'fp32'), ('fp32', 'fp32'),
                                             ('int8', 'int8'), ('mixed', 'mixed')])
def test_cpu_fallback_keeps_every_precision_but_the_gpu_only_one(precision, want):
    assert pipeline.cpu_fallback(precision)[1] == want


class StandInCuda(NumpyBackend):
    """The cuda backend on a machine without a GPU (numpy underneath; as test/core's
    FakeCudaBackend)."""

    name = 'cuda'

    def __init__(self, precision='fp16', **options):
        super().__init__()
        self.precision = precision


@pytest.fixture
def builds(monkeypatch, tmp_path):
    """Engine.build_cached (plans cached under tmp_path, cuda standing in) recording the
    (backend, precision, range_feeds) of each call."""
    from tx2_infer_core import assets
    from tx2_infer_core.backends import cuda_backend
    monkeypatch.setattr(cuda_backend, 'CudaBackend', StandInCuda)
    monkeypatch.setattr(assets, 'cache_dir', lambda: tmp_path / 'cache')
    real_build, calls = Engine.build_cached.__func__, []

    def build_cached(cls, model_path, shape, precision, backend, **kw):
        calls.append((backend, precision, kw.get('range_feeds')))
        return real_build(cls, model_path, shape, precision, backend, **kw)
    monkeypatch.setattr(Engine, 'build_cached', classmethod(build_cached))
    return calls


def _plan_key(folder, backend, precision):
    detector, _ = pipeline.load_detector(backend=backend, precision=precision, input_size=128,
                                         log=lambda _: None, range_images=folder)
    detector.engine.close()
    return detector.engine.options['key'], detector.engine.options['passes']


def test_range_images_go_to_cuda_fp16_builds_only(builds, tmp_path):
    """The folder reaches the cuda build in fp16 or fp32 (which cuda runs in fp16) and keys
    its plan; cpu and int8 builds do not get it, so their cached plans stay the same."""
    from tx2_infer_core import assets
    folder = tmp_path / 'frames'
    folder.mkdir()
    (folder / 'dog.jpg').write_bytes(assets.fetch('dog.jpg').read_bytes())
    for backend, precision in [('cuda', 'fp16'), ('cuda', 'fp32'), ('numpy', 'fp32')]:
        key, passes = _plan_key(str(folder), backend, precision)
        used = backend == 'cuda'
        assert builds[-1] == (backend, precision, str(folder) if used else None)
        assert passes.get('fp16_range') == (0 if used else None)   # YOLOv3-tiny fits FP16
        assert (key != _plan_key('', backend, precision)[0]) == used
    assert pipeline.range_feeds_for(str(folder), 'cuda', 'int8') is None
