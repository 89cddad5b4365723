"""Squeeze-and-excite blocks as one launch (cuda/squeeze_excite.py), without a GPU: which
blocks are taken, the rewrite, the launch and the arena (test/cuda/test_squeeze_excite_cuda.py
runs the kernel)."""
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tx2_infer_core import reference
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.cuda.squeeze_excite import (ATTR, MAX_HIDDEN, MAX_PRODUCTS,
                                                fuse_squeeze_excite)
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.passes import POINTWISE_LEVEL, optimize

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
import zoo_data  # noqa: E402
import zoo_launches  # noqa: E402

RNG = np.random.default_rng(3)


def se_graph(c=40, hidden=10, n=2, h=6, w=9, act1='Relu', gap_outputs=False):
    """x -> GAP -> Conv 1x1 (act1) -> Conv 1x1 -> HardSigmoid -> Mul(x, s) -> y."""
    weights = {'w1': RNG.standard_normal((hidden, c, 1, 1)).astype(np.float32),
               'b1': RNG.standard_normal(hidden).astype(np.float32),
               'w2': RNG.standard_normal((c, hidden, 1, 1)).astype(np.float32),
               'b2': RNG.standard_normal(c).astype(np.float32)}
    nodes = [Node('GlobalAveragePool', 'gap', ['x'], ['m']),
             Node('Conv', 'fc1', ['m', 'w1', 'b1'], ['h0']),
             Node(act1, 'act1', ['h0'], ['h'], {'slope': 0.1} if act1 == 'PRelu' else {}),
             Node('Conv', 'fc2', ['h', 'w2', 'b2'], ['s0']),
             Node('HardSigmoid', 'act2', ['s0'], ['s'], dict(alpha=0.2, beta=0.5)),
             Node('Mul', 'scale', ['x', 's'], ['y'])]
    if act1 == 'PRelu':
        weights['slope'] = np.full((hidden, 1, 1), 0.1, np.float32)
        nodes[2] = Node('PRelu', 'act1', ['h0', 'slope'], ['h'])
    outputs = ['y', 'm'] if gap_outputs else ['y']
    graph = Graph(nodes, ['x'], outputs, {'x': Value('x', (n, c, h, w))}, weights)
    reference.infer_shapes(graph)
    return optimize(graph, POINTWISE_LEVEL)[0]


def test_a_block_becomes_one_pool_node_writing_the_scale(monkeypatch):
    g = se_graph()
    assert Counter(n.op for n in g.nodes)['FusedConv'] == 2
    fused, count = fuse_squeeze_excite(g)
    assert count == 1 and len(fused.nodes) == len(g.nodes) - 2
    gap = next(n for n in fused.nodes if n.op == 'GlobalAveragePool')
    first, second = gap.attrs[ATTR]
    assert gap.outputs == second.outputs and first.outputs[0] == second.inputs[0]
    launches = lower_graph(g, 90).launches
    assert [k.kernel for k in launches].count('squeeze_excite') == 1
    assert 'global_reduce' not in [k.kernel for k in launches]
    se = next(k for k in launches if k.kernel == 'squeeze_excite')
    assert se.fields['C1'] == 10 and se.fields['C'] == 40 and se.grid[:2] == (2, 2)
    monkeypatch.setenv('TX2_INFER_SQUEEZE_EXCITE', 'off')
    assert len(lower_graph(g, 90).launches) == len(launches) + 2


@pytest.mark.parametrize('arch', [62, 87, 90])
def test_every_arch_takes_it(arch):
    assert [k.kernel for k in lower_graph(se_graph(), arch).launches].count(
        'squeeze_excite') == 1


def test_not_taken(monkeypatch):
    assert fuse_squeeze_excite(se_graph(gap_outputs=True))[1] == 0  # the pool is read too
    assert fuse_squeeze_excite(se_graph(act1='PRelu'))[1] == 0  # a slope per channel
    assert fuse_squeeze_excite(se_graph(hidden=MAX_HIDDEN + 1))[1] == 0
    assert fuse_squeeze_excite(se_graph(c=64, hidden=MAX_PRODUCTS // 64 + 1))[1] == 0
    assert fuse_squeeze_excite(se_graph(c=64, hidden=MAX_PRODUCTS // 64))[1] == 1
    monkeypatch.setenv('TX2_INFER_SQUEEZE_EXCITE', 'off')
    assert fuse_squeeze_excite(se_graph())[1] == 0


def test_the_scale_never_shares_bytes_with_the_pooled_input():
    g = se_graph()
    low = lower_graph(g, 90)
    gap = next(n for n in fuse_squeeze_excite(g)[0].nodes if ATTR in n.attrs)
    x, s = low.slots['x'], low.slots[gap.outputs[0]]
    spans = [(v.ref.offset, v.ref.offset + int(np.prod(v.shape)) * v.itemsize) for v in (x, s)]
    assert spans[0][1] <= spans[1][0] or spans[1][1] <= spans[0][0]


def test_zoo_mobile_models_lose_two_launches_a_block():
    """ppocr-cls (MobileNetV3: 7 of its 9 blocks, the others past ``MAX_PRODUCTS``; its tenth
    pool feeds the classifier) and ppocr-det (8 of 10): two launches fewer a block."""
    for name, blocks in (('ppocr-cls', 7), ('ppocr-det', 8)):
        g = zoo_launches.cuda_graph(zoo_data.BY_NAME[name])
        assert fuse_squeeze_excite(g)[1] == blocks
        kernels = [k.kernel for k in lower_graph(g, 90).launches]
        assert kernels.count('squeeze_excite') == blocks
