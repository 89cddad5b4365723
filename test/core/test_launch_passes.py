"""The passes that remove CUDA launches (issue 14): a spatial Pad folded into the Conv or
MaxPool reading it (``fold_pad.py``), a per-channel affine chain folded into the unpadded Conv
after it (``fold_input_affine.py``), a decomposed layer norm as one LayerNormalization
(``fuse_layernorm.py``).

Each on the real model that has the pattern: the pipeline with and without the pass, the
launches it saves once lowered for sm_90, and the graph's outputs on the model's photo against
ONNX Runtime on the original model; then small graphs for the cases each pass must decline.
"""
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tx2_infer_core import reference
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.engine_build import default_meta, import_model
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.passes import (PIPELINES, POINTWISE_LEVEL, fold_input_affine, fold_pads,
                                   fold_post_affine, fuse_layernorm, infer_layouts, run_pass)
from tx2_infer_core.passes.fold_input_affine import fold_input_affine_weights
from tx2_infer_core.passes.fold_pad import edge_matches_maxpool, spatial_pads

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402

RNG = np.random.default_rng(5)


def cuda_graph(name, *without):
    """The zoo model as the cuda backend optimises it, optionally without some passes."""
    model = zoo_data.BY_NAME[name]
    path, weights = zoo_data.model_files(model)
    graph = import_model(path, model.input_shape, weights)
    default_meta(graph)
    graph = graph.copy()
    for fn in PIPELINES[POINTWISE_LEVEL]:
        if fn not in without:
            run_pass(graph, fn)
    infer_layouts(graph)
    return graph


def ort_outputs(name) -> tuple:
    """(feeds, ONNX Runtime's outputs) of the zoo model on its photo."""
    model = zoo_data.BY_NAME[name]
    path, _ = zoo_data.model_files(model)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    feeds = {session.get_inputs()[0].name: zoo_data.photo_tensor(model)}
    return feeds, dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def check_model(name, fn, saved, changes):
    """The pass saves ``saved`` launches, changes the op counts by ``changes``, and the graph
    still computes ONNX Runtime's outputs (and the values both graphs share)."""
    without, with_pass = cuda_graph(name, fn), cuda_graph(name)
    launches = [len(lower_graph(g, arch=90, sm_count=132).launches)
                for g in (without, with_pass)]
    assert launches[0] - launches[1] == saved, launches
    before, after = Counter(n.op for n in without.nodes), Counter(n.op for n in with_pass.nodes)
    assert {op: after[op] - before[op] for op in before | after
            if after[op] != before[op]} == changes
    feeds, want = ort_outputs(name)
    got = reference.execute(with_pass, feeds)
    for out, ref in want.items():
        assert zoo_data.rel_error(got[out], ref) < 1e-4, out
    return without, with_pass, feeds


def tiny(nodes, weights, outputs, shape):
    graph = Graph(nodes, ['x'], outputs, {'x': Value('x', shape)}, dict(weights), 'tiny')
    reference.infer_shapes(graph)
    return graph


def folds(graph, fn) -> int:
    """Run pass ``fn`` on a copy; the outputs must not change. Returns its count."""
    feeds = {'x': RNG.standard_normal(graph.values['x'].shape).astype(np.float32)}
    after = graph.copy()
    count = run_pass(after, fn)
    want, got = reference.execute(graph, feeds), reference.execute(after, feeds)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)
    return count


# fold_pads ------------------------------------------------------------------------------------

def test_open_nsfw_pads_fold_into_the_stem():
    """open_nsfw: NHWC input -> Pad(3) -> Transpose -> Conv 7x7, and an edge Pad before
    MaxPool (Caffe's ceil mode): 5 launches (fill + copy, copy + 2 edge copies) go."""
    without, graph, feeds = check_model('open-nsfw', fold_pads, 5, {'Pad': -2})
    stem = next(n for n in graph.nodes if n.op == 'FusedConv')
    pool = next(n for n in graph.nodes if n.op == 'MaxPool')
    assert stem.attrs['pads'] == [3, 3, 3, 3] and pool.attrs['pads'] == [0, 0, 1, 1]
    a = reference.execute(without, feeds, keep_all=True)
    b = reference.execute(graph, feeds, keep_all=True)
    assert a[pool.outputs[0]].shape == (1, 64, 56, 56)
    np.testing.assert_allclose(b[pool.outputs[0]], a[pool.outputs[0]], rtol=1e-5, atol=1e-5)


def test_spatial_pads_seen_through_a_transpose():
    nhwc = [0, 3, 2, 0, 0, 1, 4, 0]          # H by (3, 1), W by (2, 4)
    assert spatial_pads(nhwc, [0, 3, 1, 2]) == [3, 2, 1, 4]
    assert spatial_pads(nhwc) is None         # as NCHW it pads channels
    assert edge_matches_maxpool([0, 0, 1, 1], [3, 3])
    assert not edge_matches_maxpool([0, 0, 3, 1], [3, 3])


def _pad(mode='constant', pads=(0, 0, 1, 2, 0, 0, 2, 1), value=None):
    weights = {'p': np.array(pads, np.int64)}
    inputs = ['x', 'p']
    if value is not None:
        weights['v'] = np.array(value, np.float32)
        inputs.append('v')
    return Node('Pad', 'pad', inputs, ['xp'], {'mode': mode}), weights


def _conv_after(node, weights, shape=(1, 4, 6, 7), **attrs):
    weights = dict(weights, w=RNG.standard_normal((5, 4, 3, 3)).astype(np.float32))
    conv = Node('Conv', 'conv', ['xp', 'w'], ['y'], dict(kernel_shape=[3, 3], **attrs))
    return tiny([node, conv], weights, ['y'], shape)


def _pool_after(node, weights, kernel=3, **attrs):
    pool = Node('MaxPool', 'pool', ['xp'], ['y'], dict(kernel_shape=[kernel, kernel],
                                                       strides=[2, 2], **attrs))
    return tiny([node, pool], weights, ['y'], (1, 4, 6, 7))


@pytest.mark.parametrize('make, n', [
    (lambda: _conv_after(*_pad()), 1),
    (lambda: _conv_after(*_pad(value=0.0), pads=[1, 0, 0, 1]), 1),   # adds to its own pads
    (lambda: _pool_after(*_pad('edge')), 1),
    (lambda: _pool_after(*_pad(value=-np.inf)), 1),
    (lambda: _conv_after(*_pad(value=1.0)), 0),                       # not zeros
    (lambda: _conv_after(*_pad('reflect')), 0),
    (lambda: _pool_after(*_pad('edge', (0, 1, 0, 0, 0, 0, 0, 0))), 0),   # channels
    (lambda: _conv_after(*_pad(), auto_pad='SAME_UPPER'), 0),
    (lambda: _pool_after(*_pad('edge', (0, 0, 3, 0, 0, 0, 3, 0))), 0),   # pad >= kernel
    (lambda: _pool_after(*_pad('edge'), ceil_mode=1), 0),
    (lambda: _pool_after(*_pad()), 0)])                               # zeros are no -inf
def test_fold_pads_small(make, n):
    assert folds(make(), fold_pads) == n


def test_fold_pads_through_a_transpose():
    node, weights = _pad(pads=(0, 2, 1, 0, 0, 1, 3, 0))   # NHWC input (1, 6, 7, 4)
    t = Node('Transpose', 't', ['xp'], ['xt'], {'perm': [0, 3, 1, 2]})
    conv = Node('Conv', 'conv', ['xt', 'w'], ['y'], {'kernel_shape': [3, 3]})
    weights['w'] = RNG.standard_normal((5, 4, 3, 3)).astype(np.float32)
    graph = tiny([node, t, conv], weights, ['y'], (1, 6, 7, 4))
    assert folds(graph, fold_pads) == 1


# fold_input_affine ----------------------------------------------------------------------------

@pytest.mark.parametrize('group, cin, cout, k', [(1, 6, 4, 1), (2, 6, 4, 3), (6, 6, 12, 3)])
def test_input_affine_weights_are_exact_maths(group, cin, cout, k):
    x = RNG.standard_normal((1, cin, 7, 7))
    w = RNG.standard_normal((cout, cin // group, k, k))
    b = RNG.standard_normal(cout)
    s, t = RNG.standard_normal(cin), RNG.standard_normal(cin)
    conv = Node('Conv', 'c', ['x', 'w', 'b'], ['y'], {'group': group, 'kernel_shape': [k, k]})
    from tx2_infer_core.ops import run_node
    want = run_node(conv, [x * s[None, :, None, None] + t[None, :, None, None], w, b])[0]
    got = run_node(conv, [x, *fold_input_affine_weights(w, b, s, t, group)])[0]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_ppocr_rec_affine_blocks_fold_into_the_convs():
    """PP-LCNetV3's ``hardswish(...) * a + b``: all 16 go into the epilogue of the conv before
    them (fold_post_affine); without that pass, fold_input_affine takes the 12 before an
    unpadded conv (those before a padded depthwise conv stay)."""
    check_model('ppocr-rec', fold_post_affine, 16, {'FusedPointwise': -16})
    launches = [len(lower_graph(cuda_graph('ppocr-rec', fold_post_affine, *fns), arch=90,
                                sm_count=132).launches) for fns in ((), (fold_input_affine,))]
    assert launches[1] - launches[0] == 12, launches


def _affine_conv(chain, pads=(0, 0, 0, 0), extra_reader=False):
    """x -> chain of (op, constant, constant first) -> Conv 1x1 (+ a second reader)."""
    nodes, weights, prev = [], {}, 'x'
    for i, (op, c, c_first) in enumerate(chain):
        weights[f'c{i}'] = np.asarray(c, np.float32)
        ins = [f'c{i}', prev] if c_first else [prev, f'c{i}']
        nodes.append(Node(op, f'a{i}', ins, [f'v{i}']))
        prev = f'v{i}'
    weights['w'] = RNG.standard_normal((5, 4, 1, 1)).astype(np.float32)
    weights['b'] = RNG.standard_normal(5).astype(np.float32)
    nodes.append(Node('Conv', 'conv', [prev, 'w', 'b'], ['y'],
                      {'kernel_shape': [1, 1], 'pads': list(pads)}))
    outputs = ['y'] + ([prev] if extra_reader else [])
    return tiny(nodes, weights, outputs, (1, 4, 5, 5))


CHANNEL = RNG.uniform(0.5, 2.0, (1, 4, 1, 1))


@pytest.mark.parametrize('chain, n', [
    ([('Mul', 0.75, False), ('Add', -0.25, False)], 1),            # the LAB block
    ([('Sub', CHANNEL, True), ('Div', CHANNEL, False)], 1),         # c - x, then / c
    ([('Div', CHANNEL, True)], 0)])                                 # c / x is not affine
def test_fold_input_affine_small(chain, n):
    assert folds(_affine_conv(chain), fold_input_affine) == n


def test_fold_input_affine_declines_padding_and_other_readers():
    chain = [('Mul', 0.75, False), ('Add', -0.25, False)]
    assert folds(_affine_conv(chain, pads=(1, 1, 1, 1)), fold_input_affine) == 0
    assert folds(_affine_conv(chain, extra_reader=True), fold_input_affine) == 0


# fuse_layernorm -------------------------------------------------------------------------------

def test_ppocr_rec_layer_norms_fuse(monkeypatch):
    """SVTR's five decomposed layer norms (6 launches each) become one launch each, four of
    them then none: they join the residual GEMM before them (FusedLinearNorm, sm_90, one launch
    under 'fused_few'; 'auto' lowers such few-CTA norms as a GEMM + layernorm again)."""
    monkeypatch.setenv('TX2_INFER_LINEAR_SPLITK', 'fused_few')
    check_model('ppocr-rec', fuse_layernorm, 29,
                {'ReduceMean': -10, 'LayerNormalization': 1, 'Sub': -5, 'Pow': -5,
                 'FusedPointwise': -10, 'FusedLinear': -4, 'FusedLinearNorm': 4})


def _layernorm(square='Pow', gamma=(8,), beta=True, axes=(-1,), flip=False, third=False):
    """x (1, 5, 8) -> the decomposition of ``fuse_layernorm``'s docstring."""
    w = {'two': np.array(2.0, np.float32), 'eps': np.array(1e-5, np.float32)}
    nodes = [Node('ReduceMean', 'm', ['x'], ['m'], {'axes': list(axes)}),
             Node('Sub', 'd', ['m', 'x'] if flip else ['x', 'm'], ['d'])]
    nodes.append(Node('Pow', 'sq', ['d', 'two'], ['sq']) if square == 'Pow'
                 else Node('Mul', 'sq', ['d', 'd'], ['sq']))
    nodes += [Node('ReduceMean', 'v', ['sq'], ['v'], {'axes': list(axes)}),
              Node('Add', 've', ['v', 'eps'], ['ve']), Node('Sqrt', 's', ['ve'], ['s']),
              Node('Div', 'n', ['d', 's'], ['n'])]
    out = 'n'
    if gamma:
        w['g'] = RNG.standard_normal(gamma).astype(np.float32)
        nodes.append(Node('Mul', 'gm', ['n', 'g'], ['gm']))
        out = 'gm'
    if beta:
        w['b'] = RNG.standard_normal(8).astype(np.float32)
        nodes.append(Node('Add', 'y', [out, 'b'], ['y']))
        out = 'y'
    outputs = [out] + (['d'] if third else [])
    return tiny(nodes, w, outputs, (1, 5, 8))


@pytest.mark.parametrize('kwargs, n', [
    ({}, 1), ({'square': 'Mul'}, 1), ({'gamma': None, 'beta': False}, 1),
    ({'gamma': (1, 1, 8)}, 1), ({'axes': (1, 2)}, 1),
    ({'gamma': (5, 8)}, 0),                       # gamma varies along a kept dim
    ({'axes': (1,), 'gamma': None, 'beta': False}, 0),   # not the trailing axes
    ({'flip': True}, 0), ({'third': True}, 0)])
def test_fuse_layernorm_small(kwargs, n):
    assert folds(_layernorm(**kwargs), fuse_layernorm) == n
