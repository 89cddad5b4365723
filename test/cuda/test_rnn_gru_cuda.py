"""The CUDA RNN and GRU (the projection GEMM, then ``kernels/recurrent.cu``) against the numpy
op on the zoo shapes and on every direction, activation, linear_before_reset and optional
input, and the whole madmom-onsets (6 RNNs) and madmom-downbeats (4 GRUs) against ONNX
Runtime."""
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


Case = core_module('recurrent_cases').RecurrentCase

CASES = {
    # the zoo's nodes: madmom-onsets' first and later layers, madmom-downbeats' first
    'madmom-onsets-layer1': (Case('RNN', seq=144, batch=1, input_size=266, hidden=25,
                                  initial=True, activations=('Tanh',), seed=1), ()),
    'madmom-onsets-layer2-reverse': (Case('RNN', seq=144, batch=1, input_size=50, hidden=25,
                                          direction='reverse', initial=True, seed=2), ()),
    'madmom-downbeats-layer1': (Case(seq=4, batch=1, input_size=180, hidden=25, initial=True,
                                     linear_before_reset=1, seed=3), ()),
    'gru-lbr0-bidirectional-lens': (Case(seq=6, batch=3, input_size=24, hidden=37,
                                         direction='bidirectional', initial=True,
                                         lens=(6, 2, 4), seed=4), ()),
    'gru-lbr1-reverse-batch-first-constant-h0-no-bias': (Case(
        seq=5, batch=2, input_size=16, hidden=64, direction='reverse', layout=1,
        initial=True, bias=False, linear_before_reset=1, seed=5), ('initial_h',)),
    'gru-lbr0-hidden-1024': (Case(seq=6, batch=2, input_size=64, hidden=1024, seed=6), ()),
    'gru-lbr1-hidden-1024-y-only': (Case(seq=6, batch=2, input_size=64, hidden=1024,
                                         linear_before_reset=1, outputs=(True, False),
                                         seed=7), ()),
    'rnn-bidirectional-relu-sigmoid-lens': (Case('RNN', seq=7, batch=3, input_size=12,
                                                 hidden=40, direction='bidirectional',
                                                 activations=('Relu', 'Sigmoid'),
                                                 lens=(7, 1, 3), seed=8), ()),
    'rnn-hidden-1024-y_h-only': (Case('RNN', seq=8, batch=2, input_size=32, hidden=1024,
                                      outputs=(False, True), seed=9), ()),
    'rnn-batch-first-bidirectional-no-bias': (Case('RNN', seq=5, batch=2, input_size=3,
                                                   hidden=16, direction='bidirectional',
                                                   layout=1, bias=False, initial=True,
                                                   seed=10), ()),
}


def reference(case) -> dict:
    """The numpy op on the FP16-rounded inputs (what the GPU is given)."""
    return case.reference({n: fp16_round(a) if a.dtype == np.float32 else a
                           for n, a in case.arrays().items()})


def run(case, constants, **options) -> dict:
    graph = case.graph(constants)
    feeds = {n: fp16_round(case.arrays()[n]) for n in graph.inputs}
    backend = CudaBackend(**options)
    backend.prepare(graph)
    try:
        return {k: v.copy() for k, v in backend.run(feeds).items()}
    finally:
        backend.close()


@pytest.mark.parametrize('conv_path', ['tc', 'simt'])
@pytest.mark.parametrize('name', sorted(CASES))
def test_rnn_gru_match_numpy(name, conv_path):
    case, constants = CASES[name]
    out = run(case, constants, conv_path=conv_path, use_graph=False)
    for output, want in reference(case).items():
        assert_close(f'{case.op} {name} {conv_path} {output}', out[output], want, 1e-2)


def test_gru_in_a_captured_graph_replays_the_same():
    """Two replays of the CUDA graph give the same answer (the projection scratch and the
    states are rewritten every frame)."""
    case, _ = CASES['gru-lbr0-bidirectional-lens']
    graph = case.graph()
    assert_replays_the_same(graph, {n: fp16_round(case.arrays()[n]) for n in graph.inputs})


@pytest.fixture(scope='module')
def zoo_paths(tmp_path_factory):
    """{name: model path} (``zoo_model_path``: the asset cache or $TX2_INFER_ZOO_PACKED)."""
    return {n: zoo_model_path(n, tmp_path_factory.mktemp('zoo'))
            for n in ('madmom-onsets', 'madmom-downbeats')}


@pytest.mark.parametrize('states', ['zero', 'random'])
@pytest.mark.parametrize('name', ['madmom-onsets', 'madmom-downbeats'])
def test_madmom_matches_onnxruntime(zoo_paths, name, states):
    """The recording's features, the per-layer states at zero (as madmom starts them) or
    random: every output within 2e-2 (relative L2, as the other FP16 models)."""
    import onnxruntime as ort
    model, path = zoo_data.BY_NAME[name], zoo_paths[name]
    engine = Engine.build(path, input_shape=model.input_shape, backend='cuda',
                          precision='fp16')
    try:
        feeds = zoo_data.feeds(model, engine.input_specs)
        rng = np.random.default_rng(0)
        for spec in engine.input_specs[1:]:
            if states == 'random':
                feeds[spec.name] = rng.uniform(-0.5, 0.5, spec.shape).astype(spec.dtype)
        got = engine.run(feeds)
    finally:
        engine.close()
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    for out, want in zip(names, session.run(names, feeds)):
        assert_close(f'{name} states {states} {out}', got[out], want, 2e-2)
