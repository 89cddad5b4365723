"""Cases of TopK, GatherElements, GatherND and Gather by indices computed at run time on
CUDA, shared by ``test_cuda_index.py`` (lowered and emulated on the host) and
``test/cuda/test_index_cuda.py`` (on the GPU). Each case is a small graph and its feeds: data
exact in FP16 (multiples of 1/4 or 1/2, many ties), integer index inputs with negative
indices, 4-D inputs behind a 1x1 MaxPool (an NHWC image), and a detector head: TopK of 1000
scores, then the boxes of the top 100 by Gather and by GatherElements."""
import numpy as np

from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.reference import infer_shapes

I64 = np.int64


def ties(rng, *shape, top=8):
    """Multiples of 1/2 in -top/2..top/2: exact in FP16, many equal values."""
    return (rng.integers(-top, top + 1, shape) / 2).astype(np.float32)


def quarters(rng, n):
    """0, 1/4 .. (n-1)/4 shuffled: distinct values, exact in FP16 for n up to 2048."""
    return (rng.permutation(n) / 4).astype(np.float32)


def graph_of(feeds, nodes, outputs, weights=None) -> Graph:
    """A graph of ``nodes`` [(op, inputs, outputs, attrs)] named n0, n1..., its values'
    shapes and dtypes inferred by the numpy ops."""
    values = {k: Value(k, v.shape, v.dtype.name) for k, v in feeds.items()}
    made = [Node(op, f'n{k}', list(ins), list(outs), dict(attrs))
            for k, (op, ins, outs, attrs) in enumerate(nodes)]
    graph = Graph(made, list(feeds), list(outputs), values, dict(weights or {}))
    infer_shapes(graph)
    return graph


def topk(rng, shape, axis, k, largest=1, data=ties, outputs=('v', 'i'), pool=False):
    """x -> TopK(K=k) -> outputs ('' leaves one out); ``pool``: behind a 1x1 MaxPool."""
    x = data(rng, *shape) if data is ties else data(rng, int(np.prod(shape))).reshape(shape)
    nodes = [('TopK', ['p' if pool else 'x', 'k'], list(outputs),
              {'axis': axis, 'largest': largest})]
    if pool:
        nodes.insert(0, ('MaxPool', ['x'], ['p'], {'kernel_shape': [1, 1]}))
    return graph_of({'x': x}, nodes, [o for o in outputs if o],
                    {'k': np.array([k], I64)}), {'x': x}


def gather(rng, op, shape, idx, attrs, const=False, data_const=False):
    """``op``(x, idx): the indices a constant or a graph input ``i``; ``data_const``: the data
    a constant and the indices the graph input."""
    x = ties(rng, *shape)
    feeds, weights = {}, {}
    (weights if data_const else feeds)['x'] = x
    (weights if const else feeds)['i'] = np.asarray(idx, I64)
    return graph_of(feeds, [(op, ['x', 'i'], ['y'], attrs)], ['y'], weights), feeds


def detector_head(rng, anchors=1000, k=100):
    """scores (1, anchors), boxes (1, anchors, 4) -> TopK -> the boxes of the top k by Gather
    (1, 1, k, 4) and by GatherElements of the indices expanded to (1, k, 4)."""
    feeds = {'scores': (rng.integers(0, 400, (1, anchors)) / 4).astype(np.float32),
             'boxes': ties(rng, 1, anchors, 4, top=200)}
    nodes = [('TopK', ['scores', 'k'], ['top', 'idx'], {'axis': 1}),
             ('Gather', ['boxes', 'idx'], ['by_gather'], {'axis': 1}),
             ('Unsqueeze', ['idx', 'last'], ['idx1'], {}),
             ('Expand', ['idx1', 'four'], ['idx4'], {}),
             ('GatherElements', ['boxes', 'idx4'], ['by_elements'], {'axis': 1})]
    weights = {'k': np.array([k], I64), 'last': np.array([2], I64),
               'four': np.array([1, k, 4], I64)}
    return graph_of(feeds, nodes, ['top', 'idx', 'by_gather', 'by_elements'], weights), feeds


def cast_div_mod_graph():
    """x -> Cast int64 (n) -> Div, Mod by constants (q, r) -> Cast float (qf); r gathers a
    table (an index op: the class is int32); inputs exact in FP16."""
    x = np.array([[-7.5, -3.0, 2.875, 4000.0, 60000.0, -1000.5]], np.float32)
    graph = graph_of({'x': x}, [('Cast', ['x'], ['n'], {'to': 7}),
                                ('Div', ['n', 'd'], ['q'], {}), ('Mod', ['n', 'd'], ['r'], {}),
                                ('Cast', ['q'], ['qf'], {'to': 1}),
                                ('Gather', ['table', 'r'], ['t'], {})],
                     ['n', 'q', 'r', 'qf', 't'],
                     {'d': np.array([[4, -4, 3, 7, -5, 6]], I64),
                      'table': np.arange(8, dtype=np.float32) * 3})
    return graph, {'x': x}


def _indices(rng, low, high, shape):
    return rng.integers(low, high, shape)


# name: (builder(rng) -> (graph, feeds), the kernel the case's index node launches)
CASES = {
    'topk last largest': (lambda r: topk(r, (3, 40), -1, 7), 'topk_rows'),
    'topk axis 0 smallest': (lambda r: topk(r, (30, 5), 0, 4, largest=0), 'topk_rows'),
    'topk middle axis full sort': (lambda r: topk(r, (2, 50, 3), 1, 50), 'topk_rows'),
    'topk distinct 1000': (lambda r: topk(r, (2, 1000), 1, 100, data=quarters), 'topk_rows'),
    'topk one': (lambda r: topk(r, (4, 9), 1, 1, largest=0), 'topk_rows'),
    'topk nhwc channels': (lambda r: topk(r, (2, 12, 4, 5), 1, 3, pool=True), 'topk_rows'),
    'topk nhwc width': (lambda r: topk(r, (1, 6, 4, 5), 3, 2, largest=0, pool=True),
                        'topk_rows'),
    'topk values only 3000': (lambda r: topk(r, (2, 3000), 1, 20, outputs=('v', '')),
                              'topk_rows'),
    'topk indices only': (lambda r: topk(r, (5, 33), 1, 6, outputs=('', 'i')), 'topk_rows'),
    'gather elements constant': (
        lambda r: gather(r, 'GatherElements', (3, 4), [[0, -1], [3, -4], [1, 1]],
                         {'axis': 1}, const=True), 'gather_nd'),
    'gather elements by value': (
        lambda r: gather(r, 'GatherElements', (2, 5, 3), _indices(r, -5, 5, (2, 4, 3)),
                         {'axis': 1}), 'gather_nd'),
    'gather elements axis 0': (
        lambda r: gather(r, 'GatherElements', (6, 4), _indices(r, -6, 6, (3, 4)),
                         {'axis': -2}), 'gather_nd'),
    'gathernd constant': (
        lambda r: gather(r, 'GatherND', (2, 3, 4), [[1, 2], [0, -1], [-2, 0]], {},
                         const=True), 'gather_nd'),
    'gathernd by value': (
        lambda r: gather(r, 'GatherND', (4, 5), _indices(r, -4, 4, (6, 2)), {}), 'gather_nd'),
    'gathernd batch dims 1': (
        lambda r: gather(r, 'GatherND', (2, 3, 4), _indices(r, -3, 3, (2, 5, 1)),
                         {'batch_dims': 1}), 'gather_nd'),
    'gathernd batch dims 2': (
        lambda r: gather(r, 'GatherND', (2, 3, 4, 5), _indices(r, -4, 4, (2, 3, 2, 1)),
                         {'batch_dims': 2}), 'gather_nd'),
    'gather by value': (
        lambda r: gather(r, 'Gather', (4, 7, 3), _indices(r, -7, 7, (2, 5)), {'axis': 1}),
        'gather_nd'),
    'gather scalar by value': (
        lambda r: gather(r, 'Gather', (6, 5), np.array(-2), {'axis': 0}), 'gather_nd'),
    'gather of a constant table': (
        lambda r: gather(r, 'Gather', (50, 8), _indices(r, -50, 50, (3, 4)), {},
                         data_const=True), 'gather_nd'),
    'detector head': (detector_head, 'topk_rows'),
}
