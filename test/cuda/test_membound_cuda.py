"""The memory-bound reductions on the GPU against the numpy backend, each run three times on
one backend (its CUDA graph replayed; two inputs, then the first again: the same bits, so the
split reductions' ticket counters are back at 0 after every launch): ``global_reduce``
(``kernels/pool.cu``) split over the pixels for maps of few channels and many pixels, every
reduction op it computes, N = 2, channel counts not multiples of 32, channel slices;
Softmax/LogSoftmax (``kernels/softmax.cu``) with rows of 7, 100, 6625 and 20000 elements, along
the last axis and others. ``test/core/test_cuda_membound.py`` checks the same launches'
geometry without a GPU."""
import numpy as np
import pytest

from conftest import assert_close, fp16_round
from tx2_infer_core import reference
from tx2_infer_core.backends.cuda_backend import CudaBackend
from tx2_infer_core.ir import Graph, Node, Value

RNG = np.random.default_rng(1414)


def run_twice(graph, x, tol=3e-3, split=None):
    """Three runs of ``graph`` on one backend, on ``x``, on x reversed, on ``x`` again: the
    first two close to numpy, the third the first's bits (a split whose ticket counter was
    not put back would leave the second run's output stale); ``split``: whether its
    global_reduce launches are split over the pixels."""
    feeds = [{k: fp16_round(v) for k, v in x.items()}]
    feeds.append({k: v.reshape(-1)[::-1].reshape(v.shape).copy() for k, v in feeds[0].items()})
    backend = CudaBackend()
    backend.prepare(graph)
    try:
        runs = [{k: v.copy() for k, v in backend.run(f).items()} for f in feeds + feeds[:1]]
        grids = [k.grid for k in backend.launches if k.kernel == 'global_reduce']
    finally:
        backend.close()
    if split is not None:
        assert grids and all((g[2] > 1) == split for g in grids), grids
    for feed, got in zip(feeds, runs):
        want = reference.execute(graph, feed)
        for name in graph.outputs:
            assert_close(name, got[name], want[name], tol)
    for name in graph.outputs:
        assert np.array_equal(runs[0][name], runs[2][name], equal_nan=True), name
    return runs[0]


def reduce_graph(op, shape, axes, attrs=None, image=True):
    """x [-> MaxPool 1x1: an NHWC image] -> op over ``axes`` (a global pool: none) -> y."""
    rank = len(shape)
    out = tuple(1 if d in axes else n for d, n in enumerate(shape)) if axes else \
        shape[:2] + (1,) * (rank - 2)
    layout = 'NCHW' if rank == 4 else ''
    values = {'x': Value('x', shape, 'float32', layout), 'y': Value('y', out, 'float32', layout)}
    attrs = dict(attrs or {}, **({'axes': list(axes)} if axes else {}))
    nodes = [Node(op, 'op', ['x'], ['y'], attrs)]
    if image and rank == 4:
        values['b'] = Value('b', shape, 'float32', 'NCHW')
        nodes.insert(0, Node('MaxPool', 'img', ['x'], ['b'], {'kernel_shape': [1, 1]}))
        nodes[1].inputs[0] = 'b'
    return Graph(nodes, ['x'], ['y'], values, {})


MAPS = [(1, 24, 160, 160), (2, 24, 96, 96), (1, 96, 120, 160), (2, 40, 70, 90),
        (1, 3, 200, 200)]


@pytest.mark.parametrize('shape', MAPS, ids=lambda s: 'x'.join(map(str, s)))
def test_global_average_pool_split(shape):
    """ppocr-det's SE maps and others of few channels: split, the mean of every channel."""
    x = {'x': (0.5 + RNG.standard_normal(shape)).astype(np.float32)}
    run_twice(reduce_graph('GlobalAveragePool', shape, None), x, split=True)


# op: (data, tolerance); sums and norms of ~10^4 elements stay inside FP16
OPS = {'ReduceMean': ('normal', 3e-3), 'ReduceSum': ('normal', 3e-3),
       'ReduceMax': ('normal', 0), 'ReduceMin': ('normal', 0), 'ReduceProd': ('near_one', 3e-3),
       'ReduceL1': ('normal', 3e-3), 'ReduceL2': ('normal', 3e-3),
       'ReduceSumSquare': ('normal', 3e-3), 'ReduceLogSum': ('positive', 3e-3),
       'ReduceLogSumExp': ('normal', 3e-3)}


def data(kind, shape):
    if kind == 'positive':
        return RNG.uniform(0.1, 2.0, shape).astype(np.float32)
    if kind == 'near_one':
        return (1 + 0.002 * RNG.standard_normal(shape)).astype(np.float32)
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize('op', sorted(OPS))
def test_every_reduction_over_many_pixels(op):
    """Each op over the pixels of an NHWC image of 2 x 40 channels (split, but LogSumExp)."""
    kind, tol = OPS[op]
    shape = (2, 40, 60, 80)
    run_twice(reduce_graph(op, shape, [2, 3]), {'x': data(kind, shape)}, max(tol, 1e-3),
              split=op != 'ReduceLogSumExp')


@pytest.mark.parametrize('op', ['ReduceSum', 'ReduceMax', 'ReduceL2'])
def test_reduction_over_a_middle_axis(op):
    """Row-major [outer 3, reduced 5000, inner 24]: split like pixels of 24 channels."""
    shape = (3, 5000, 24)
    run_twice(reduce_graph(op, shape, [1], image=False), {'x': data('normal', shape)},
              split=True)


def test_global_lp_pools_and_a_channel_slice():
    """GlobalLpPool p=1 and p=2 over channel slices of one map (a Split's views)."""
    shape, half = (2, 48, 64, 64), (2, 24, 64, 64)
    values = {n: Value(n, s, 'float32', 'NCHW') for n, s in
              [('x', shape), ('b', shape), ('s0', half), ('s1', half), ('y1', (2, 24, 1, 1)),
               ('y2', (2, 24, 1, 1))]}
    nodes = [Node('MaxPool', 'img', ['x'], ['b'], {'kernel_shape': [1, 1]}),
             Node('Split', 'split', ['b'], ['s0', 's1'], {'axis': 1, 'num_outputs': 2}),
             Node('GlobalLpPool', 'l1', ['s0'], ['y1'], {'p': 1}),
             Node('GlobalLpPool', 'l2', ['s1'], ['y2'], {'p': 2})]
    graph = Graph(nodes, ['x'], ['y1', 'y2'], values, {})
    run_twice(graph, {'x': data('normal', shape)}, split=True)


# Softmax ---------------------------------------------------------------------------------------

SOFTMAX = {  # label: (op, shape, axis)
    'rows of 7': ('Softmax', (64, 7), -1),
    'rows of 100': ('LogSoftmax', (3, 50, 100), -1),
    'ppocr-rec 40 rows of 6625': ('Softmax', (1, 40, 6625), -1),
    'log rows of 6625': ('LogSoftmax', (1, 40, 6625), 2),
    'rows of 20000': ('Softmax', (5, 20000), 1),
    'middle axis': ('Softmax', (2, 100, 30), 1),
    'first axis, log': ('LogSoftmax', (2500, 3, 4), 0),
    'channels of an image': ('Softmax', (2, 19, 40, 60), 1),
}


@pytest.mark.parametrize('label', sorted(SOFTMAX))
def test_softmax(label):
    op, shape, axis = SOFTMAX[label]
    values = {'x': Value('x', shape, 'float32', 'NCHW' if len(shape) == 4 else ''),
              'y': Value('y', shape, 'float32', 'NCHW' if len(shape) == 4 else '')}
    graph = Graph([Node(op, 'op', ['x'], ['y'], {'axis': axis})], ['x'], ['y'], values, {})
    x = (3 * RNG.standard_normal(shape)).astype(np.float32)
    run_twice(graph, {'x': x}, tol=3e-3 if op == 'Softmax' else 2e-3)
