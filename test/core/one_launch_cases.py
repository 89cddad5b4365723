"""Graphs whose convolutions split K and whose global pools split pixels on a large GPU, with
every kind of channel view: lowered on the CPU (test_cuda_one_launch.py) and run on the GPU
against the numpy reference (test/cuda/test_last_cta_reduce.py).

``split_k_graph``::

    x (1, 8 + C, 7, 7) ── Split ──┬─ xa ── GlobalAveragePool ── p          (x_pix 8 + C)
                                  └─ xb ──┬─ conv1 (+ ra, Relu) ──┐         (x_off 8)
    r (1, K1 + K2, 7, 7) ─ Split ─┬─ ra   └─ conv2 (SiLU, + rb) ──┴─ Concat ── y
                                  └─ rb ───────┘  (r_off K1)      (y_off K1, y_pix K1 + K2)

3x3 convolutions over C = 512 channels of a 7x7 map: 49 pixels, k long, so conv_mma splits K.
conv2 has an odd channel count (K2 = 37): partials and stores take their scalar paths.
"""
import numpy as np

from tx2_infer_core.ir import Graph, Node, Value

C, K1, K2, HW = 512, 72, 37, 7


def _image(name, c, h=HW, w=HW):
    return Value(name, (1, c, h, w), 'float32', 'NCHW')


def _conv(name, x, w, b, res, y, activation, after):
    return Node('FusedConv', name, [x, w, b, res], [y],
                dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], activation=activation,
                     residual_after_act=after))


def split_k_graph(seed=0) -> Graph:
    """The graph drawn in the module docstring, with seeded weights."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, k in (('1', K1), ('2', K2)):
        weights['w' + name] = (rng.standard_normal((k, C, 3, 3)) / np.sqrt(9 * C)).astype(
            np.float32)
        weights['b' + name] = rng.standard_normal(k).astype(np.float32) * 0.1
    values = {v.name: v for v in (
        _image('x', 8 + C), _image('xa', 8), _image('xb', C), _image('r', K1 + K2),
        _image('ra', K1), _image('rb', K2), _image('y1', K1), _image('y2', K2),
        _image('y', K1 + K2), _image('p', 8, 1, 1))}
    nodes = [
        Node('Split', 'split_x', ['x'], ['xa', 'xb'], dict(axis=1, split=[8, C])),
        Node('Split', 'split_r', ['r'], ['ra', 'rb'], dict(axis=1, split=[K1, K2])),
        Node('GlobalAveragePool', 'pool', ['xa'], ['p']),
        _conv('conv1', 'xb', 'w1', 'b1', 'ra', 'y1', 'Relu', 0),
        _conv('conv2', 'xb', 'w2', 'b2', 'rb', 'y2', 'SiLU', 1),
        Node('Concat', 'concat', ['y1', 'y2'], ['y'], dict(axis=1))]
    return Graph(nodes, ['x', 'r'], ['y', 'p'], values, weights)


def pool_graph(n, c, h, w, offset=0) -> Graph:
    """GlobalAveragePool of an (n, c, h, w) image; with ``offset`` > 0 the pooled image is
    the second output of a channel Split of an (n, offset + c, h, w) input (a view at channel
    ``offset``), the first pooled too."""
    if not offset:
        values = {'x': Value('x', (n, c, h, w), 'float32', 'NCHW'),
                  'y': Value('y', (n, c, 1, 1), 'float32', 'NCHW')}
        return Graph([Node('GlobalAveragePool', 'pool', ['x'], ['y'])], ['x'], ['y'], values,
                     {})
    values = {name: Value(name, shape, 'float32', 'NCHW') for name, shape in (
        ('x', (n, offset + c, h, w)), ('xa', (n, offset, h, w)), ('xb', (n, c, h, w)),
        ('a', (n, offset, 1, 1)), ('y', (n, c, 1, 1)))}
    nodes = [Node('Split', 'split', ['x'], ['xa', 'xb'], dict(axis=1, split=[offset, c])),
             Node('GlobalAveragePool', 'pool_a', ['xa'], ['a']),
             Node('GlobalAveragePool', 'pool', ['xb'], ['y'])]
    return Graph(nodes, ['x'], ['y', 'a'], values, {})
