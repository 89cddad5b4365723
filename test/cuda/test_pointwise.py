"""Generated pointwise kernels (FusedPointwise) and the vec8 fast paths on the GPU, against the
numpy oracle running the unfused graph: real patterns (decomposed HardSwish, SiLU, GELU,
affine, Where/Cast chains, broadcasts over NHWC, channel views), one launch per chain."""
import numpy as np
import pytest

from conftest import assert_close, fp16_round
from tx2_infer_core import reference
from tx2_infer_core.backends.cuda_backend import CudaBackend
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.passes import POINTWISE_LEVEL, fuse_pointwise, optimize

RNG = np.random.default_rng(14)
X4 = (1, 32, 20, 24)


class Chain:
    """A graph built one node at a time over inputs ``x`` (and more when asked)."""

    def __init__(self, **inputs):
        self.inputs = inputs or {'x': X4}
        self.nodes, self.weights = [], {}
        self.values = {n: self._value(n, s) for n, s in self.inputs.items()}

    @staticmethod
    def _value(name, shape, dtype='float32'):
        return Value(name, tuple(shape), dtype, 'NCHW' if len(shape) == 4 else '')

    def const(self, value, shape=()):
        name = f'k{len(self.weights)}'
        self.weights[name] = np.broadcast_to(np.float32(value), shape).astype(np.float32)
        return name

    def rand(self, shape, scale=1.0):
        name = f'k{len(self.weights)}'
        self.weights[name] = (RNG.standard_normal(shape) * scale).astype(np.float32)
        return name

    def op(self, op, *inputs, shape=None, dtype='float32', **attrs):
        """Append a node; its output shape is ``shape`` or its inputs' broadcast."""
        out = f'v{len(self.nodes)}'
        self.nodes.append(Node(op, f'n{len(self.nodes)}', list(inputs), [out], attrs))
        shapes = [self.values[i].shape if i in self.values else self.weights[i].shape
                  for i in inputs]
        self.values[out] = self._value(out, shape or np.broadcast_shapes(*shapes), dtype)
        return out

    def graph(self, *outputs):
        return Graph(list(self.nodes), list(self.inputs), list(outputs), dict(self.values),
                     dict(self.weights))


def hardswish(c, x):
    t = c.op('Clip', c.op('Add', x, c.const(3.0)), c.const(0.0), c.const(6.0))
    return c.op('Div', c.op('Mul', x, t), c.const(6.0))


def silu_exp(c, x):
    return c.op('Div', x, c.op('Add', c.op('Exp', c.op('Neg', x)), c.const(1.0)))


def gelu(c, x):
    e = c.op('Erf', c.op('Div', x, c.const(np.sqrt(2.0))))
    return c.op('Mul', c.op('Mul', x, c.op('Add', e, c.const(1.0))), c.const(0.5))


def affine_relu(c, x):
    shape = (1, c.values[x].shape[1], 1, 1)
    return c.op('Relu', c.op('Add', c.op('Mul', x, c.rand(shape)), c.rand(shape)))


def where_cast(c, x):
    cond = c.op('Greater', x, c.const(0.25), dtype='bool')
    picked = c.op('Where', cond, x, c.op('Mul', x, c.const(-0.5)))
    return c.op('Tanh', c.op('Cast', picked, to=1))


def per_pixel_gate(c, x):
    """sigmoid(x * s), s one value per pixel (1, 1, H, W): a 'row' read over NHWC."""
    return c.op('Sigmoid', c.op('Mul', x, 's'))


def hardswish_scaled(c, x):
    """HardSwish then a per-channel scale: a chain with a HardSwish step."""
    return c.op('Mul', hardswish(c, x), c.rand((1, c.values[x].shape[1], 1, 1)))


def se_block(c, x):
    """x * sigmoid(relu(GAP(x) * w)): per-channel gate from an activation."""
    gap = c.op('GlobalAveragePool', x, shape=(1, X4[1], 1, 1))
    g = c.op('Sigmoid', c.op('Relu', c.op('Mul', gap, c.rand((1, X4[1], 1, 1)))))
    return c.op('Add', c.op('Mul', x, g), c.const(0.1))


def rowmajor_odd(c, x):
    return c.op('Sqrt', c.op('Abs', c.op('Sub', c.rand((7,)), x)))


PATTERNS = {
    # name: (builder, inputs, nodes after fusion, raw: the chain kept as written (no
    # activation recognition), so its generated kernel computes the decomposed steps)
    'hardswish': (hardswish, {}, 1, False),
    'hardswish_raw': (hardswish, {}, 1, True),
    'hardswish_scaled': (hardswish_scaled, {}, 1, False),
    'silu_exp_raw': (silu_exp, {}, 1, True),
    'gelu_erf_raw': (gelu, {}, 1, True),
    'gelu_erf': (gelu, {}, 1, False),
    'affine_relu': (affine_relu, {}, 1, False),
    'where_cast': (where_cast, {}, 1, False),
    'per_pixel_gate': (per_pixel_gate, {'x': X4, 's': (1, 1, 20, 24)}, 1, False),
    'se_block': (se_block, {}, 3, False),  # GAP, the gate (1, C, 1, 1), the product
    'rowmajor_odd_last_dim': (rowmajor_odd, {'x': (3, 5, 7)}, 1, False),
    'odd_channels_raw': (hardswish, {'x': (1, 6, 9, 11)}, 1, True),
}


def _optimised(graph, raw):
    if not raw:
        return optimize(graph, level=POINTWISE_LEVEL)[0]
    fused = optimize(graph, level=2)[0]
    fuse_pointwise(fused)
    fused.prune()
    return fused


def _compare(graph, label, tol=3e-3, raw=False, **backend_kw):
    feeds = {n: fp16_round(RNG.standard_normal(v) * 3) for n, v in
             ((n, graph.values[n].shape) for n in graph.inputs)}
    want = reference.execute(graph, feeds)
    fused = _optimised(graph, raw)
    backend = CudaBackend(**backend_kw)
    backend.prepare(fused)
    try:
        got = backend.run(feeds)
        launches = list(backend.launches)
    finally:
        backend.close()
    for name in graph.outputs:
        assert_close(f'{label} {name}', got[name], want[name], tol)
    return fused, launches


@pytest.mark.parametrize('name', sorted(PATTERNS))
def test_pattern_matches_the_oracle_in_few_launches(name):
    make, inputs, nodes, raw = PATTERNS[name]
    c = Chain(**inputs)
    graph = c.graph(make(c, 'x'))
    fused, launches = _compare(graph, name, raw=raw)
    assert len(fused.nodes) == nodes, [n.op for n in fused.nodes]
    assert len(launches) == nodes  # one launch per node
    if raw:
        assert [n.op for n in fused.nodes] == ['FusedPointwise']


NHWC_CASES = {  # pattern after a 1x1 conv, so NHWC: the fused graph's ops
    'hardswish_raw': ['FusedConv', 'FusedPointwise'],
    'silu_exp_raw': ['FusedConv', 'FusedPointwise'],
    'gelu_erf_raw': ['FusedConv', 'FusedPointwise'],
    'where_cast': ['FusedConv', 'FusedPointwise'],
    'per_pixel_gate': ['FusedConv', 'FusedPointwise'],
    'se_block': ['FusedConv', 'GlobalAveragePool', 'FusedPointwise', 'FusedPointwise'],
    'odd_channels_raw': ['FusedConv', 'FusedPointwise'],
}


@pytest.mark.parametrize('name', sorted(NHWC_CASES))
def test_pattern_over_nhwc_broadcasts(name):
    make, inputs, _, raw = PATTERNS[name]
    c = Chain(**inputs)
    shape = c.values['x'].shape
    y = c.op('Conv', 'x', c.rand((shape[1], shape[1], 1, 1), 0.3), kernel_shape=[1, 1],
             shape=shape)
    fused, launches = _compare(c.graph(make(c, y)), f'nhwc {name}', tol=5e-3, raw=raw)
    assert [n.op for n in fused.nodes] == NHWC_CASES[name]
    assert len(launches) == len(fused.nodes)


@pytest.mark.parametrize('name', ['hardswish', 'silu_exp_raw', 'affine_relu'])
def test_pattern_after_a_conv_is_one_launch(name):
    make = PATTERNS[name][0]
    c = Chain()
    conv = c.op('Conv', 'x', c.rand((32, 32, 3, 3), 0.1), pads=[1, 1, 1, 1],
                kernel_shape=[3, 3], shape=X4)
    graph = c.graph(make(c, conv))
    fused, launches = _compare(graph, f'conv+{name}', tol=5e-3)
    assert [n.op for n in fused.nodes] == ['FusedConv']


def test_chain_writing_into_a_concat_slice():
    """The chain's output is a channel view of the Concat (placement): strided writes."""
    c = Chain()
    a = hardswish(c, 'x')
    b = c.op('Sigmoid', c.op('Mul', 'x', c.const(2.0)))
    cat = c.op('Concat', a, b, axis=1, shape=(1, 64, 20, 24))
    conv = c.op('Conv', cat, c.rand((16, 64, 1, 1), 0.1), kernel_shape=[1, 1],
                shape=(1, 16, 20, 24))
    _compare(c.graph(conv), 'concat of chains', tol=5e-3)


# no image op here: the tensors are row-major, the last dim (24) is the 'channel'
BINARY_CASES = [('Add', X4), ('Mul', (24,)), ('Sub', ()), ('Div', (1, 1, 24))]


@pytest.mark.parametrize('op,b_shape', BINARY_CASES)
def test_single_binary_fast_path(op, b_shape):
    c = Chain()
    b = c.rand(b_shape) if b_shape != X4 else None
    if b is None:
        c.inputs['z'] = X4
        c.values['z'] = Chain._value('z', X4)
        b = 'z'
    elif op == 'Div':
        c.weights[b] = np.abs(c.weights[b]) + 0.5
    graph = c.graph(c.op(op, 'x', b))
    _, launches = _compare(graph, f'{op} by {b_shape}')
    assert [k.kernel for k in launches] == ['binary_vec8']


def test_run_returns_copies_unless_reuse_outputs():
    c = Chain()
    graph = c.graph(c.op('Sigmoid', 'x'))
    x = fp16_round(RNG.standard_normal(X4))
    for reuse in (False, True):
        backend = CudaBackend(reuse_outputs=reuse)
        backend.prepare(graph)
        try:   # reused outputs are the backend's pinned memory: read them before close()
            first = backend.run({'x': x})['v0']
            second = backend.run({'x': -x})['v0']
            assert (first is second) == reuse
            assert_close(f'sigmoid reuse={reuse}', second, 1 / (1 + np.exp(x)), 3e-3)
        finally:
            backend.close()


@pytest.mark.parametrize('name', ['hardswish', 'affine_relu', 'se_block'])
def test_chain_through_kernel_codes_matches_the_oracle(name, monkeypatch):
    """The same patterns with codegen's C tables emptied: every step that has a kernel code
    goes through kernels/elementwise.cuh (how a newly added op is generated)."""
    from tx2_infer_core.cuda import codegen_pointwise as cg
    monkeypatch.setattr(cg, 'UNARY_C', {k: v for k, v in cg.UNARY_C.items()
                                        if cg.traits.TRAITS[k].code is None})
    monkeypatch.setattr(cg, 'BINARY_C', {k: v for k, v in cg.BINARY_C.items()
                                         if k not in cg.traits.codes(cg.traits.BINARY)})
    make, inputs, _, raw = PATTERNS[name]
    c = Chain(**inputs)
    _compare(c.graph(make(c, 'x')), f'{name} via codes', raw=raw)
