"""Channel placement (``cuda/placement.py``) without a GPU: the CUDA backend's FP16 arena plan
and slots are emulated in numpy. Every node is computed by the numpy ops and its outputs written
through their slots' strides; Concat and Split run their real copy launches (none where placed),
so a view in the wrong place, or two live values sharing bytes, changes the outputs."""
import numpy as np
import pytest

from tx2_infer_core import assets
from tx2_infer_core.cuda import layout, placement
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops import run_node

RNG = np.random.default_rng(3)


def _strided(arena, base, shape, strides):
    return np.lib.stride_tricks.as_strided(arena[int(base):], tuple(shape),
                                           tuple(4 * int(s) for s in strides))


def _slot_view(arena, slot):
    return _strided(arena, slot.ref.offset // 2 + slot.channel_off, slot.shape, slot.strides)


def _record_view(arena, ref, rec):
    nd = int(rec['ndim'])
    return _strided(arena, ref.offset // 2 + int(rec['offset']), rec['shape'][:nd],
                    rec['stride'][:nd])


def emulate(graph, feeds, place_channels=True) -> dict:
    """Outputs of ``graph`` run over an emulated FP16 arena (float32 elements here)."""
    lowered = lower_graph(graph, arch=90, place_channels=place_channels)
    plan, slots, launches = lowered.plan, lowered.slots, lowered.launches
    arena = np.full(plan.arena_bytes // 2 + 1, np.nan, np.float32)
    for name, x in feeds.items():
        _slot_view(arena, slots[name])[...] = x
    for node in graph.nodes:
        if node.op in ('Concat', 'Split'):
            for launch in (k for k in launches if k.node == node.name):
                f = launch.fields
                assert launch.kernel == 'unary' and f['op'] == 0
                dst = _record_view(arena, f['y'], f['yv'])
                dst[...] = _record_view(arena, f['x'], f['xv']).copy()
            continue
        args = [np.array(_slot_view(arena, slots[n])) if n in slots else graph.weights.get(n)
                for n in node.inputs]
        for name, value in zip(node.outputs, run_node(node, args)):
            _slot_view(arena, slots[name])[...] = value
    return {n: np.array(_slot_view(arena, slots[n])) for n in graph.outputs}


def reference(graph, feeds) -> dict:
    env = dict(feeds)
    for node in graph.nodes:
        args = [env[n] if n in env else graph.weights.get(n) for n in node.inputs]
        env.update(zip(node.outputs, run_node(node, args)))
    return {n: env[n] for n in graph.outputs}


class _Net:
    """A small NCHW graph builder."""

    def __init__(self, shape):
        self.nodes, self.weights, self.n = [], {}, 0
        self.values = {'x': Value('x', shape, 'float32', 'NCHW')}

    def add(self, op, inputs, shapes, consts=(), **attrs):
        self.n += 1
        names = [f'{op.lower()}{self.n}_{i}' for i in range(len(shapes))]
        for name, shape in zip(names, shapes):
            self.values[name] = Value(name, tuple(shape), 'float32', 'NCHW')
        for i, c in enumerate(consts):
            self.weights[f'w{self.n}_{i}'] = c.astype(np.float32)
        inputs = list(inputs) + [f'w{self.n}_{i}' for i in range(len(consts))]
        self.nodes.append(Node(op, f'n{self.n}', inputs, names, attrs))
        return names if len(names) > 1 else names[0]

    def conv(self, x, k, r=1, res=None):
        n, c, h, w = self.values[x].shape
        consts = [RNG.standard_normal((k, c, r, r)) / np.sqrt(c * r * r),
                  RNG.standard_normal(k)]
        out = self.add('FusedConv', [x], [(n, k, h, w)], consts, kernel_shape=[r, r],
                       pads=[r // 2] * 4, activation='SiLU')
        if res is not None:  # the residual is FusedConv's 4th input
            self.nodes[-1].inputs.append(res)
        return out

    def graph(self, outputs):
        return Graph(self.nodes, ['x'], outputs, self.values, self.weights)


def yolov8_like():
    """C2f (conv -> Split -> bottlenecks -> Concat of all), SPPF (Concat of a conv and three
    pools), an upsample Concat with a backbone feature also used elsewhere, and an odd split."""
    g = _Net((1, 16, 8, 8))
    stem = g.conv('x', 32)
    a, b = g.add('Split', [stem], [(1, 16, 8, 8)] * 2, axis=1)
    m0 = g.conv(g.conv(b, 16, 3), 16, 3, res=b)
    m1 = g.conv(g.conv(m0, 16, 3), 16, 3, res=m0)
    c2f = g.conv(g.add('Concat', [a, b, m0, m1], [(1, 64, 8, 8)], axis=1), 32)
    pools = [c2f]
    for _ in range(3):
        pools.append(g.add('MaxPool', [pools[-1]], [(1, 32, 8, 8)], kernel_shape=[5, 5],
                           pads=[2, 2, 2, 2]))
    sppf = g.conv(g.add('Concat', pools, [(1, 128, 8, 8)], axis=1), 24)
    down = g.add('MaxPool', [sppf], [(1, 24, 4, 4)], kernel_shape=[2, 2], strides=[2, 2])
    up = g.add('Resize', [g.conv(down, 8), '', 'sc'], [(1, 8, 8, 8)], mode='nearest')
    g.weights['sc'] = np.array([1, 1, 2, 2], np.float32)
    cat = g.add('Concat', [up, sppf, stem], [(1, 64, 8, 8)], axis=1)
    p, q = g.add('Split', [g.conv(cat, 24), 'sp'], [(1, 5, 8, 8), (1, 19, 8, 8)], axis=1)
    g.weights['sp'] = np.array([5, 19], np.int64)
    s = g.add('Sigmoid', [q], [(1, 19, 8, 8)])
    return g.graph([g.add('Add', [sppf, g.conv(stem, 24)], [(1, 24, 8, 8)]), p, s])


def _check(graph):
    feeds = {'x': RNG.standard_normal(graph.values['x'].shape).astype(np.float32)}
    want = reference(graph, feeds)
    for place in (False, True):
        got = emulate(graph, feeds, place)
        for name in graph.outputs:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5)


def test_yolov8_like_graph_places_concats_and_splits():
    graph = yolov8_like()
    views = placement.channel_views(graph, layout.nhwc_values(graph))
    copies = [k for k in lower_graph(graph, 90).launches if k.kernel == 'unary']
    assert len(copies) < len([k for k in lower_graph(graph, 90, place_channels=False).launches
                              if k.kernel == 'unary'])
    assert {'split2_0', 'split2_1', 'fusedconv1_0'} <= set(views)
    _check(graph)


def test_yolov8_model_outputs_unchanged():
    path = assets.cache_dir() / 'assets' / 'yolov8-fall.onnx'
    if not path.is_file():
        pytest.skip('yolov8-fall.onnx not downloaded')
    from tx2_infer_core.engine import import_model
    from tx2_infer_core.passes import optimize
    graph, _ = optimize(import_model(path))
    feeds = {graph.inputs[0]: RNG.random(graph.values[graph.inputs[0]].shape,
                                         np.float32)}
    want = reference(graph, feeds)
    got = emulate(graph, feeds)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)
    assert len(placement.channel_views(graph, layout.nhwc_values(graph))) > 30
