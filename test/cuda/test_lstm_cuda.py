"""The CUDA LSTM (the projection GEMM, then ``kernels/lstm.cu``) against the numpy op on
several shapes, and the whole ddddocr-rec (CRNN: conv + LSTM + CTC) against ONNX Runtime:
logits within the FP16 model tolerance and the same CTC reading of rendered text."""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import (assert_close, assert_replays_the_same, core_module, fp16_round,
                      zoo_model_path)
from tx2_infer_core.backends.cuda_backend import CudaBackend
from tx2_infer_core.engine import Engine

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402


lc = core_module('recurrent_cases')
Case = lc.LstmCase

CASES = {
    'ddddocr-size': (Case(seq=32, batch=1, input_size=512, hidden=512,
                          direction='bidirectional', seed=1), ()),
    'hidden-1024': (Case(seq=8, batch=2, input_size=64, hidden=1024, seed=2), ()),
    'odd-hidden-reverse-lens': (Case(seq=6, batch=3, input_size=24, hidden=37,
                                     direction='reverse', initial=True, lens=(6, 2, 4),
                                     seed=3), ()),
    'batch-first-constant-states': (Case(seq=5, batch=2, input_size=16, hidden=64, layout=1,
                                         direction='bidirectional', initial=True, seed=4),
                                    ('initial_h', 'initial_c')),
    'no-y-no-bias': (Case(seq=7, batch=4, input_size=32, hidden=128, bias=False,
                          outputs=(False, True, True), seed=5), ()),
    'three-inputs-gather': (Case(seq=4, batch=1, input_size=3, hidden=16,
                                 direction='bidirectional', lens=(3,), seed=6), ()),
}


def reference(case) -> dict:
    """The numpy op on the FP16-rounded inputs (what the GPU is given)."""
    return case.reference({n: fp16_round(a) if a.dtype == np.float32 else a
                           for n, a in case.arrays().items()})


@pytest.mark.parametrize('conv_path', ['tc', 'simt'])
@pytest.mark.parametrize('name', sorted(CASES))
def test_lstm_matches_numpy(name, conv_path):
    case, constants = CASES[name]
    graph = case.graph(constants)
    feeds = {n: fp16_round(case.arrays()[n]) for n in graph.inputs}
    backend = CudaBackend(conv_path=conv_path, use_graph=False)
    backend.prepare(graph)
    try:
        out = backend.run(feeds)
    finally:
        backend.close()
    for output, want in reference(case).items():
        assert_close(f'LSTM {name} {conv_path} {output}', out[output], want, 1e-2)


def test_lstm_in_a_captured_graph_replays_the_same():
    """Two replays of the CUDA graph give the same answer (the projection scratch and the
    states are rewritten every frame)."""
    case, _ = CASES['odd-hidden-reverse-lens']
    graph = case.graph()
    assert_replays_the_same(graph, {n: fp16_round(case.arrays()[n]) for n in graph.inputs})


@pytest.fixture(scope='module')
def ddddocr_rec(tmp_path_factory):
    """The model (``zoo_model_path``: the asset cache or $TX2_INFER_ZOO_PACKED), its ONNX
    Runtime session and its engines on both conv paths."""
    import onnxruntime as ort
    model = zoo_data.BY_NAME['ddddocr-rec']
    path = zoo_model_path(model.name, tmp_path_factory.mktemp('zoo'))
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    engines = {p: Engine.build(path, input_shape=model.input_shape, backend='cuda',
                               precision='fp16', backend_options={'conv_path': p})
               for p in ('tc', 'simt')}
    yield model, session, engines
    for engine in engines.values():
        engine.close()


def _inputs(model):
    photo = ('photo ' + model.photo, zoo_data.photo_tensor(model))
    texts = [(f'text {t}', zoo_data.image_tensor(lc.render_text(t), model.input_shape,
                                                 model.prep)) for t in lc.TEXTS]
    return [photo] + texts


@pytest.mark.parametrize('conv_path', ['tc', 'simt'])
def test_ddddocr_rec_matches_onnxruntime(ddddocr_rec, conv_path):
    """Logits within 2e-2 (relative L2, as the other FP16 models) on the zoo photo and on
    rendered text, and the rendered text read the same (greedy CTC). The SIMT path (the TX2's)
    sums in half2 chunks: where it misreads a character on a near tie, the case is an xfail
    naming the text (seen on the H200: one character of '2024')."""
    model, session, engines = ddddocr_rec
    engine = engines[conv_path]
    name = engine.input_specs[0].name
    misread = []
    for label, x in _inputs(model):
        (want,) = session.run(None, {name: x})
        (out,) = engine.run({name: x}).values()
        assert_close(f'ddddocr-rec {conv_path} {label}', out, want, 2e-2)
        if label.startswith('text') and lc.ctc_decode(out) != lc.ctc_decode(want):
            misread.append(label)
    assert conv_path == 'simt' or not misread, misread
    if misread:
        pytest.xfail(f'half2 accumulation misread {misread}')
