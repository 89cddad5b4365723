"""The torch column of bench_zoo.py (bench/zoo_torch*.py, issue 14 item 6) on real zoo models.

Without torch: the ONNX graph torch gets (input dims fixed, constant-folded by ONNX Runtime,
SAME pads written out) answers as ONNX Runtime does on the original; the torchvision ops are
refused by name under the stub; the torch table keeps a row, with its reason, for every model.
With torch and onnx2torch (skipped where either is missing, as in CI): converted models on the
CPU against ONNX Runtime FP32, the op named where onnx2torch cannot convert, and the child
process answering, failing and restarted.
"""
import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))

import zoo_data  # noqa: E402
from benchlib import stats, wall_times  # noqa: E402
import zoo_torch  # noqa: E402
import zoo_torch_child  # noqa: E402
from zoo_torch_onnx import torch_onnx  # noqa: E402

from tx2_infer_core.engine import Engine  # noqa: E402


def zoo_case(name) -> tuple:
    """(ONNX path, feeds: the model's photo or recording, ORT FP32 outputs) of a zoo model."""
    model = zoo_data.BY_NAME[name]
    path = zoo_data.model_files(model)[0]
    specs = Engine.build(path, input_shape=model.input_shape).input_specs
    feeds = zoo_data.feeds(model, specs)                # recurrent states at zero
    return path, feeds, ort_session(path).run(None, feeds)


def ort_session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 3          # no warning per initializer listed as an input
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def max_rel(outputs, reference) -> float:
    return max(float(np.abs(np.asarray(o, np.float64) - r).max() / np.abs(r).max())
               for o, r in zip(outputs, reference))


@pytest.mark.parametrize('fold', [True, False])
@pytest.mark.parametrize('name', ['mtcnn-onet', 'mtcnn-pnet', 'ppocr-cls', 'centerface'])
def test_the_graph_torch_gets_answers_as_the_original(name, fold, tmp_path):
    """MTCNN (auto_pad SAME_UPPER pools), ppocr-cls (weights in Constant nodes), CenterFace
    (free input dims): ORT on the prepared file matches ORT on the original."""
    path, feeds, reference = zoo_case(name)
    facts = torch_onnx(path, feeds, tmp_path / 'torch.onnx', fold=fold)
    model = onnx.load(facts['path'])
    assert facts['ort_folded'] == fold
    attrs = [a for n in model.graph.node for a in n.attribute if a.name == 'auto_pad']
    assert all(a.s in (b'NOTSET', b'VALID') for a in attrs)
    assert facts['same_pads'] == {'mtcnn-onet': 2, 'mtcnn-pnet': 1}.get(name, 0)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == list(next(iter(feeds.values())).shape)
    if fold:
        weights = {w.name for w in model.graph.initializer}
        assert all(n.input[1] in weights for n in model.graph.node if n.op_type == 'Conv')
    outputs = ort_session(facts['path']).run(None, feeds)
    assert max_rel(outputs, reference) <= 1e-4          # FP32 rounding of folded constants


def test_torchvision_ops_are_refused_under_the_stub(tmp_path):
    """With the stub standing in for torchvision, NonMaxSuppression is not convertible."""
    boxes = helper.make_tensor_value_info('boxes', TensorProto.FLOAT, [1, 4, 4])
    scores = helper.make_tensor_value_info('scores', TensorProto.FLOAT, [1, 1, 4])
    keep = helper.make_tensor_value_info('keep', TensorProto.INT64, [None, 3])
    graph = helper.make_graph([helper.make_node('NonMaxSuppression', ['boxes', 'scores'],
                                                ['keep'])], 'nms', [boxes, scores], [keep])
    path = tmp_path / 'nms.onnx'
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)]), path)
    with pytest.raises(zoo_torch_child.NotConvertible,
                       match='NonMaxSuppression needs torchvision'):
        zoo_torch_child.convert(path, stub=True)


def test_the_torch_table_keeps_every_model_with_its_reason():
    timing = dict(median_ms=2.0, p99_ms=2.5)
    rows = [dict(model='a', torch=dict(error='torch: not convertible: NotImplementedError: '
                                             'Converter is not implemented (LSTM)')),
            dict(model='b', error='BuildError: ours failed'),
            dict(model='c', torch=dict(
                info=dict(precision='fp32', fp16_error='FP16 outputs not finite',
                          graph_error='RuntimeError: capture'),
                accuracy=dict(eager=dict(max_rel=1e-6)),
                contenders=dict(ours=dict(median_ms=1.0, p99_ms=1.2), eager=timing),
                ratios={'ours/eager': 0.5}))]
    lines = zoo_torch.markdown(rows)[-3:]
    assert [line.split(' | ')[0] for line in lines] == ['| a', '| b', '| c']
    assert 'not convertible' in lines[0] and 'LSTM' in lines[0]
    assert 'not measured' in lines[1]
    assert ' fp32 | 1.0e-06 / - | 2.000/2.500 | - | 1.000/1.200 | 0.50 | - |' in lines[2]
    assert 'FP16 outputs not finite' in lines[2] and 'no CUDA graph' in lines[2]


# --- with torch and onnx2torch (not in CI) ---------------------------------------------------

@pytest.fixture
def torch_cpu():
    pytest.importorskip('torch')
    if importlib.util.find_spec('onnx2torch') is None:
        pytest.skip('needs onnx2torch')
    zoo_torch_child.import_onnx2torch()      # the torchvision stub where it is missing


@pytest.mark.parametrize('name, folded', [('mtcnn-onet', True), ('ppocr-cls', True),
                                          ('ddddocr-det', False)])
def test_converted_model_matches_onnxruntime_fp32(torch_cpu, name, folded, tmp_path):
    """FP32 on the CPU. ddddocr-det: ORT folds its Focus slices into SpaceToDepth, which
    onnx2torch lacks; the unfolded graph converts and the reason is kept."""
    path, feeds, reference = zoo_case(name)
    model = zoo_torch_child.Contender(path, feeds, tmp_path, device='cpu', try_fp16=False)
    assert model.info['precision'] == 'fp32' and model.info['ort_folded'] == folded
    assert folded or 'SpaceToDepth' in model.info['fold_error']
    assert len(model.outputs['eager']) == len(reference)
    assert max_rel(model.outputs['eager'], reference) <= 1e-5


def test_fp16_model_matches_onnxruntime_within_fp16(torch_cpu, tmp_path):
    path, feeds, reference = zoo_case('ppocr-cls')
    model = zoo_torch_child.Contender(path, feeds, tmp_path, device='cpu')
    assert model.info['precision'] == 'fp16' and model.info['fp16_error'] is None
    assert 1e-5 < max_rel(model.outputs['eager'], reference) <= 1e-2


@pytest.mark.parametrize('name, op', [('silero-vad', 'LSTM'), ('madmom-downbeats', 'GRU'),
                                      ('oww-melspec', 'min/max')])
def test_not_convertible_names_the_op(torch_cpu, name, op, tmp_path):
    path, feeds, _ = zoo_case(name)
    with pytest.raises(zoo_torch_child.NotConvertible, match=op):
        zoo_torch_child.Contender(path, feeds, tmp_path, device='cpu')


@pytest.mark.parametrize('name', ['ppocr-rec', 'captcha-crnn', 'layout-cdla'])
def test_host_constants_leave_no_host_read_of_device_data(torch_cpu, name, tmp_path):
    """What a CUDA graph capture needs, checked on the CPU: with the constants
    ``host_constants`` picks (Reshape shapes, Split sizes, scalar Gather indices, Resize
    scales) on the CPU and every other tensor on the meta device, which holds no data (a host
    read raises, as a sync fails a capture), the module runs; with none kept, it does not."""
    import torch
    path, feeds, _ = zoo_case(name)
    model = zoo_torch_child.Contender(path, feeds, tmp_path, device='cpu', try_fp16=False)
    module, inputs = model.module, [t.to('meta') for t in model.inputs]
    kept = zoo_torch_child.host_constants(module)
    assert model.info['host_constants'] == len(kept) > 0
    module.to('meta')
    with torch.inference_mode(), pytest.raises((RuntimeError, NotImplementedError)):
        module(*inputs)
    for target, value in kept.items():
        owner, _, leaf = target.rpartition('.')
        module.get_submodule(owner)._buffers[leaf] = value
    with torch.inference_mode():
        outputs = module(*inputs)
    outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
    assert all(t.device.type == 'meta' for t in outputs)


def test_the_child_answers_fails_by_name_and_is_restarted(torch_cpu, tmp_path):
    path, feeds, reference = zoo_case('mtcnn-onet')
    worker = zoo_torch.TorchWorker(tmp_path, device='cpu')
    try:
        loaded = worker.call(('load', str(path), feeds), 120)
        assert loaded['info']['precision'] == 'fp16'
        assert max_rel(loaded['outputs']['eager'], reference) <= 1e-2
        lstm_path, lstm_feeds, _ = zoo_case('silero-vad')
        refused = worker.call(('load', str(lstm_path), lstm_feeds), 120)
        assert refused['error'].startswith('torch: not convertible: ') and 'LSTM' in refused[
            'error']
        worker.proc.kill()
        assert 'died' in worker.call(('load', str(path), feeds), 120)['error']
        assert worker.proc is None
        again = worker.call(('load', str(path), feeds), 120)
        assert np.array_equal(again['outputs']['eager'][0], loaded['outputs']['eager'][0])
    finally:
        worker.stop()


def test_a_torch_row_from_a_real_child(torch_cpu, tmp_path):
    """``torch_row`` on the CPU: ONNX Runtime stands in for our engine, timed by wall clock
    in rounds interleaved with the child's eager calls; no CUDA graph there, said so."""
    path, feeds, reference = zoo_case('mtcnn-onet')
    session = ort_session(path)
    names = [o.name for o in session.get_outputs()]

    def ours(runs, warmup):
        return stats(wall_times(lambda: session.run(names, feeds), runs, warmup))

    def compare(outputs):
        return dict(max_rel=max_rel([outputs[n] for n in names], reference))

    worker = zoo_torch.TorchWorker(tmp_path, device='cpu')
    args = SimpleNamespace(torch_runs=5, warmup=2, torch_rounds=2)
    try:
        row = zoo_torch.torch_row(worker, ours, path, feeds, names, compare, args)
    finally:
        worker.stop()
    assert row['info']['precision'] == 'fp16' and row['accuracy']['eager']['max_rel'] < 1e-2
    assert [row['contenders'][c]['repeats'] for c in ('ours', 'eager')] == [2, 2]
    assert row['contenders']['cuda_graph'] == dict(error='no CUDA graph on cpu', round=1,
                                                   repeats=0)
    eager, ours_ms = row['contenders']['eager'], row['contenders']['ours']
    assert row['ratios']['ours/eager'] == pytest.approx(ours_ms['median_ms'] /
                                                        eager['median_ms'])
    line = zoo_torch.markdown([dict(model='mtcnn-onet', torch=row)])[-1]
    assert line.startswith('| mtcnn-onet | fp16 | ') and 'no CUDA graph on cpu' in line
