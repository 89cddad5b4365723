"""Knobs that tell the truth: the precision that runs is the one reported (engine, plan header,
``inspect``), unknown precisions are refused, a square input size follows the model's layout,
and ``Engine.build`` (and ``load``) refuse an unsafe memory plan."""
import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tx2_infer_core import assets, engine as engine_mod, plan_file
from tx2_infer_core.backends.numpy_backend import NumpyBackend
from tx2_infer_core.engine import Engine, sized_input_shape
from tx2_infer_core.errors import Tx2InferError
from tx2_infer_core.inspect_report import inspect_lines
from tx2_infer_core.planner import MemoryPlan


@pytest.fixture(scope='module')
def small_onnx(tmp_path_factory):
    """x [1, 3, 16, 16] -> Conv 3x3 (8 channels) -> Relu -> Conv 1x1 -> y."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), 'w1')
    w2 = numpy_helper.from_array(rng.standard_normal((4, 8, 1, 1)).astype(np.float32), 'w2')
    graph = helper.make_graph(
        [helper.make_node('Conv', ['x', 'w1'], ['c'], pads=[1, 1, 1, 1]),
         helper.make_node('Relu', ['c'], ['r']), helper.make_node('Conv', ['r', 'w2'], ['y'])],
        'small', [helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 4, 16, 16])], [w1, w2])
    path = tmp_path_factory.mktemp('knobs') / 'small.onnx'
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]), path)
    return path


class FakeCudaBackend(NumpyBackend):
    """Stands in for the cuda backend on a machine without a GPU (runs numpy underneath)."""

    name = 'cuda'

    def __init__(self, precision='fp16', **options):
        super().__init__()
        self.precision = precision


@pytest.fixture
def fake_cuda(monkeypatch):
    from tx2_infer_core.backends import cuda_backend
    monkeypatch.setattr(cuda_backend, 'CudaBackend', FakeCudaBackend)
    monkeypatch.setattr(engine_mod, '_warned', set())


def test_cpu_runs_and_reports_fp32(small_onnx, tmp_path):
    with Engine.build(small_onnx) as engine:
        assert engine.precision == engine.options['precision'] == 'fp32'
        assert engine.backend.precision == 'fp32'
        assert '(precision fp32, head none)' in inspect_lines(engine)[0]
        engine.save(tmp_path / 'small.tx2plan')
    assert plan_file.load_plan(tmp_path / 'small.tx2plan')[2]['precision'] == 'fp32'


def test_fp32_on_cuda_is_reported_as_fp16_with_a_warning(small_onnx, tmp_path, fake_cuda,
                                                         caplog):
    with caplog.at_level(logging.WARNING, 'tx2_infer.engine'):
        engine = Engine.build(small_onnx, precision='fp32', backend='cuda')
    assert 'cuda runs fp16 with fp32 accumulation' in caplog.text
    assert engine.precision == engine.options['precision'] == engine.backend.precision == 'fp16'
    assert '(precision fp16, head none)' in inspect_lines(engine)[0]
    engine.save(tmp_path / 'gpu.tx2plan')
    engine.close()
    assert plan_file.load_plan(tmp_path / 'gpu.tx2plan')[2]['precision'] == 'fp16'
    # The fp16 plan on the cpu backend runs fp32, and inspect says both.
    with Engine.load(tmp_path / 'gpu.tx2plan', 'cpu') as on_cpu:
        assert on_cpu.precision == 'fp32'
        ran = f'run in fp32 by the {engine_mod.resolve_backend("cpu")} backend'
        assert f'precision fp16 plan, {ran}' in inspect_lines(on_cpu)[0]
    # An fp32 plan loaded on cuda runs (and reports) fp16; the warning is logged once.
    with Engine.build(small_onnx) as cpu:
        cpu.save(tmp_path / 'cpu.tx2plan')
    caplog.clear()
    with Engine.load(tmp_path / 'cpu.tx2plan', 'cuda') as loaded:
        assert loaded.precision == loaded.backend.precision == 'fp16'
    assert 'fp32 accumulation' not in caplog.text


@pytest.mark.parametrize('precision, backend, words', [
    ('int4', 'cpu', "unknown precision 'int4'"),
    ('fp64', 'cpu', "unknown precision 'fp64'"),
    ('fp16', 'cpu', 'fp16 needs the cuda backend')])
def test_precisions_that_do_not_run_are_refused(small_onnx, fake_cuda, precision, backend,
                                                words):
    assert 'int4' not in engine_mod.PRECISIONS
    with pytest.raises(Tx2InferError, match=words):
        Engine.build(small_onnx, precision=precision, backend=backend)


def test_square_input_size_follows_the_models_layout(small_onnx):
    nsfw = assets.fetch('open_nsfw.onnx')
    assert sized_input_shape(nsfw, 224) == (1, 224, 224, 3)           # NHWC classifier
    assert sized_input_shape(assets.fetch('yolov8-fall.onnx'), 320) == (1, 3, 320, 320)
    assert sized_input_shape(assets.yolov3_tiny()[0], 320) == (1, 3, 320, 320)
    assert sized_input_shape(small_onnx, 0) is None
    assert sized_input_shape('built.tx2plan', 320) is None
    with Engine.build(nsfw, sized_input_shape(nsfw, 224)) as engine:
        assert engine.input_specs[0].shape == (1, 224, 224, 3)


def test_build_and_load_refuse_an_unsafe_memory_plan(small_onnx, monkeypatch, tmp_path):
    def overlapping(graph, alignment=256, **kw):
        live = [n for n in graph.values if n not in graph.weights]
        return MemoryPlan({n: 0 for n in live}, 1 << 20, 0, 0, alignment)
    with Engine.build(small_onnx) as engine:
        engine.save(tmp_path / 'good.tx2plan')
        bad = overlapping(engine.graph, engine.memory_plan.alignment).to_dict()
        plan_file.save_plan(tmp_path / 'bad.tx2plan', engine.graph, bad, engine.options)
    monkeypatch.setattr(engine_mod, 'plan_memory', overlapping)
    with pytest.raises(Tx2InferError, match='memory plan of .*small.onnx is unsafe.*overlap'):
        Engine.build(small_onnx)
    with pytest.raises(Tx2InferError, match='memory plan of .*small.onnx is unsafe.*overlap'):
        Engine.load(tmp_path / 'bad.tx2plan')          # a plan file is checked too
    Engine.load(tmp_path / 'good.tx2plan').close()
