"""A 2x2 stride-2 MaxPool in the tensor-core conv's epilogue (cuda/pool_epilogue.py), without a
GPU: which pools qualify (against the numpy MaxPool), the rewrite, the launches and the arena
(test/cuda/test_pool_epilogue_cuda.py runs the kernels)."""
from collections import Counter

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st
from unary_cases import device_compilers

from tx2_infer_core import assets
from tx2_infer_core.cuda import compile as cc
from tx2_infer_core.cuda.lower_conv import mma_module
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.cuda.pool_epilogue import ATTR, fuse_pool_epilogue, is_block_pool
from tx2_infer_core.engine_build import import_model
from tx2_infer_core.ir import Node
from tx2_infer_core.ops.pool import MaxPool
from tx2_infer_core.passes import POINTWISE_LEVEL, optimize


@settings(max_examples=300, deadline=None)
@given(k=st.sampled_from([2, 2, 1, 3]), s=st.sampled_from([2, 2, 1, 3]),
       pad=st.tuples(*[st.integers(0, 2)] * 4), h=st.integers(2, 9), w=st.integers(2, 9),
       ceil=st.integers(0, 1),
       auto=st.sampled_from(['NOTSET', 'NOTSET', 'VALID', 'SAME_UPPER', 'SAME_LOWER']))
@example(k=2, s=2, pad=(1, 1, 0, 0), h=4, w=4, ceil=0, auto='NOTSET')  # leading pad: shifted
@example(k=2, s=2, pad=(0, 0, 2, 2), h=4, w=4, ceil=0, auto='NOTSET')  # a third window
@example(k=2, s=2, pad=(0, 0, 1, 1), h=4, w=6, ceil=0, auto='NOTSET')  # Darknet's: taken
def test_block_pool_is_exactly_the_2x2_block_maximum(k, s, pad, h, w, ceil, auto):
    """Where ``is_block_pool`` says yes, numpy's MaxPool is the maximum of each 2x2 block;
    every unpadded 2x2/2 pool of an even map says yes."""
    attrs = dict(kernel_shape=[k, k], strides=[s, s], ceil_mode=ceil, auto_pad=auto)
    if auto == 'NOTSET':
        attrs['pads'] = list(pad)
    x = np.random.default_rng(h * 10 + w).standard_normal((1, 2, h, w)).astype(np.float32)
    try:
        y = MaxPool(x, **attrs)
    except ValueError:
        return  # no window fits
    node = Node('MaxPool', 'pool', ['x'], ['y'], attrs)
    if is_block_pool(node, x.shape, y.shape):
        blocks = x.reshape(1, 2, h // 2, 2, w // 2, 2).max(axis=(3, 5))
        np.testing.assert_array_equal(y, blocks)
    elif k == 2 and s == 2 and h % 2 == 0 and w % 2 == 0 and (
            auto != 'NOTSET' or pad == (0, 0, 0, 0)):
        pytest.fail(f'a plain 2x2/2 pool of {h}x{w} ({auto}) was not taken')


def test_indices_output_is_not_a_block_pool():
    node = Node('MaxPool', 'pool', ['x'], ['y', 'i'], dict(kernel_shape=[2, 2], strides=[2, 2]))
    assert not is_block_pool(node, (1, 8, 4, 4), (1, 8, 2, 2))


@pytest.fixture(scope='module')
def yolov3_tiny():
    cfg, weights, _ = assets.yolov3_tiny()
    graph = import_model(str(cfg), (1, 3, 416, 416), str(weights))
    return optimize(graph, POINTWISE_LEVEL)[0]


def test_yolov3_tiny_pools_fold_into_their_convs(yolov3_tiny):
    """Five of its six MaxPools are 2x2/2 after a conv (the last is 2x2 stride 1): on sm_80+
    five pooled conv launches replace ten; the conv whose map a route also reads keeps it."""
    g = yolov3_tiny
    assert Counter(n.op for n in g.nodes)['MaxPool'] == 6
    fused, count = fuse_pool_epilogue(g, 90, 'tc')
    assert count == 5 and Counter(n.op for n in fused.nodes)['MaxPool'] == 1
    assert len(fused.nodes) == len(g.nodes) - 5 and g.nodes != fused.nodes  # g unchanged
    before = lower_graph(g, 72).launches  # no fusion below sm_80
    after = lower_graph(g, 90).launches
    assert Counter(k.kernel for k in before)['pool2d'] == 6
    assert Counter(k.kernel for k in after)['pool2d'] == 1
    pooled = [k for k in after if '_pool_' in k.kernel]
    assert len(pooled) == 5
    for k in pooled:  # a split only as a cluster of its splits (one launch)
        assert k.fields['splits'] == (k.grid[2] if k.kernel.endswith('_cl') else 1)
    assert any(k.kernel.endswith('_cl') for k in pooled)
    assert all(k.fields['splits'] == 1 for k in lower_graph(g, 87).launches
               if '_pool_' in k.kernel)  # sm_87: no cluster, one pass
    readers = fused.consumers()
    for k in pooled:
        conv = next(n for n in fused.nodes if n.name == k.node)
        assert k.fields['keep'] == bool(readers.get(conv.outputs[0]))
    assert sum(k.fields['keep'] for k in pooled) == 1


def test_pooled_map_never_shares_bytes_with_the_conv(yolov3_tiny):
    """The pooled map is written by the conv: the planner must keep it apart from the conv's
    input and output (as an output of the MaxPool alone it could take the input's bytes)."""
    low = lower_graph(yolov3_tiny, 90)
    fused, _ = fuse_pool_epilogue(yolov3_tiny, 90, 'tc')
    for node in (n for n in fused.nodes if ATTR in n.attrs):
        spans = []
        for name in (node.inputs[0],) + tuple(node.outputs):
            slot = low.slots[name]
            start = slot.ref.offset
            spans.append((start, start + int(np.prod(slot.shape)) * slot.itemsize))
        z = spans[-1]
        for other in spans[:-1]:
            assert z[1] <= other[0] or other[1] <= z[0], (node.name, spans)


def test_knob_off_and_unsplit(yolov3_tiny, monkeypatch):
    monkeypatch.setenv('TX2_INFER_POOL_EPILOGUE', 'off')
    assert fuse_pool_epilogue(yolov3_tiny, 90, 'tc')[1] == 0
    monkeypatch.setenv('TX2_INFER_POOL_EPILOGUE', 'unsplit')
    assert 0 < fuse_pool_epilogue(yolov3_tiny, 90, 'tc')[1] < 5  # its late convs split K
    assert fuse_pool_epilogue(yolov3_tiny, 90, 'simt')[1] == 0


POOL_MODULES = [mma_module(bm, bn, gather) + '@CONV_MMA_POOL=1' + cluster
                for bm, bn in ((64, 64), (128, 64), (64, 128)) for gather in (False, True)
                for cluster in ('', '@CONV_MMA_CLUSTER=4') if bm == 64 or not cluster]


@pytest.mark.skipif(not device_compilers(), reason='neither NVRTC nor nvcc installed')
@pytest.mark.parametrize('module', POOL_MODULES)
def test_pooled_kernels_compile(module):
    """The pooled kernels build for the tensor-core archs this machine can target (sm_87 by
    NVRTC, sm_90 by nvcc; the cluster ones sm_90) and export the names the lowering launches."""
    name, defines = cc.split_module(module)
    bm, bn = divmod(int(defines['CONV_MMA_TILE']), 1000)
    family = 'conv_mma_gather' if defines['CONV_MMA_GATHER'] == '1' else 'conv_mma'
    cluster = 'CONV_MMA_CLUSTER' in defines
    kernel = f'{family}_pool_{bm}x{bn}' + ('_cl' if cluster else '')
    for arch, compiler in device_compilers():
        if arch >= (90 if cluster else 80):
            cubin = cc.compile_cached(name, arch, dict(defines, TX2_ACTS=3), compiler=compiler)
            assert cubin[:4] == b'\x7fELF' and kernel.encode() in cubin, (arch, kernel)


def test_no_pooled_conv_where_conv_mma_is_off(yolov3_tiny, monkeypatch):
    """With conv_mma moved out of reach (the tests' WMMA path on sm_90), the pools stay
    launches of their own and the graph lowers."""
    from tx2_infer_core.cuda import lower_conv
    monkeypatch.setattr(lower_conv, 'MMA_MIN_ARCH', 10 ** 6)
    kernels = [k.kernel for k in lower_graph(yolov3_tiny, 90).launches]
    assert kernels.count('pool2d') == 6 and not any('_pool_' in k for k in kernels)
