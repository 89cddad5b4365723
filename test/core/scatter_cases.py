"""Small graphs of Cast to integers and bools, ScatterND / ScatterElements with constant
indices and OneHot, for their CUDA lowering tests (``test_cuda_scatter.py``, over the emulated
arena) and their GPU tests (``test/cuda/test_scatter_cuda.py``): each builder returns
``(graph, feeds)``."""
import importlib.util
from pathlib import Path

import numpy as np
import onnx

from tx2_infer_core.engine_build import default_meta, import_model
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.passes import POINTWISE_LEVEL, optimize

RNG = np.random.default_rng(1402)
I64 = np.int64


def graph_of(nodes, shapes, inputs, outputs, weights=None, dtypes=None):
    """A graph of ``nodes`` over values {name: shape} (4-D float ones NCHW)."""
    dtypes = dict(dtypes or {})
    values = {n: Value(n, tuple(s), dtypes.get(n, 'float32'),
                       'NCHW' if len(s) == 4 and n not in dtypes else '')
              for n, s in shapes.items()}
    return Graph(list(nodes), list(inputs), list(outputs), values, dict(weights or {}))


SCATTER_ELEMENTS = [  # (data shape, indices, axis): duplicates and negatives included
    ((3, 4), [[1, 0, 2, -1], [0, 2, 1, 0]], 0),
    ((2, 5), [[1, -1, 0, 2], [0, 2, 0, -3]], 1),
    ((2, 3, 4), [[[3, 0], [1, 1], [-4, 2]]], -1),
    ((1, 501, 30), np.ones((1, 1, 30), I64) * 7, 1),        # slanet's decoder write
]


def scatter_elements_graph(data_shape, indices, axis, reduction, data_const=False):
    """x -> Relu -> data; ScatterElements(data, constant indices, u) -> y (with
    ``data_const`` the data is a constant)."""
    indices = np.asarray(indices, I64)
    shapes = {'x': data_shape, 'd': data_shape, 'u': indices.shape, 'y': data_shape}
    weights = {'i': indices}
    nodes = [Node('Relu', 'relu', ['x'], ['d'])]
    if data_const:
        nodes, weights['d'] = [], RNG.standard_normal(data_shape).astype(np.float32)
        del shapes['d']
    nodes.append(Node('ScatterElements', 'scatter', ['d', 'i', 'u'], ['y'],
                      {'axis': axis, 'reduction': reduction}))
    inputs = ['u'] if data_const else ['x', 'u']
    graph = graph_of(nodes, shapes, inputs, ['y'], weights)
    feeds = {n: RNG.standard_normal(graph.values[n].shape).astype(np.float32) for n in inputs}
    return graph, feeds


SCATTER_ND = [  # (data shape, indices, updates shape)
    ((4, 5), [[0], [2], [-1]], (3, 5)),
    ((3, 4), [[0, 1], [2, 3], [0, 1]], (3,)),                 # elements, one repeated
    ((2, 3, 4), [[[1, 2], [0, 0]], [[1, -1], [1, 2]]], (2, 2, 4)),
]


def scatter_nd_graph(data_shape, indices, u_shape, reduction):
    """x -> Relu -> data; ScatterND(data, constant indices, u) -> y."""
    nodes = [Node('Relu', 'relu', ['x'], ['d']),
             Node('ScatterND', 'scatter', ['d', 'i', 'u'], ['y'], {'reduction': reduction})]
    graph = graph_of(nodes, {'x': data_shape, 'd': data_shape, 'u': u_shape, 'y': data_shape},
                     ['x', 'u'], ['y'], {'i': np.asarray(indices, I64)})
    feeds = {n: RNG.standard_normal(graph.values[n].shape).astype(np.float32)
             for n in ('x', 'u')}
    return graph, feeds


def yolov5_head(tmp_path):
    """test_ops_index's YOLOv5 ScatterND head, imported and optimised as the engine does
    (that module loaded by path: the GPU tests have no test/core on their path)."""
    spec = importlib.util.spec_from_file_location(
        'tx2_test_ops_index', Path(__file__).with_name('test_ops_index.py'))
    ops_index = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ops_index)
    path = tmp_path / 'head.onnx'
    onnx.save(ops_index.yolov5_scatter_head(), path)
    graph = import_model(path, (1, 3, 4, 4, 7))
    default_meta(graph)
    return optimize(graph, POINTWISE_LEVEL)[0]


ONE_HOTS = [  # (x shape, depth, values, axis)
    ((2, 3), 5, [0.0, 2.5], -1),
    ((2, 3), 4, [-1.0, 3.0], 0),
    ((3,), 3, [0.5, 1.0], 1),
    ((1,), 30, [0.0, 1.0], -1),          # slanet's
]


def one_hot_graph(x_shape, depth, values, axis, float_indices):
    """x (floats from -depth-2 to depth+2: negatives, out of range, fractions) -> Cast to
    int64 (or none: float indices, truncated) -> OneHot -> y."""
    rank = len(x_shape) + 1
    y_shape = list(x_shape)
    y_shape.insert(axis % rank, depth)
    nodes = [Node('OneHot', 'hot', ['k' if not float_indices else 'x', 'depth', 'v'], ['y'],
                  {'axis': axis})]
    if not float_indices:
        nodes.insert(0, Node('Cast', 'cast', ['x'], ['k'], {'to': 7}))
    graph = graph_of(nodes, {'x': x_shape, 'k': x_shape, 'y': y_shape}, ['x'], ['y'],
                     {'depth': np.array([depth], I64), 'v': np.array(values, np.float32)},
                     {'k': 'int64'})
    return graph, {'x': RNG.uniform(-depth - 2, depth + 2, x_shape).astype(np.float32)}


CASTS = [(6, 'int32'), (7, 'int64'), (5, 'int16'), (4, 'uint16'), (9, 'bool')]


def cast_graph(to, dtype):
    """x -> Cast(to) -> Cast(float) -> y; x: zeros, halves, integers past 2048 (FP16
    values)."""
    x = np.concatenate([RNG.uniform(-40, 40, 60), [0, -0.0, 0.5, -0.5, 2.99, -2.99, 3000.5,
                                                   -4095.0, 0, 0]]).astype(np.float32)
    if dtype.startswith('u'):
        x = np.abs(x)
    nodes = [Node('Cast', 'to_int', ['x'], ['k'], {'to': to}),
             Node('Cast', 'back', ['k'], ['y'], {'to': 1})]
    graph = graph_of(nodes, {'x': x.shape, 'k': x.shape, 'y': x.shape}, ['x'], ['y'],
                     dtypes={'k': dtype})
    return graph, {'x': x.astype(np.float16).astype(np.float32)}


# Scatters written in place (``cuda/views.py``): (name, expected launches per scatter node)
IN_PLACE = {  # the scatter's output stored in its data's storage: no copy of the data
    'dying data': {'nd1': ['scatter'], 'nd2': ['scatter']},
    'first output read later': {'nd1': ['scatter'], 'nd2': ['unary', 'scatter']},
    'graph input data': {'nd1': ['unary', 'scatter']},
    'a view of the data read later': {'nd1': ['unary', 'scatter']},
    'updates a view of the data': {'nd1': ['unary', 'scatter']},
    'transposed data': {'nd1': ['scatter']},
}


def in_place_graph(case):
    """x -> Relu -> d (4 x 6) -> ScatterND nd1 (rows 0, 2) [-> ScatterND nd2 (rows 2, 3)] ->
    Relu -> y, the variants of ``IN_PLACE``: s1 also added to y after nd2 writes; the data a
    graph input; a Reshape of d read after nd1; nd1's updates a Slice of d (rows 1, 3); d a
    Transpose of Relu's 6 x 4 output (a strided view)."""
    relu = Node('Relu', 'relu', ['x'], ['d'])
    nd1 = Node('ScatterND', 'nd1', ['d', 'i1', 'u1'], ['s1'])
    nd2 = Node('ScatterND', 'nd2', ['s1', 'i2', 'u2'], ['s2'])
    add = Node('Add', 'add', ['s2', 's1'], ['t'])
    flat = Node('Reshape', 'flat', ['d', 'flat'], ['r'])
    later = Node('Sigmoid', 'later', ['r'], ['z'])
    rows = Node('Slice', 'rows', ['d', 'starts', 'ends', 'axes', 'steps'], ['u1'])
    transposed = [Node('Relu', 'relu', ['x'], ['e']),
                  Node('Transpose', 'tr', ['e'], ['d'], {'perm': [1, 0]})]
    nodes = {'dying data': [relu, nd1, nd2],
             'first output read later': [relu, nd1, nd2, add],
             'graph input data': [Node('ScatterND', 'nd1', ['x', 'i1', 'u1'], ['s1'])],
             'a view of the data read later': [relu, flat, nd1, later],
             'updates a view of the data': [relu, rows, nd1],
             'transposed data': transposed + [nd1]}[case]
    last = {'dying data': 's2', 'first output read later': 't'}.get(case, 's1')
    nodes.append(Node('Relu', 'out', [last], ['y']))
    shapes = {'x': (6, 4) if case == 'transposed data' else (4, 6), 'e': (6, 4), 'u1': (2, 6),
              'u2': (2, 6), 'r': (24,), 'z': (24,)}
    shapes.update({n: (4, 6) for n in ('d', 's1', 's2', 't', 'y')})
    consts = {'i1': np.array([[0], [2]], I64), 'i2': np.array([[2], [3]], I64),
              'flat': np.array([24], I64), 'starts': np.array([1], I64),
              'ends': np.array([4], I64), 'axes': np.array([0], I64), 'steps': np.array([2], I64)}
    made = {n for node in nodes for n in node.outputs}
    read = {n for node in nodes for n in node.inputs}
    inputs = [n for n in ('x', 'u1', 'u2') if n in read and n not in made]
    graph = graph_of(nodes, {n: s for n, s in shapes.items() if n in made | set(inputs)},
                     inputs, [n for n in ('y', 'z') if n in made],
                     {n: c for n, c in consts.items() if n in read})
    feeds = {n: RNG.standard_normal(graph.values[n].shape).astype(np.float32) for n in inputs}
    return graph, feeds
