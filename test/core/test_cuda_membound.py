"""The memory-bound reductions' launch geometry without a GPU: ``global_reduce`` split over the
pixels (``lower_nn.reduce_splits``: enough blocks for the SMs, the totals in the zeroed reduce
workspace of the weight buffer, LogSumExp never split) and Softmax/LogSoftmax on the row-team
kernel (``lower_axis.lower_softmax``: a few lanes, a warp or a whole block a row), its launches
run on the host (``launch_emulator.py``) against numpy. The kernels' maths and the split's
last-block combine are checked on the GPU (``test/cuda/test_membound_cuda.py``)."""
import sys
from pathlib import Path

import numpy as np
import pytest
from launch_emulator import emulate

from tx2_infer_core import reference
from tx2_infer_core.cuda import lower_nn, params
from tx2_infer_core.cuda.launch import NULL
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.ir import Graph, Node, Value

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
import zoo_data  # noqa: E402

RNG = np.random.default_rng(14)
MEAN, LSE = params.REDUCE_OPS['ReduceMean'], params.REDUCE_OPS['ReduceLogSumExp']


def gap_graph(shape, count=1):
    """x -> ``count`` GlobalAveragePools of it."""
    out = shape[:2] + (1, 1)
    values = {'x': Value('x', shape, 'float32', 'NCHW')}
    nodes = []
    for i in range(count):
        values[f'y{i}'] = Value(f'y{i}', out, 'float32', 'NCHW')
        nodes.append(Node('GlobalAveragePool', f'gap{i}', ['x'], [f'y{i}']))
    return Graph(nodes, ['x'], [f'y{i}' for i in range(count)], values, {})


def test_splits_fill_the_gpu_from_the_sizes():
    """ppocr-det's SE maps get enough blocks for 132 SMs; wide or small maps keep one split;
    LogSumExp never splits; no split is empty."""
    assert lower_nn.reduce_splits(1, 19200, 24, MEAN, 132) == 300  # 64 pixels each
    assert lower_nn.reduce_splits(1, 25600, 96, MEAN, 132) == 176
    assert lower_nn.reduce_splits(1, 102400, 24, MEAN, 132) == 528
    assert lower_nn.reduce_splits(2, 102400, 24, MEAN, 8) == 16  # a TX2-sized GPU: 2 SMs x 8
    assert lower_nn.reduce_splits(1, 102400, 24, LSE, 132) == 1
    assert lower_nn.reduce_splits(64, 3136, 2048, MEAN, 132) == 1  # 4096 blocks already
    assert lower_nn.reduce_splits(1, 100, 64, MEAN, 132) == 1  # too few pixels to share
    for hw in (129, 1000, 4801, 19201):
        splits = lower_nn.reduce_splits(1, hw, 40, MEAN, 132)
        per = -(-hw // splits)
        assert (splits - 1) * per < hw, (hw, splits)


def test_splits_stay_inside_the_workspace():
    """A GPU of many SMs: the splits shrink to the totals the workspace holds."""
    splits = lower_nn.reduce_splits(1, 10 ** 6, 64, MEAN, 10 ** 5)
    assert 2 <= splits and 2 * splits * 32 * 4 <= lower_nn.SPLIT_PARTIAL_BYTES
    assert lower_nn.reduce_splits(1, 10 ** 6, 32 * (lower_nn.SPLIT_CELLS + 1), MEAN, 10 ** 5) == 1


def test_split_launches_share_one_zeroed_workspace():
    """Two split GAPs point at the same workspace: tickets first, the FP32 totals after them,
    zero bytes of the weight buffer; a GAP of one split takes no workspace."""
    lowered = lower_graph(gap_graph((1, 24, 160, 160), 2), arch=90, sm_count=132)
    a, b = lowered.launches
    assert a.grid == b.grid == (1, 1, lower_nn.reduce_splits(1, 25600, 24, MEAN, 132))
    assert a.block == (32, lower_nn.GAP_ROWS, 1)
    assert a.fields['tickets'] == b.fields['tickets'] and a.fields['ws'] == b.fields['ws']
    tickets, ws = a.fields['tickets'], a.fields['ws']
    assert tickets.base == ws.base == 'weights'
    assert ws.offset == tickets.offset + 4 * lower_nn.SPLIT_CELLS
    assert lowered.weight_bytes >= tickets.offset + lower_nn.REDUCE_WORKSPACE_BYTES
    image = lowered.weight_image()
    assert not image[tickets.offset:tickets.offset + lower_nn.REDUCE_WORKSPACE_BYTES].any()
    one = lower_graph(gap_graph((1, 256, 7, 7)), arch=90, sm_count=132)
    assert one.launches[0].grid[2] == 1 and one.weight_bytes == 0
    assert one.launches[0].fields['ws'] == one.launches[0].fields['tickets'] == NULL


def test_fewer_sms_fewer_splits_for_the_tx2():
    """The same map on the TX2 (sm_62, 2 SMs) is split for its own SM count."""
    tx2 = lower_graph(gap_graph((1, 24, 160, 160)), arch=62, sm_count=2).launches[0]
    assert tx2.grid == (1, 1, 8)


@pytest.mark.parametrize('shape', [(2, 24, 40, 50), (1, 40, 30, 70)])
def test_split_gap_emulated_matches_numpy(shape):
    graph = gap_graph(shape)
    x = {'x': RNG.standard_normal(shape).astype(np.float32)}
    got, launches = emulate(graph, {'GlobalAveragePool'}, x)
    assert launches[0].grid[2] > 1
    np.testing.assert_allclose(got['y0'], reference.execute(graph, x)['y0'], rtol=1e-5,
                               atol=1e-5)


def test_ppocr_det_se_blocks_split():
    """ppocr-det's GlobalAveragePools (its SE blocks: squeeze_excite) as lowered for an H200:
    every map of 1 MB or more (issue 14's memory-bound goal) runs on at least 132 blocks, and
    all of them share one workspace."""
    from tx2_infer_core.engine_build import default_meta, import_model
    from tx2_infer_core.passes import POINTWISE_LEVEL, optimize
    model = zoo_data.BY_NAME['ppocr-det']
    path, weights = zoo_data.model_files(model)
    graph = import_model(path, model.input_shape, weights)
    default_meta(graph)
    graph, _ = optimize(graph, POINTWISE_LEVEL)
    gaps = [k for k in lower_graph(graph, 90, sm_count=132).launches
            if k.kernel in ('global_reduce', 'squeeze_excite')]
    assert len(gaps) >= 8
    for k in gaps:
        if 2 * k.fields['HW'] * k.fields['C'] >= 1 << 20:
            assert k.grid[0] * k.grid[1] * k.grid[2] >= 132, (k.node, k.grid)
    assert len({k.fields['tickets'] for k in gaps if k.grid[2] > 1}) == 1


# Softmax --------------------------------------------------------------------------------------

def softmax_graph(op, shape, axis, image=False):
    """x [-> MaxPool 1x1: an NHWC image] -> op(axis) -> y."""
    layout = 'NCHW' if len(shape) == 4 else ''
    values = {'x': Value('x', shape, 'float32', layout), 'y': Value('y', shape, 'float32', '')}
    nodes = [Node(op, 'op', ['x'], ['y'], {'axis': axis})]
    if image:
        values['b'] = Value('b', shape, 'float32', 'NCHW')
        nodes.insert(0, Node('MaxPool', 'img', ['x'], ['b'], {'kernel_shape': [1, 1]}))
        nodes[1].inputs[0] = 'b'
    return Graph(nodes, ['x'], ['y'], values, {})


@pytest.mark.parametrize('n,team', [(7, 2), (100, 32), (6625, 256), (20000, 256)])
def test_softmax_team_per_row(n, team):
    """Short rows share a warp, long rows get a whole block (ppocr-rec's 40 rows of 6625)."""
    launch = lower_graph(softmax_graph('Softmax', (1, 40, n), -1), arch=90).launches[0]
    assert launch.kernel == 'softmax' and launch.block == (team, 256 // team, 1)
    assert launch.grid == (-(-40 // (256 // team)), 1, 1)


SOFTMAX_CASES = {
    'last axis': ('Softmax', (3, 5, 100), -1, False),
    'log last axis': ('LogSoftmax', (4, 7), 1, False),
    'middle axis': ('Softmax', (2, 100, 30), 1, False),
    'log first axis': ('LogSoftmax', (9, 4, 6), 0, False),
    'long rows': ('Softmax', (1, 3, 6625), 2, False),
    'nhwc channels': ('LogSoftmax', (2, 24, 5, 6), 1, True),
    'nhwc width': ('Softmax', (2, 8, 5, 40), 3, True),
}


@pytest.mark.parametrize('name', sorted(SOFTMAX_CASES))
def test_softmax_emulated_matches_numpy(name):
    op, shape, axis, image = SOFTMAX_CASES[name]
    graph = softmax_graph(op, shape, axis, image)
    x = {'x': (3 * RNG.standard_normal(shape)).astype(np.float32)}
    got, launches = emulate(graph, {op}, x)
    assert [k.kernel for k in launches if k.node == 'op'][-1] == 'softmax'
    np.testing.assert_allclose(got['y'], reference.execute(graph, x)['y'], rtol=1e-5,
                               atol=1e-6)
