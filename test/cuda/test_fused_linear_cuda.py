"""FusedLinear on the GPU: the 1x1-convolution GEMM (conv_mma from sm_80, WMMA, SIMT) with its
epilogue (bias, ReLU / SiLU / GELU erf and tanh, residual before or after the activation) against
the numpy op on several M, N, K (odd N and K, N = 1, 3-D activations); the BERT-shaped graph
(test/core/attention_cases.py) against ONNX Runtime in 15 launches (11 on sm_90); per-column
scales and shifts folded into the weights (test/core/test_fold_linear_affine.py: one GEMM
launch) and vit-focus, whose layer scales fold so, against ONNX Runtime."""
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import (assert_close, assert_engine_matches_onnxruntime, core_module,
                      first_output_fp16, fp16_round, run_conv, zoo_model_path)
from tx2_infer_core.engine import Engine
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops import run_node

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'test' / 'core'))
sys.path.insert(0, str(ROOT / 'bench'))
import attention_cases as cases  # noqa: E402
import zoo_data  # noqa: E402

FOLD_CASES = core_module('test_fold_linear_affine')

PATHS = ('simt', 'wmma', 'tc')
ACTIVATIONS = ('', 'Relu', 'SiLU', 'Gelu', 'GeluTanh')
RESIDUALS = ('none', 'before', 'after')
# (activation rows ..., K, N): BERT-tiny's four GEMMs, odd N, N = 1, odd K (the gather
# kernels), a 2-D input, many rows
SHAPES = [((1, 128), 128, 384), ((1, 128), 128, 512), ((1, 128), 512, 128), ((7,), 16, 9),
          ((3, 11), 24, 1), ((65,), 33, 130), ((2, 500), 64, 77), ((5,), 8, 3)]
RNG = np.random.default_rng(21)


def linear_graph(rows, k, n, activation='', residual='none'):
    """A one-node FusedLinear graph (x [*rows, K] @ w [K, N] + b, ``residual`` an input of the
    output's shape) and fp16-exact feeds."""
    x_shape, y_shape = tuple(rows) + (k,), tuple(rows) + (n,)
    weights = {'w': fp16_round(RNG.standard_normal((k, n)) / np.sqrt(k)),
               'b': RNG.standard_normal(n).astype(np.float32)}
    inputs = {'x': x_shape} if residual == 'none' else {'x': x_shape, 'r': y_shape}
    values = {name: Value(name, shape) for name, shape in inputs.items()}
    values['y'] = Value('y', y_shape)
    attrs = {'activation': activation}
    if residual != 'none':
        attrs['residual_after_act'] = int(residual == 'after')
    node = Node('FusedLinear', 'fl', ['x', 'w', 'b'] + (['r'] if residual != 'none' else []),
                ['y'], attrs)
    feeds = {name: fp16_round(RNG.standard_normal(shape)) for name, shape in inputs.items()}
    return Graph([node], list(inputs), ['y'], values, weights), feeds


def _check(graph, feeds, path, monkeypatch, label):
    node = graph.nodes[0]
    ref = run_node(node, [feeds.get(n, graph.weights.get(n)) for n in node.inputs])[0]
    out, kernels = run_conv(graph, feeds, path, monkeypatch)
    assert len(kernels) == 1 and kernels[0].startswith('conv'), kernels
    assert_close(f'FusedLinear {path} {label}', out, ref, 3e-3)


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('residual', RESIDUALS)
@pytest.mark.parametrize('activation', ACTIVATIONS, ids=lambda a: a or 'none')
def test_epilogue_matches_numpy(activation, residual, path, monkeypatch):
    graph, feeds = linear_graph((2, 33), 40, 72, activation, residual)
    _check(graph, feeds, path, monkeypatch, f'act={activation} residual={residual}')


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('epilogue', [('Gelu', 'none'), ('', 'before'), ('GeluTanh', 'after')],
                         ids=lambda e: f'{e[0] or "none"}-{e[1]}')
@pytest.mark.parametrize('shape', SHAPES, ids=lambda s: 'x'.join(map(str, s[0] + s[1:])))
def test_shapes_match_numpy(shape, epilogue, path, monkeypatch):
    rows, k, n = shape
    graph, feeds = linear_graph(rows, k, n, *epilogue)
    _check(graph, feeds, path, monkeypatch, f'{shape} {epilogue}')


@pytest.mark.parametrize('path', ('simt', 'tc'))
def test_bert_shaped_matches_onnxruntime_in_11_or_15_launches(tmp_path, path):
    onnx_path = tmp_path / 'bert.onnx'
    onnx.save(cases.bert_model(mask=cases.padding_mask(128, 100)), str(onnx_path))
    feeds = {'embeddings': cases.embeddings()}
    engine = Engine.build(onnx_path, None, precision='fp16', backend='cuda',
                          backend_options={'conv_path': path})
    try:
        kernels = [k.kernel for k in engine.backend.launches]
        out = engine.run(feeds)[engine.graph.outputs[0]]
    finally:
        engine.close()
    # 'tc' on sm_90: LayerNorm in 4 GEMMs, or 2 where the 4-CTA FFN-out GEMMs split
    # (launch_knobs 'auto')
    fused = sum(k.endswith('_ln') for k in kernels)
    assert fused in (0, 2, 4) and len(kernels) == 15 - fused, kernels
    assert kernels.count('layernorm') == 5 - fused, kernels
    ref = ort.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider']).run(
        None, feeds)[0]
    assert_close(f'bert-shaped {path} (FusedLinear)', out, ref, 1e-2)


@pytest.mark.parametrize('path', ('simt', 'tc'))
@pytest.mark.parametrize('name', ['bias_scale_residual', 'sub_from_residual', 'bias_sub_from_div'])
def test_folded_scale_and_shift_run_in_one_gemm_launch(tmp_path, name, path):
    """x -> MatMul -> [bias] -> scale / shift -> [residual], the scale and shift folded into
    the weights: one GEMM launch, against ONNX Runtime on the unfolded model."""
    onnx_path, _, feeds = FOLD_CASES.linear_model(tmp_path, FOLD_CASES.FOLDS[name][0])
    out, kernels = first_output_fp16(onnx_path, feeds, path)
    assert len(kernels) == 1 and kernels[0].startswith('conv'), kernels
    ref = FOLD_CASES.ort_outputs(onnx_path, feeds)[0]
    assert_close(f'folded {name} {path}', out, ref, 1e-2)


def test_vit_focus_matches_onnxruntime(tmp_path):
    """Its 24 layer scales folded into the GEMMs, their residual Adds in the GEMM epilogue."""
    model = zoo_data.BY_NAME['vit-focus']
    assert_engine_matches_onnxruntime('vit-focus', zoo_model_path(model.name, tmp_path), model)
