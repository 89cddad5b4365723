"""Split-K convolutions and global average pools reduced by their last CTA (one launch each),
against the numpy reference: shapes that force splits, every channel view (input, residual and
output offsets), and replays with other inputs in between (a counter left above zero would
skip or misplace the next run's reduction; a stale output would then fail the comparison)."""
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_close, fp16_round
from tx2_infer_core.backends.cuda_backend import CudaBackend
from tx2_infer_core.cuda import lower_conv
from tx2_infer_core.reference import execute

sys.path.append(str(Path(__file__).resolve().parents[1] / 'core'))
import one_launch_cases as cases  # noqa: E402

RNG = np.random.default_rng(7)


def _feeds(graph):
    return {n: fp16_round(RNG.standard_normal(graph.values[n].shape) + 0.5)
            for n in graph.inputs}


def _replays(graph, feed_sets, use_graph=True):
    """(outputs of each feed set run in turn on one backend, the launches)."""
    backend = CudaBackend(use_graph=use_graph)
    backend.prepare(graph)
    try:
        return [backend.run(f) for f in feed_sets], list(backend.launches), backend.arch
    finally:
        backend.close()


def _check_replays(label, graph, feed_sets, outs):
    """Each run matches the reference of its own feeds; equal feeds give equal bits."""
    for i, (feeds, out) in enumerate(zip(feed_sets, outs)):
        ref = execute(graph, feeds)
        for name in graph.outputs:
            assert_close(f'{label} run {i} {name}', out[name], ref[name], 3e-3)
    for name in graph.outputs:
        assert np.array_equal(outs[0][name], outs[-1][name]), f'{label} {name}: not replayable'


def test_split_k_convs_one_launch_and_replays():
    graph = cases.split_k_graph()
    a, b = _feeds(graph), _feeds(graph)
    outs, launches, arch = _replays(graph, [a, b, a])
    if arch < lower_conv.MMA_MIN_ARCH:
        pytest.skip('conv_mma needs sm_80')
    convs = {k.node: k for k in launches if k.node.startswith('conv')}
    assert sorted(convs) == ['conv1', 'conv2'] and len(launches) == len(set(
        k.node for k in launches)), [(k.node, k.kernel) for k in launches]
    for k in convs.values():
        assert k.fields['splits'] > 1 and k.fields['x_off'] == 8, (k.node, k.fields['splits'])
    assert convs['conv2'].fields['r_off'] == cases.K1 == convs['conv2'].fields['y_off']
    _check_replays('split-K convs', graph, [a, b, a], outs)
    eager, _, _ = _replays(graph, [a], use_graph=False)
    for name in graph.outputs:
        assert np.array_equal(eager[0][name], outs[0][name]), name


# (N, C, H, W, channel offset of a Split view): HW from 1 to 100k, C from 3 to 2048, N 1..4
POOLS = [(1, 3, 1, 1, 0), (4, 2048, 1, 1, 0), (2, 37, 7, 7, 0), (4, 2048, 7, 7, 0),
         (4, 192, 20, 15, 0), (1, 24, 160, 120, 0), (1, 96, 120, 160, 0), (3, 5, 250, 400, 0),
         (1, 8, 250, 400, 0), (2, 1001, 50, 60, 0), (2, 40, 100, 100, 16),
         (2, 37, 100, 100, 13)]


@pytest.mark.parametrize('case', POOLS, ids=['x'.join(map(str, c)) for c in POOLS])
def test_global_pool_one_launch_and_replays(case):
    n, c, h, w, offset = case
    graph = cases.pool_graph(n, c, h, w, offset)
    a, b = _feeds(graph), _feeds(graph)
    outs, launches, _ = _replays(graph, [a, b, a])
    [pool] = [k for k in launches if k.node == 'pool']
    vec = all(v % 8 == 0 for v in (c, offset + c, offset))
    assert pool.kernel == ('global_avgpool_v8' if vec else 'global_avgpool')
    if h * w >= 19200:
        assert pool.grid[2] > 1, pool.grid  # the pixels split over CTAs
    _check_replays(f'GlobalAveragePool {case} {pool.kernel} grid {pool.grid}', graph,
                   [a, b, a], outs)
