"""ONNX LSTM on the CPU: the numpy op against ONNX Runtime on generated small LSTMs (every
direction, layout, optional input and output), its refusals, the engine on a small LSTM model
(numpy and ort backends), and ddddocr-rec (CRNN: conv + LSTM + CTC) reading rendered text as
ONNX Runtime does."""
import dataclasses
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings

from recurrent_cases import TEXTS, LstmCase, ctc_decode, ctc_margin, lstm_cases, render_text
from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Node
from tx2_infer_core.ops import run_node

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
import zoo_data  # noqa: E402


def ort_run(case) -> dict:
    """{output name: array} of ONNX Runtime on ``case``; ORT has no layout 1, so a batch-first
    case runs as its layout-0 twin (the same numbers transposed), outputs transposed back."""
    if case.layout:
        twin = ort_run(dataclasses.replace(case, layout=0))
        return {n: y.transpose(2, 0, 1, 3) if n == 'Y' else y.swapaxes(0, 1)
                for n, y in twin.items()}
    model = case.onnx_model()
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, case.feeds())))


def assert_matches_ort(case, ours):
    expected = ort_run(case)
    assert sorted(ours) == sorted(expected)
    for name, want in expected.items():
        assert ours[name].shape == want.shape, (name, ours[name].shape, want.shape)
        np.testing.assert_allclose(ours[name], want, rtol=1e-5, atol=2e-6, err_msg=name)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lstm_cases())
def test_lstm_matches_onnxruntime(case):
    assert_matches_ort(case, case.reference())


@pytest.mark.parametrize('case', [
    LstmCase(direction='bidirectional', initial=True, lens=(3, 1), seed=1),
    LstmCase(direction='reverse', layout=1, lens=(2, 3), peephole=True, seed=2),
    LstmCase(seq=6, batch=1, input_size=8, hidden=16, direction='bidirectional', seed=3),
], ids=['bidirectional-lens', 'reverse-batch-first', 'larger'])
def test_lstm_cases_match_onnxruntime(case):
    """Fixed cases (always run): sequence lengths, both layouts, peepholes."""
    assert_matches_ort(case, case.reference())


@pytest.mark.parametrize('attrs, detail', [
    ({'clip': 3.0}, 'clip=3.0'),
    ({'input_forget': 1}, 'input_forget=1'),
    ({'activations': ['Relu', 'Tanh', 'Tanh']}, 'activations'),
    ({'activation_alpha': [0.5]}, 'activation_alpha'),
    ({'direction': 'sideways'}, 'direction'),
    ({'layout': 2}, 'layout=2'),
    ({'hidden_size': 7}, 'hidden_size=7'),
])
def test_unsupported_attributes_are_refused_by_name(attrs, detail):
    case = LstmCase()
    node = case.node()
    node = Node(node.op, node.name, node.inputs, node.outputs, dict(node.attrs, **attrs))
    arrays = case.arrays()
    with pytest.raises(UnsupportedOpError, match="'LSTM' at node 'lstm0'") as err:
        run_node(node, [arrays.get(n) for n in node.inputs])
    assert detail in str(err.value)


def test_default_activations_spelled_out_are_accepted():
    case = LstmCase(direction='bidirectional')
    node = case.node()
    attrs = dict(node.attrs, activations=['Sigmoid', 'Tanh', 'Tanh'] * 2)
    arrays = case.arrays()
    ours = run_node(Node('LSTM', 'n', node.inputs, node.outputs, attrs),
                    [arrays.get(n) for n in node.inputs])
    for got, want in zip(ours, case.reference().values()):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize('backend', ['numpy', 'ort'])
def test_engine_runs_an_lstm_without_its_y_output(backend, tmp_path):
    """Shapes of a node with an omitted output, the plan and the ONNX export (ort)."""
    case = LstmCase(seq=4, batch=2, direction='bidirectional', initial=True,
                    outputs=(False, True, True), seed=5)
    path = tmp_path / 'lstm.onnx'
    onnx.save(case.onnx_model(), path)
    engine = Engine.build(path, input_shape=case.feeds()['X'].shape, backend=backend)
    try:
        assert_matches_ort(case, engine.run(case.feeds()))
    finally:
        engine.close()


@pytest.fixture(scope='module')
def ddddocr_rec():
    model = zoo_data.BY_NAME['ddddocr-rec']
    path, _ = zoo_data.model_files(model)
    engine = Engine.build(path, input_shape=model.input_shape, backend='numpy')
    yield model, path, engine
    engine.close()


@pytest.mark.parametrize('text', TEXTS)
def test_ddddocr_rec_reads_rendered_text_as_onnxruntime(ddddocr_rec, text):
    """The whole CRNN on the numpy oracle: logits within 1e-4 and the same CTC reading."""
    model, path, engine = ddddocr_rec
    x = zoo_data.image_tensor(render_text(text), model.input_shape, model.prep)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    (want,) = session.run(None, {engine.input_specs[0].name: x})
    (ours,) = engine.run({engine.input_specs[0].name: x}).values()
    assert ctc_margin(want) > 0.5 and len(ctc_decode(want)) >= 4
    assert zoo_data.rel_error(ours, want) <= 1e-4
    assert ctc_decode(ours) == ctc_decode(want)
