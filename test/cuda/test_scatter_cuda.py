"""Cast to integers and bools, ScatterND / ScatterElements with constant indices and OneHot on
the GPU (``cuda/lower_logic.py`` ``lower_cast``, ``cuda/lower_scatter.py``,
``kernels/scatter.cu``) against the numpy reference, on the small graphs of
``test/core/scatter_cases.py`` (``test_cuda_scatter.py`` runs them emulated) and YOLOv5's
ScatterND head; then
slanet, whose table decoder needed them, against ONNX Runtime on its photo."""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (assert_close, core_module, fp16_round, run_graph,
                      zoo_model_path, zoo_outputs_fp16_and_onnxruntime)
from tx2_infer_core import reference

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402

IX = core_module('scatter_cases')


def check(label, graph, feeds, tol=0.0):
    """The GPU's outputs of ``graph`` on FP16 ``feeds`` against the numpy reference: equal
    (``tol`` 0: integer-valued outputs), else within ``tol`` (rel L2)."""
    feeds = {k: fp16_round(v) for k, v in feeds.items()}
    want = reference.execute(graph, feeds)
    got = run_graph(graph, feeds)
    for name in graph.outputs:
        assert_close(f'{label} {name}', got[name], want[name], max(tol, 1e-9))
        if tol == 0.0:
            np.testing.assert_array_equal(got[name], want[name], err_msg=label)


@pytest.mark.parametrize('to, dtype', IX.CASTS, ids=[c[1] for c in IX.CASTS])
def test_cast_to_integer_and_bool(to, dtype):
    check(f'Cast to {dtype}', *IX.cast_graph(to, dtype))


@pytest.mark.parametrize('float_indices', [False, True], ids=['int64', 'float'])
@pytest.mark.parametrize('case', IX.ONE_HOTS, ids=[f'{c[0]}-axis{c[3]}' for c in IX.ONE_HOTS])
def test_one_hot(case, float_indices):
    check(f'OneHot {case}', *IX.one_hot_graph(*case, float_indices))


REDUCTIONS = ['none', 'add', 'mul', 'max', 'min']


@pytest.mark.parametrize('reduction', REDUCTIONS)
@pytest.mark.parametrize('case', IX.SCATTER_ELEMENTS,
                         ids=[str(c[0]) for c in IX.SCATTER_ELEMENTS])
def test_scatter_elements(case, reduction):
    check(f'ScatterElements {case[0]} {reduction}',
          *IX.scatter_elements_graph(*case, reduction), tol=2e-3)


@pytest.mark.parametrize('reduction', REDUCTIONS)
@pytest.mark.parametrize('case', IX.SCATTER_ND, ids=[str(c[0]) for c in IX.SCATTER_ND])
def test_scatter_nd(case, reduction):
    check(f'ScatterND {case[0]} {reduction}', *IX.scatter_nd_graph(*case, reduction),
          tol=2e-3)


def test_scatter_elements_of_constant_data():
    graph, feeds = IX.scatter_elements_graph((1, 501, 4), np.full((1, 1, 4), 3), 1, 'none',
                                             data_const=True)
    check('ScatterElements of a constant', graph, feeds, tol=2e-3)


@pytest.mark.parametrize('case', sorted(IX.IN_PLACE))
def test_scatter_written_in_place_or_not(case):
    """The scatters written over their dying data (no copy) and those that must copy it."""
    check(f'ScatterND, {case}', *IX.in_place_graph(case), tol=2e-3)


def test_yolov5_scatter_nd_head(tmp_path):
    graph = IX.yolov5_head(tmp_path)
    feeds = {graph.inputs[0]: np.random.default_rng(5).standard_normal((1, 3, 4, 4, 7))}
    check('YOLOv5 ScatterND head', graph, feeds, tol=3e-3)


def first_near_tie(probs, margin=0.02) -> int:
    """The first decoder step whose two most likely tokens are within ``margin`` (there an
    FP16 run may rightly pick the other one), or the step count."""
    top = np.sort(probs, axis=-1)
    close = np.flatnonzero(top[:, -1] - top[:, -2] < margin)
    return int(close[0]) if close.size else len(probs)


def test_slanet_matches_onnxruntime(tmp_path):
    """slanet on CUDA FP16 against ONNX Runtime FP32 on its photo. The decoder feeds each
    step's ArgMax back (Cast, OneHot) and writes its outputs with ScatterElements. The GPU
    picks ORT's tokens at least up to ORT's first near tie (past one FP16 may rightly take the
    other branch, and all after it differs), and on ORT's path its probabilities and boxes
    match."""
    model = zoo_data.BY_NAME['slanet']
    got, ort_out = zoo_outputs_fp16_and_onnxruntime(zoo_model_path(model.name, tmp_path),
                                                    model)
    names = list(ort_out)
    loc, probs = ort_out[names[0]], ort_out[names[1]]
    tokens, want = got[names[1]][0].argmax(-1), probs[0].argmax(-1)
    differ = np.flatnonzero(tokens != want)
    steps = int(differ[0]) if differ.size else len(want)  # the steps on ORT's path
    assert steps >= first_near_tie(probs[0]) >= 10, (steps, first_near_tie(probs[0]))
    assert_close(f'slanet token probabilities of the first {steps} steps',
                 got[names[1]][0, :steps], probs[0, :steps], 2e-2)
    assert_close(f'slanet boxes of the first {steps} steps', got[names[0]][0, :steps],
                 loc[0, :steps], 2e-2)
