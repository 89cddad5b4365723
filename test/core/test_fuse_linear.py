"""FusedLinear without a GPU: ``fuse_linear`` (a MatMul by a constant matrix with its bias,
activation and residual) on small ONNX graphs, the BERT-shaped graph (``attention_cases.py``)
and the zoo's ppocr-rec, each run on the numpy backend against ONNX Runtime on the unfused
model; the lowered launches (a count, and each GEMM launch emulated on the host: its fields,
the weight image and the kernels' GELU expressions from ``kernels/common.cuh``); refusals.
"""
import math
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import attention_cases as cases
from test_attention import MASKED, VARIANTS, bert, numpy_outputs, ort_output, rel
from test_lstm_lowering import Memory
from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.launch import NULL
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import PlanFileError, UnsupportedOpError
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.onnx_import import load_onnx
from tx2_infer_core.ops import elementwise
from tx2_infer_core.passes import optimize
from tx2_infer_core.plan_attrs import check_activation, check_attrs

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402

RNG = np.random.default_rng(5)


# kind: (op, the constant's shape from the model, constant the first input?)
AFFINE_STEPS = {
    'scale': ('Mul', lambda m: (m.n,), False),             # a ViT's layer scale
    'scale_first': ('Mul', lambda m: (1, 1, m.n), True),
    'scalar_scale': ('Mul', lambda m: (), False),
    'div': ('Div', lambda m: (m.n,), False),
    'div_by_zero': ('Div', lambda m: (m.n,), False),
    'divided_by': ('Div', lambda m: (m.n,), True),         # c / y: not affine in y
    'shift': ('Add', lambda m: (1, m.n), False),
    'sub': ('Sub', lambda m: (m.n,), False),
    'sub_from': ('Sub', lambda m: (m.n,), True),           # c - y
    'row_scale': ('Mul', lambda m: m.out_shape[-2:-1] + (1,), False),
}


class _Model:
    """x -> MatMul(W) -> the chain's steps; 'r' is a second input of the output's shape."""

    def __init__(self, x_shape, n):
        self.nodes, self.inits, self.n, self.k = [], [], n, x_shape[-1]
        self.out_shape = tuple(x_shape[:-1]) + (n,)
        self.last = self.op('MatMul', ['x', self.const('w', (self.k, n), 1 / self.k ** 0.5)])

    def const(self, name, shape, scale=1.0):
        value = (RNG.standard_normal(shape) * scale).astype(np.float32)
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type, inputs, **attrs):
        out = f't{len(self.nodes)}'
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def step(self, kind):
        """Apply one step of a chain to the current value."""
        y = self.last
        if kind == 'bias':                  # as the exporter writes nn.Linear: bias first
            self.last = self.op('Add', [self.const(f'b{len(self.nodes)}', (self.n,)), y])
        elif kind == 'row_bias':            # varies along the rows: not a bias
            self.last = self.op('Add', [y, self.const('rb', self.out_shape[-2:-1] + (1,))])
        elif kind == 'residual':
            self.last = self.op('Add', ['r', y])
        elif kind == 'relu':
            self.last = self.op('Relu', [y])
        elif kind == 'silu':
            self.last = self.op('Mul', [y, self.op('Sigmoid', [y])])
        elif kind == 'gelu':                # the decomposed erf GELU (attention_cases._gelu)
            erf = self.op('Erf', [self.op('Div', [y, self.scalar('sqrt2', math.sqrt(2))])])
            half = self.op('Mul', [y, self.op('Add', [erf, self.scalar('one', 1.0)])])
            self.last = self.op('Mul', [half, self.scalar('half', 0.5)])
        elif kind in ('gelu_op', 'gelu_tanh'):
            form = 'tanh' if kind == 'gelu_tanh' else 'none'
            self.last = self.op('Gelu', [y], approximate=form)
        elif kind == 'side_read':           # a second reader of the current value
            self.side = self.op('Relu', [y])
        elif kind in AFFINE_STEPS:          # an op with a constant (fold_linear_affine.py)
            op_type, shape, constant_first = AFFINE_STEPS[kind]
            c = self.const(f'c{len(self.nodes)}', shape(self))
            if kind == 'div_by_zero':
                self.inits[-1] = numpy_helper.from_array(np.zeros(shape(self), np.float32), c)
            self.last = self.op(op_type, [c, y] if constant_first else [y, c])

    def scalar(self, name, value):
        self.inits.append(numpy_helper.from_array(np.array(value, np.float32), name))
        return name

    def proto(self, extra_outputs=()):
        def info(name, shape):
            return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))
        outs = [self.last] + list(extra_outputs) + ([self.side] if hasattr(self, 'side') else [])
        inputs = [info('x', self.out_shape[:-1] + (self.k,))]
        if any('r' in n.input for n in self.nodes):
            inputs.append(info('r', self.out_shape))
        graph = helper.make_graph(self.nodes, 'linear', inputs,
                                  [info(o, self.out_shape) for o in outs], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 20)],
                                 ir_version=10)  # an older ONNX Runtime loads it too


def linear_model(tmp_path, steps, x_shape=(2, 5, 24), n=10, extra_outputs=()):
    """(path, graph, feeds) of x -> MatMul -> ``steps``; fp16-exact feeds."""
    model = _Model(x_shape, n)
    for kind in steps:
        model.step(kind)
    outputs = [model.nodes[0].output[0]] if 'product' in extra_outputs else []
    path = tmp_path / 'linear.onnx'
    onnx.save(model.proto(outputs), str(path))
    graph = load_onnx(path)
    feeds = {name: RNG.standard_normal(graph.values[name].shape).astype(np.float16)
             .astype(np.float32) for name in graph.inputs}
    return path, graph, feeds


def ort_outputs(path, feeds) -> list:
    return ort.InferenceSession(str(path), providers=['CPUExecutionProvider']).run(None, feeds)


# name: (chain steps, the FusedLinear's (bias?, activation, residual_after_act or None))
CHAINS = {
    'bias': (['bias'], (True, '', None)),
    'bias_gelu': (['bias', 'gelu'], (True, 'Gelu', None)),
    'bias_gelu_op': (['bias', 'gelu_op'], (True, 'Gelu', None)),
    'bias_gelu_tanh': (['bias', 'gelu_tanh'], (True, 'GeluTanh', None)),
    'bias_residual': (['bias', 'residual'], (True, '', 0)),
    'bias_scale_residual': (['bias', 'scale', 'residual'], (True, '', 0)),
    'bias_relu_residual': (['bias', 'relu', 'residual'], (True, 'Relu', 1)),
    'bias_residual_relu': (['bias', 'residual', 'relu'], (True, 'Relu', 0)),
    'bias_gelu_residual': (['bias', 'gelu', 'residual'], (True, 'Gelu', 1)),
    'residual_silu': (['residual', 'silu'], (False, 'SiLU', 0)),
    'silu': (['silu'], (False, 'SiLU', None)),
}


def _fused(graph):
    nodes = [n for n in graph.nodes if n.op == 'FusedLinear']
    assert len(nodes) == 1 and len(graph.nodes) == 1, [n.op for n in graph.nodes]
    node = nodes[0]
    residual = node.attrs.get('residual_after_act') if len(node.inputs) > 3 else None
    return bool(node.inputs[2]), node.attrs.get('activation', ''), residual


@pytest.mark.parametrize('name', sorted(CHAINS))
def test_chain_becomes_one_fused_linear_matching_onnxruntime(tmp_path, name):
    steps, want = CHAINS[name]
    path, graph, feeds = linear_model(tmp_path, steps)
    optimised, report = optimize(graph, 3)
    assert report['fuse_linear'] == 1 and _fused(optimised) == want
    ours = numpy_outputs(optimised, feeds)[optimised.outputs[0]]
    assert rel(ours, ort_outputs(path, feeds)[0]) <= 1e-6


# name: (chain steps, extra graph outputs): nothing (or not everything) may be fused
DECLINED = {
    'row_bias': (['row_bias'], ()),                  # not one value per column
    'product_is_an_output': (['bias', 'relu'], ('product',)),
    'product_read_twice': (['side_read', 'bias'], ()),
}


@pytest.mark.parametrize('name', sorted(DECLINED))
def test_declines_and_still_matches_onnxruntime(tmp_path, name):
    steps, extra = DECLINED[name]
    path, graph, feeds = linear_model(tmp_path, steps, extra_outputs=extra)
    optimised, report = optimize(graph, 3)
    assert report['fuse_linear'] == 0 and 'MatMul' in optimised.summary()
    ours = numpy_outputs(optimised, feeds)
    for name, ref in zip(optimised.outputs, ort_outputs(path, feeds)):
        assert rel(ours[name], ref) <= 1e-6


def test_a_bias_chain_after_a_side_read_keeps_the_product(tmp_path):
    """The activation after the bias is fused, not the product read elsewhere."""
    path, graph, feeds = linear_model(tmp_path, ['bias', 'side_read', 'relu'])
    optimised, report = optimize(graph, 3)
    assert report['fuse_linear'] == 1
    node = next(n for n in optimised.nodes if n.op == 'FusedLinear')
    assert node.attrs.get('activation', '') == '' and 'Relu' in optimised.summary()
    ours = numpy_outputs(optimised, feeds)
    for name, ref in zip(optimised.outputs, ort_outputs(path, feeds)):
        assert rel(ours[name], ref) <= 1e-6


# The BERT-shaped graph -------------------------------------------------------------------------

ROLES = [(True, '', None), (True, '', 0), (True, 'Gelu', None), (True, '', 0)]  # qkv, o, ffn
LINEAR_OPS = ('FusedLinear', 'FusedLinearNorm')  # the latter with its LayerNorm (sm_90: fused)


@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_bert_shaped_gemms_take_their_epilogues(tmp_path, variant):
    path, graph = bert(tmp_path, **VARIANTS[variant])
    optimised, report = optimize(graph, 3)
    assert report['fuse_linear'] == 8
    summary = optimised.summary()
    assert summary == {'FusedLinear': 4, 'FusedLinearNorm': 4, 'FusedAttention': 2,
                       'LayerNormalization': 1}, summary  # o and out take their LayerNorm
    roles = []
    for node in (n for n in optimised.nodes if n.op in LINEAR_OPS):
        residual = node.attrs.get('residual_after_act') if len(node.inputs) > 3 else None
        roles.append((bool(node.inputs[2]), node.attrs.get('activation', ''), residual))
    assert roles == ROLES * 2
    x = cases.embeddings()
    ours = numpy_outputs(optimised, {'embeddings': x})[optimised.outputs[0]]
    assert rel(ours, ort_output(path, {'embeddings': x})) <= 1e-5


@pytest.mark.parametrize('arch', [90, 87, 62])
def test_bert_shaped_lowers_to_15_launches(tmp_path, arch, monkeypatch):
    """Per layer: QKV GEMM, attention, o GEMM (bias + residual), LayerNorm, inter GEMM (bias +
    GELU), out GEMM (bias + residual), LayerNorm; and the embedding LayerNorm. On sm_90 the
    two LayerNorms of a layer are in the o and out GEMMs' epilogues (11 launches) where no
    few-CTA GEMM splits ($TX2_INFER_LINEAR_SPLITK=off)."""
    monkeypatch.setenv('TX2_INFER_LINEAR_SPLITK', 'off')
    _, graph = bert(tmp_path, **MASKED)
    optimised, _ = optimize(graph, 3)
    launches = lower_graph(optimised, arch, sm_count=132).launches
    families = Counter(launch.module.split('@')[0] for launch in launches)
    gemm = 'conv_mma' if arch >= 80 else 'conv'
    assert families == {gemm: 8, 'layernorm': 1 if arch >= 90 else 5, 'attention': 2}
    gemms = [launch.fields for launch in launches if launch.module.startswith('conv')]
    assert all(f['bias'] is not NULL for f in gemms)
    assert [f['res'] is not NULL for f in gemms] == [False, True, False, True] * 2
    assert [int(f['act']['kind']) for f in gemms] == [0, 0, params.ACT_CODES['Gelu'], 0] * 2


def test_ppocr_rec_numpy_matches_onnxruntime():
    """The real model: its SVTR blocks' linear layers take bias, Swish and residuals."""
    model = zoo_data.BY_NAME['ppocr-rec']
    path, _ = zoo_data.model_files(model)
    graph = load_onnx(path, model.input_shape)
    optimised, report = optimize(graph, 3)
    kinds = Counter((bool(n.inputs[2]), n.attrs.get('activation', ''), len(n.inputs) > 3)
                    for n in optimised.nodes if n.op in LINEAR_OPS)
    assert report['fuse_linear'] == 9 and 'MatMul' not in optimised.summary()
    assert kinds == {(True, '', False): 3, (True, 'SiLU', False): 2, (True, '', True): 4}
    x = zoo_data.photo_tensor(model)
    feeds = {graph.inputs[0]: x}
    ours = numpy_outputs(optimised, feeds)[optimised.outputs[0]]
    assert rel(ours, ort_output(path, feeds)) <= 1e-5
    launches = lower_graph(optimised, 87, sm_count=8).launches
    assert sum(1 for launch in launches if launch.node in
               {n.name for n in optimised.nodes if n.op == 'FusedLinear'}) == 5
    assert sum(1 for launch in launches if launch.node in  # GEMM + layernorm below sm_90
               {n.name for n in optimised.nodes if n.op == 'FusedLinearNorm'}) == 8


# The lowered GEMM launch, emulated on the host -------------------------------------------------

def kernel_expression(macro) -> str:
    """The C expression ``tx2_act`` (kernels/common.cuh) returns for ``macro``."""
    text = (ROOT / 'kernels' / 'common.cuh').read_text()
    return re.search(rf'case {macro}:\s*return ([^;]+);', text)[1]


def c_eval(expression, v):
    """A float C expression of ``v`` (erff, tanhf, float literals) evaluated in float64."""
    python = re.sub(r'(\d\.?\d*)f\b', r'\1', expression)
    python = python.replace('erff(', 'erf(').replace('tanhf(', 'tanh(')
    return eval(python, {'erf': np.vectorize(math.erf), 'tanh': np.tanh, 'v': v})  # noqa: S307


def kernel_activation(code, v):
    """ActParams kind ``code`` applied to ``v``: the GELU forms as the kernel writes them."""
    macros = {params.ACT_CODES['Gelu']: 'ACT_GELU', params.ACT_CODES['GeluTanh']: 'ACT_GELU_TANH'}
    if code in macros:
        return c_eval(kernel_expression(macros[code]), v)
    name = {c: n for n, c in params.ACTIVATIONS.items()}[code]
    return v if not name else getattr(elementwise, name)(v)


def emulate_gemm(mem, f):
    """A ConvParams 1x1-GEMM launch: y[m] = epilogue(x[m] . w + bias, residual) (FP16 out)."""
    rows, k, n = f['N'] * f['P'] * f['Q'], f['Cg'], f['Kg']
    x = mem.read(f['x'], rows * f['x_pix'], np.float16).astype(np.float64).reshape(rows, -1)
    w = mem.read(f['w'], n * k, np.float16).astype(np.float64).reshape(n, k)
    v = x[:, f['x_off']:f['x_off'] + k] @ w.T
    v += mem.read(f['bias'], n, np.float32) if f['bias'] is not NULL else 0
    r = 0
    if f['res'] is not NULL:
        r = mem.read(f['res'], rows * f['r_pix'], np.float16).astype(np.float64)
        r = r.reshape(rows, -1)[:, f['r_off']:f['r_off'] + n]
    v = kernel_activation(int(f['act']['kind']), v + (0 if f['res_after'] else r))
    mem.write(f['y'], (v + (r if f['res_after'] else 0)).astype(np.float16))


def emulated_output(graph, feeds, arch):
    """The output of a graph that lowers to one GEMM launch, emulated."""
    lowered = lower_graph(graph, arch, sm_count=132)
    assert len(lowered.launches) == 1
    mem = Memory(lowered)
    for name in graph.inputs:
        mem.write(lowered.slots[name].ref, feeds[name].astype(np.float16))
    emulate_gemm(mem, lowered.launches[0].fields)
    slot = lowered.slots[graph.outputs[0]]
    return mem.read(slot.ref, int(np.prod(slot.shape)), np.float16).reshape(slot.shape)


SHAPES = [((2, 5, 24), 10), ((7, 16), 9), ((1, 3, 4, 33), 1), ((65, 8), 130)]


@pytest.mark.parametrize('shape', SHAPES, ids=lambda s: f'{s[0]}x{s[1]}')
@pytest.mark.parametrize('name', sorted(CHAINS))
def test_lowered_gemm_launch_computes_the_chain(tmp_path, name, shape):
    """Bias, activation (the kernel's own GELU expressions), residual and its order, as wired
    into the launch's fields, against ONNX Runtime on the unfused model (FP16 output)."""
    path, graph, feeds = linear_model(tmp_path, CHAINS[name][0], *shape)
    optimised, _ = optimize(graph, 3)
    ref = ort_outputs(path, feeds)[0]
    for arch in (90, 62):
        out = emulated_output(optimised, feeds, arch)
        np.testing.assert_allclose(out, ref, atol=4e-3 * (1 + np.abs(ref).max()), rtol=0)


def test_kernel_gelu_expressions_are_erf_and_tanh_forms():
    """ACT_GELU is x * Phi(x) (ONNX Gelu), ACT_GELU_TANH its tanh approximation; the two differ
    by more than FP16 rounding somewhere, so a swap is seen."""
    v = np.linspace(-6, 6, 1201)
    erf = c_eval(kernel_expression('ACT_GELU'), v)
    tanh = c_eval(kernel_expression('ACT_GELU_TANH'), v)
    np.testing.assert_allclose(erf, elementwise.Gelu(v), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(tanh, elementwise.Gelu(v, approximate='tanh'), rtol=1e-6,
                               atol=1e-7)
    assert np.abs(erf - tanh).max() > 1e-4


# Refusals --------------------------------------------------------------------------------------

def _one_node(attrs, weight_shape=(4, 3), weights=True):
    w = np.ones(weight_shape, np.float32)
    values = {'x': Value('x', (2, 4)), 'y': Value('y', (2, 3))}
    if not weights:
        values['w'] = Value('w', weight_shape)
    node = Node('FusedLinear', 'fl', ['x', 'w', ''], ['y'], attrs)
    return Graph([node], ['x'] + ([] if weights else ['w']), ['y'], values,
                 {'w': w} if weights else {})


def test_plan_check_takes_gelu_forms_on_fused_linear_only():
    check_attrs(_one_node({'activation': 'GeluTanh'}))
    with pytest.raises(PlanFileError, match="'fl'.*activation.*'Bogus'"):
        check_attrs(_one_node({'activation': 'Bogus'}))
    with pytest.raises(PlanFileError, match="'fc'.*activation.*'GeluTanh'"):
        check_activation(Node('FusedConv', 'fc', ['x', 'w'], ['y'], {'activation': 'GeluTanh'}))


def test_lowering_refuses_a_weight_that_is_not_a_constant():
    with pytest.raises(UnsupportedOpError, match="FusedLinear.*'fl'.*constant matrix"):
        lower_graph(_one_node({}, weights=False), 87)
