"""Unary ops with no kernel code on CUDA (``generated`` in ``ops/traits.py``): one generated
pointwise kernel each, alone or fused into a chain, without a GPU.

Their C expressions (``cuda/codegen_pointwise.py`` UNARY_C), built for the host, against the
numpy ops over each op's range (Round's ties, Sign's zero, Shrink's and ThresholdedRelu's
thresholds, default, other and negative attributes); the lowering of a lone node (NHWC kept;
madmom-beats' Elu, now an activation: the ActParams kernel alone, a conv's epilogue after a
conv), of a chain, of a Clip with a bound computed at run time, the refusals; the
sources compiling for sm_62/72/87 (NVRTC) and sm_90 (nvcc).
"""
import numpy as np
import pytest
from unary_cases import (ATTRS, GENERATED, NEGATIVE_ATTRS, device_compilers, host_compiler,
                         host_program, probe)

from tx2_infer_core import reference
from tx2_infer_core.cuda import codegen_pointwise as cg, compile as cc, layout
from tx2_infer_core.cuda.launch import Ref, Slot
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops import run_node, traits
from tx2_infer_core.passes import POINTWISE_LEVEL, optimize

RNG = np.random.default_rng(21)
# every C expression with a reference to compare with (Not: bool; Cast: a copy)
C_UNARY = [op for op in cg.UNARY_C if op not in ('Not', 'Cast')]
NAN_TO_ZERO = {'Relu', 'HardSigmoid'}  # fmaxf, as the convolutions' epilogue (common.cuh)


def test_every_float_unary_op_of_the_cpu_runs_on_cuda():
    """A one-input op mapping float32 to float32 on the CPU has a CUDA lowering."""
    x = np.linspace(1.1, 1.9, 9, dtype=np.float32)
    for t in traits.TRAITS.values():
        if t.kind not in (traits.UNARY, traits.ACTIVATION):
            continue
        try:
            with np.errstate(all='ignore'):
                y = run_node(Node(t.name, 'n', ['x'], ['y'], {}), [x])[0]
        except TypeError:  # integers only (BitwiseNot)
            continue
        if y.dtype == np.float32:
            assert t.cuda, f'{t.name}: float32 -> float32 on the CPU, refused on CUDA'
    assert {'Shrink', 'Round', 'Acosh'} <= set(GENERATED)
    assert not {'Elu', 'Selu', 'Celu', 'Softplus', 'ThresholdedRelu'} & set(GENERATED)


def test_generated_ops_have_a_c_expression():
    assert set(GENERATED) <= set(cg.UNARY_C)


@pytest.mark.skipif(host_compiler() is None, reason='no host C++ compiler')
def test_c_expressions_match_numpy_on_the_host(tmp_path):
    cases = [(op, {}) for op in C_UNARY] + list(ATTRS.items()) + list(NEGATIVE_ATTRS.items())
    cases.append(('Gelu', {'approximate': 'tanh'}))
    x = np.concatenate([probe(op) for op in dict.fromkeys(op for op, _ in cases)])
    outputs = host_program([[(op, ['x0'], attrs)] for op, attrs in cases], tmp_path)(x)
    for (op, attrs), got in zip(cases, outputs):
        with np.errstate(all='ignore'):
            want = run_node(Node(op, 'n', ['x'], ['y'], attrs), [x])[0]
        if op in NAN_TO_ZERO:
            got, want = got[~np.isnan(x)], want[~np.isnan(x)]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f'{op} {attrs}')


def _after_conv(op, attrs=None, shape=(1, 8, 6, 6)):
    """x -> Conv -> c -> op -> y (NCHW; NHWC in the CUDA arena)."""
    n, c, h, w = shape
    values = {v: Value(v, shape, 'float32', 'NCHW') for v in ('x', 'c', 'y')}
    weights = {'w': RNG.standard_normal((c, c, 3, 3)).astype(np.float32) / 8}
    nodes = [Node('Conv', 'conv', ['x', 'w'], ['c'], {'pads': [1, 1, 1, 1],
                                                      'kernel_shape': [3, 3]}),
             Node(op, 'act', ['c'], ['y'], dict(attrs or {}))]
    return Graph(nodes, ['x'], ['y'], values, weights)


@pytest.mark.parametrize('op', GENERATED)
def test_lone_op_is_one_generated_launch_keeping_nhwc(op):
    attrs = ATTRS.get(op, {})
    graph = _after_conv(op, attrs)
    for arch in (62, 90):
        act = [k for k in lower_graph(graph, arch=arch).launches if k.node == 'act']
        assert [k.kernel for k in act] == ['pointwise']
        source = cc.GENERATED[act[0].module]
        assert cg.step_expression(op, ['x0'], attrs) in source
        for value in attrs.values():
            assert cg.float_literal(value) in source
    assert layout.nhwc_values(graph) == {'x', 'c', 'y'}


def _one(op, shape, attrs=None, dtype='float32', inputs=('x',), weights=None):
    values = {n: Value(n, shape, dtype, '') for n in ('x', 'y')}
    return Graph([Node(op, 'n0', list(inputs), ['y'], dict(attrs or {}))], ['x'], ['y'],
                 values, dict(weights or {}))


def test_madmom_beats_elu_lowers():
    """madmom-beats' 'elu_11' alone: Elu over a row-major (142, 79, 16) tensor, alpha 0.7: an
    activation (ACT_ELU), one 16-byte-access launch of the ActParams kernel."""
    launches = lower_graph(_one('Elu', (142, 79, 16), {'alpha': 0.7}), arch=90).launches
    assert [k.kernel for k in launches] == ['unary_vec8']
    assert launches[0].fields['n8'] * 8 == 142 * 79 * 16
    act = launches[0].fields['act']
    assert int(act['kind']) == traits.TRAITS['Elu'].code and act['alpha'] == np.float32(0.7)


def test_a_chain_of_generated_ops_fuses_into_one_launch():
    c = ['x', 'a', 'b', 'd', 'e']
    values = {n: Value(n, (2, 24, 10), 'float32', '') for n in c}
    nodes = [Node('Elu', 'n1', ['x'], ['a'], {'alpha': 0.5}),
             Node('Selu', 'n2', ['a'], ['b']), Node('Shrink', 'n3', ['b'], ['d'], {'lambd': .3}),
             Node('Atan', 'n4', ['d'], ['e'])]
    graph = Graph(nodes, ['x'], ['e'], values, {})
    fused, _ = optimize(graph.copy(), POINTWISE_LEVEL)
    assert [n.op for n in fused.nodes] == ['FusedPointwise']
    x = {'x': RNG.standard_normal((2, 24, 10)).astype(np.float32) * 3}
    np.testing.assert_allclose(reference.execute(fused, x)['e'], reference.execute(graph, x)['e'],
                               rtol=1e-6, atol=1e-7)
    assert [k.kernel for k in lower_graph(fused, arch=90).launches] == ['pointwise']


def test_clip_with_a_bound_computed_at_run_time():
    """oww-melspec: Clip(x, lo, inf), ``lo`` an activation (a scalar: max(x) - 80 there)."""
    values = {n: Value(n, s, 'float32', '')
              for n, s in (('x', (1, 1, 133, 32)), ('lo', ()), ('y', (1, 1, 133, 32)))}
    graph = Graph([Node('Clip', 'clip', ['x', 'lo', 'hi'], ['y'])], ['x', 'lo'], ['y'], values,
                  {'hi': np.array(np.inf, np.float32)})
    lowered = lower_graph(graph, arch=90)
    assert [k.kernel for k in lowered.launches] == ['pointwise']
    _, accesses, _ = cg.plan_walk([lowered.slots[n] for n in ('x', 'lo')], lowered.slots['y'])
    assert [a.mode for a in accesses] == ['full', 'scalar']
    assert 'fmaxf(x0, x1)' in cc.GENERATED[lowered.launches[0].module]


def test_refusals_name_the_node():
    with pytest.raises(UnsupportedOpError, match="'Sign' at node 'n0'.*float data only"):
        lower_graph(_one('Sign', (4, 8), dtype='int32'), arch=90)
    with pytest.raises(UnsupportedOpError, match="'Gelu' at node 'n0'.*approximate=erf2"):
        lower_graph(_one('Gelu', (4, 8), {'approximate': 'erf2'}), arch=90)


@pytest.mark.skipif(not device_compilers(), reason='neither NVRTC nor nvcc installed')
def test_generated_ops_compile_with_every_attribute_form():
    """Every generated op with default, other and negative attributes in one program."""
    steps = [(op, ['x0'], attrs.get(op, {})) for attrs in ({}, ATTRS, NEGATIVE_ATTRS)
             for op in GENERATED]
    steps += [('Gelu', ['x0'], {'approximate': 'tanh'}), ('Add', ['t0', 't1'], {})]
    x, y = (Slot(Ref('arena', at), (4, 8), (8, 1)) for at in (0, 256))
    launch = cg.pointwise_launch('all', steps, [x], y)
    for arch, compiler in device_compilers():
        assert cc.compile_cached(launch.module, arch, compiler=compiler)[:4] == b'\x7fELF'
