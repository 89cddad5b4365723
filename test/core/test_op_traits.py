"""The op-traits table (``ops/traits.py``) and what derives from it.

The generic tests run over every op of a kind, so a new activation or unary op is tested here
(CPU reference, Conv fusion, CUDA lowering and NHWC layout) without a new test.
"""
import inspect

import numpy as np
import pytest

from tx2_infer_core import reference
from tx2_infer_core.cuda import cluster, layout, lower_conv, params, placement
from tx2_infer_core.cuda.lowering import LOWERINGS, LoweringContext, lower_graph
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.errors import Tx2InferError
from tx2_infer_core.ops import OPS, run_node, supported_ops, traits
from tx2_infer_core.passes.fuse_conv import ACTIVATIONS as FUSABLE, fuse_conv_activation
from tx2_infer_core.passes.layouts import KEEP_OPS, NCHW_OPS
from tx2_infer_core.passes.sink_transposes import UNARY as SINKABLE
from tx2_infer_core.planner import ELEMENTWISE_OPS

RNG = np.random.default_rng(5)
ACTIVATIONS = [n for n in traits.names(kind=traits.ACTIVATION) if n != 'SiLU']
CUDA_UNARY = sorted(traits.codes(traits.UNARY))


def test_cpu_registry_is_the_table():
    assert set(OPS) == set(traits.TRAITS) and supported_ops() == sorted(traits.TRAITS)
    assert all(fn.__name__ == name for name, fn in OPS.items())


def test_cuda_table_is_the_table():
    assert set(LOWERINGS) == set(traits.cuda_ops())
    assert all(t.cuda or t.code is None for t in traits.TRAITS.values())
    assert set(traits.codes(traits.UNARY)) == set(params.UNARY)
    assert set(params.ACTIVATIONS) == {''} | set(traits.codes(traits.ACTIVATION))


def test_derived_lists():
    assert set(layout.FOLLOW_OPS) == set(KEEP_OPS)
    assert set(layout.IMAGE_OPS) <= set(NCHW_OPS)
    assert set(placement.STRIDED_OPS) <= set(LOWERINGS)
    assert {'Relu', 'Add', 'Concat', 'Conv', 'Reshape'} <= placement.STRIDED_OPS
    assert 'Softmax' not in placement.STRIDED_OPS and 'MatMul' not in placement.STRIDED_OPS
    assert {'Relu', 'LeakyRelu', 'Clip', 'HardSigmoid', 'Add', 'Sub', 'Mul', 'Div',
            'BatchNormalization'} <= set(ELEMENTWISE_OPS)
    assert 'Max' not in ELEMENTWISE_OPS  # its chain of launches reads every input
    assert set(ACTIVATIONS) <= SINKABLE
    assert set(FUSABLE) == set(traits.names(kind=traits.ACTIVATION))  # SiLU nodes too


def test_in_place_ops_keep_their_storage_order():
    """An output written over its input must be stored like it (NHWC or not) on CUDA."""
    for name in ELEMENTWISE_OPS:
        t = traits.TRAITS[name]
        assert t.keeps_layout or not t.cuda, name


@pytest.mark.parametrize('name', [n for n in ACTIVATIONS if traits.TRAITS[n].params])
def test_activation_params_are_the_reference_defaults(name):
    kw = inspect.signature(OPS[name]).parameters
    for attr, default in traits.TRAITS[name].params:
        assert kw[attr].default == default, (name, attr)


def _conv_act_graph(op, attrs=None, shape=(1, 8, 6, 6)):
    """x -> Conv(w, b) -> c -> op -> y (NCHW)."""
    n, c, h, w = shape
    values = {v: Value(v, shape, 'float32', 'NCHW') for v in ('x', 'c', 'y')}
    weights = {'w': RNG.standard_normal((c, c, 3, 3)).astype(np.float32) / 8,
               'b': RNG.standard_normal(c).astype(np.float32)}
    conv = {'pads': [1, 1, 1, 1], 'kernel_shape': [3, 3]}
    nodes = [Node('Conv', 'conv', ['x', 'w', 'b'], ['c'], conv),
             Node(op, 'act', ['c'], ['y'], dict(attrs or {}))]
    return Graph(nodes, ['x'], ['y'], values, weights)


def _attrs(name):
    """Non-default attributes for an activation (defaults must not hide a dropped one)."""
    return {attr: default * 0.5 + 0.05 for attr, default in traits.TRAITS[name].params}


@pytest.mark.parametrize('name', ACTIVATIONS)
def test_activation_fuses_into_conv(name):
    graph = _conv_act_graph(name, _attrs(name))
    if name == 'Clip':
        graph.weights['lo'], graph.weights['hi'] = np.float32(-0.5), np.float32(0.7)
        graph.nodes[1].inputs += ['lo', 'hi']
    x = {'x': RNG.standard_normal((1, 8, 6, 6)).astype(np.float32)}
    want = reference.execute(graph, x)['y']
    fused = graph.copy()
    assert fuse_conv_activation(fused) == 1
    assert [(n.op, n.attrs['activation']) for n in fused.nodes] == [('FusedConv', name)]
    np.testing.assert_allclose(reference.execute(fused, x)['y'], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', ACTIVATIONS)
def test_activation_lowers_alone_and_fused_keeping_nhwc(name):
    graph = _conv_act_graph(name, _attrs(name))
    launches = lower_graph(graph, arch=87).launches
    act = [k for k in launches if k.node == 'act']
    assert [k.kernel for k in act] == ['unary_vec8']  # dense NHWC in and out
    rec = act[0].fields['act']
    assert int(rec['kind']) == params.ACTIVATIONS[name]
    for (attr, _), field in zip(traits.TRAITS[name].params, traits.ACT_FIELDS):
        assert float(rec[field]) == pytest.approx(graph.nodes[1].attrs[attr])
    assert layout.nhwc_values(graph) == {'x', 'c', 'y'}
    fuse_conv_activation(graph)
    for arch in (62, 90):  # SIMT conv; conv_mma with split-K (the epilogue in the reduce)
        conv = lower_graph(graph, arch=arch).launches
        assert int(conv[-1].fields['act']['kind']) == params.ACTIVATIONS[name]


@pytest.mark.parametrize('name', CUDA_UNARY)
def test_unary_op_lowers_with_its_code_keeping_nhwc(name):
    graph = _conv_act_graph(name)
    act = [k for k in lower_graph(graph, arch=62).launches if k.node == 'act']
    assert [(k.kernel, k.fields['op']) for k in act] == [('unary_vec8', params.UNARY[name])]
    assert layout.nhwc_values(graph) == {'x', 'c', 'y'}


def test_gelu_reference_and_cuda_tanh_form():
    """The tanh form runs as a generated kernel on CUDA; an unknown form is refused."""
    x = np.linspace(-4, 4, 33, dtype=np.float32)
    erf = run_node(Node('Gelu', 'g', ['x'], ['y'], {}), [x])[0]
    tanh = run_node(Node('Gelu', 'g', ['x'], ['y'], {'approximate': 'tanh'}), [x])[0]
    assert erf.dtype == np.float32 and np.abs(erf - tanh).max() < 1e-3
    np.testing.assert_allclose(erf[-1], 4 * 0.99996833, rtol=1e-6)
    graph = _conv_act_graph('Gelu', {'approximate': 'tanh'})
    act = [k for k in lower_graph(graph, arch=90).launches if k.node == 'act']
    assert [k.kernel for k in act] == ['pointwise']
    graph = _conv_act_graph('Gelu', {'approximate': 'cubic'})
    with pytest.raises(Exception, match="'Gelu' at node 'act'.*approximate=cubic"):
        lower_graph(graph, arch=90)


def _split_k_graph(big_first):
    """A convolution that conv_mma splits over K (tiny M and N, long K), optionally after a
    convolution with large weights (so the weight buffer differs before the workspace)."""
    g = Graph([], ['x'], ['y'], {'x': Value('x', (1, 256, 4, 4), 'float32', 'NCHW')}, {})
    src = 'x'
    if big_first:
        g.weights['w0'] = np.zeros((256, 256, 3, 3), np.float32)
        g.values['h'] = Value('h', (1, 256, 4, 4), 'float32', 'NCHW')
        g.nodes.append(Node('Conv', 'c0', ['x', 'w0'], ['h'], {'pads': [1, 1, 1, 1]}))
        src = 'h'
    g.weights['w1'] = np.ones((64, 256, 3, 3), np.float32)
    g.values['y'] = Value('y', (1, 64, 4, 4), 'float32', 'NCHW')
    g.nodes.append(Node('Conv', 'c1', [src, 'w1'], ['y'], {'pads': [1, 1, 1, 1]}))
    return g


def test_split_k_workspace_belongs_to_each_lowering(monkeypatch):
    """Each lowering gets its own zeroed workspace inside its own weight buffer (a second
    lowering, as a second prepare, does not reuse the first one's offset)."""
    monkeypatch.setenv('TX2_INFER_SPLITK', 'launch')
    for graph in (_split_k_graph(True), _split_k_graph(False), _split_k_graph(True)):
        lowered = lower_graph(graph, arch=90, sm_count=132)
        split = [k for k in lowered.launches if k.fields.get('splits', 1) > 1]
        assert split and split[-1].kernel == 'conv_splitk_reduce'
        ws = {k.fields['ws'] for k in split}
        assert len(ws) == 1
        ws = ws.pop()
        end = ws.offset + lower_conv.WORKSPACE_BYTES
        assert ws.base == 'weights' and end <= lowered.weight_bytes
        assert not lowered.weight_image()[ws.offset:end].any()


@pytest.mark.parametrize('arch', [87, 90])
def test_split_k_is_one_cluster_launch_from_sm90(arch, monkeypatch):
    """sm_90 sums a split layer's partials in a thread-block cluster: one launch, no workspace,
    the cluster (a power of two, at most 8) the grid's z; sm_87 keeps the second launch."""
    monkeypatch.delenv('TX2_INFER_SPLITK', raising=False)
    lowered = lower_graph(_split_k_graph(True), arch=arch, sm_count=132)
    split = [k for k in lowered.launches if k.fields.get('splits', 1) > 1]
    assert split
    if arch < cluster.CLUSTER_MIN_ARCH:
        assert split[-1].kernel == 'conv_splitk_reduce'
        return
    assert all(k.kernel.endswith('_cl') and k.fields['ws'].base == 'null' for k in split)
    assert all(k.grid[2] == k.fields['splits'] in cluster.CLUSTER_SIZES for k in split)
    assert all(f"CONV_MMA_CLUSTER={k.grid[2]}" in k.module for k in split)
    assert not any(k.kernel == 'conv_splitk_reduce' for k in lowered.launches)


def test_cluster_sizes_and_fits(monkeypatch):
    assert [cluster.cluster_size(s) for s in (2, 3, 4, 7, 8, 9, 16)] == [2, 2, 4, 4, 8, 8, 8]
    assert [cluster.cluster_fits(bm, bn) for bm, bn, _ in lower_conv.MMA_TILES] == \
        [False, True, True, True]  # 128x128's FP32 tile passes 48 KiB of shared memory
    monkeypatch.setenv('TX2_INFER_SPLITK', 'atomics')
    with pytest.raises(Tx2InferError, match='TX2_INFER_SPLITK'):
        cluster.splitk_mode(90)


def test_context_workspace_is_made_once():
    ctx = LoweringContext(_split_k_graph(False), 90, 'tc', 132, {})
    assert ctx.conv_workspace() == ctx.conv_workspace()
    assert ctx.weight_bytes == lower_conv.WORKSPACE_BYTES
