"""backend auto on a GPU whose kernels refuse the model (an op with no CUDA kernel): the node's
engine loader (``pipeline.load_detector``) runs the model on the CPU backend instead and says
so, naming the op; an explicit ``backend: cuda`` keeps the refusal. The GPU is simulated (none
here): resolve_backend answers 'cuda' for auto, and the CUDA build refuses as lowering does."""
import numpy as np
import pytest

from tx2_infer_core import engine as engine_module
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
