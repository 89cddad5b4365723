"""How split-K layers sum, as lowered for an H200 (no GPU): in the conv launch ('fused': tile
counters, no second launch) or by ``conv_splitk_reduce`` ('two'), picked by
``$TX2_INFER_SPLITK``; the kernels are checked on the GPU in test/cuda/test_conv_kernels.py."""
import numpy as np
import pytest

from tx2_infer_core.cuda import lower_conv
from tx2_infer_core.cuda.launch import NULL
from tx2_infer_core.cuda.lowering import lower_graph, splitk_mode
from tx2_infer_core.errors import Tx2InferError
from tx2_infer_core.ir import Graph, Node, Value


def late_layer_graph():
    """Two ResNet-50 layer4 3x3 convs (512 channels at 7x7): few tiles, long K, so K splits."""
    rng = np.random.default_rng(0)
    values = {n: Value(n, (1, 512, 7, 7), 'float32', 'NCHW') for n in ('x', 'h', 'y')}
    weights = {f'w{i}': rng.standard_normal((512, 512, 3, 3)).astype(np.float32) * 0.01
               for i in range(2)}
    attrs = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], activation='Relu')
    nodes = [Node('FusedConv', 'c0', ['x', 'w0'], ['h'], dict(attrs)),
             Node('FusedConv', 'c1', ['h', 'w1'], ['y'], dict(attrs))]
    return Graph(nodes, ['x'], ['y'], values, weights)


def test_two_launch_mode_adds_a_reduction_per_split_layer():
    launches = lower_graph(late_layer_graph(), 90, splitk='two').launches
    assert [k.kernel for k in launches] == ['conv_mma_64x64', 'conv_splitk_reduce'] * 2
    assert launches[0].fields['splits'] > 1
    assert all(k.fields['tile_count'] == NULL for k in launches)


def test_fused_mode_sums_in_the_conv_launch_with_shared_tile_counters():
    lowered = lower_graph(late_layer_graph(), 90, splitk='fused')
    kernels = [k.kernel for k in lowered.launches]
    assert kernels == ['conv_mma_64x64'] * 2
    first, second = lowered.launches
    assert first.fields['splits'] > 1
    assert first.fields['tile_count'] != NULL
    assert first.fields['tile_count'] == second.fields['tile_count']   # one counter array
    assert first.fields['ws'] == second.fields['ws']
    tiles = first.grid[0] * first.grid[1]
    image = lowered.weight_image()
    start = first.fields['tile_count'].offset
    assert not image[start:start + 4 * tiles].any()                      # counters start at 0
    ws = first.fields['ws'].offset
    assert not image[ws:ws + lower_conv.WORKSPACE_BYTES].any()           # sums start at 0


def test_unsplit_layers_have_no_counters():
    values = {n: Value(n, (1, 64, 56, 56), 'float32', 'NCHW') for n in ('x', 'y')}
    w = {'w': np.ones((64, 64, 1, 1), np.float32)}
    graph = Graph([Node('FusedConv', 'c', ['x', 'w'], ['y'], {'kernel_shape': [1, 1]})],
                  ['x'], ['y'], values, w)
    (launch,) = lower_graph(graph, 90, splitk='fused').launches
    assert launch.fields['splits'] == 1 and launch.fields['tile_count'] == NULL


def test_mode_from_the_environment_and_refused_by_name():
    assert splitk_mode(env={}) == lower_conv.SPLITK_DEFAULT
    assert splitk_mode(env={lower_conv.SPLITK_ENV: 'fused'}) == 'fused'
    assert splitk_mode('two', env={lower_conv.SPLITK_ENV: 'fused'}) == 'two'
    with pytest.raises(Tx2InferError, match="not 'atomic'.*TX2_INFER_SPLITK"):
        splitk_mode(env={lower_conv.SPLITK_ENV: 'atomic'})


def test_lowering_reads_the_environment(monkeypatch):
    monkeypatch.setenv(lower_conv.SPLITK_ENV, 'fused')
    assert 'conv_splitk_reduce' not in [k.kernel for k in
                                        lower_graph(late_layer_graph(), 90).launches]
    monkeypatch.setenv(lower_conv.SPLITK_ENV, 'two')
    assert 'conv_splitk_reduce' in [k.kernel for k in
                                    lower_graph(late_layer_graph(), 90).launches]
