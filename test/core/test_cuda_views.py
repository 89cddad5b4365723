"""Copies stored as views (``cuda/views.py``) without a GPU.

``reshape_strides`` against numpy's own no-copy reshape; then graphs lowered for sm_90 and run
over an emulated FP16 arena: every node is computed by the numpy ops and written through its
output slot, except the copies (Reshape and friends, Transpose, Slice, Split, Concat), which run
only their real copy launches (none for a view). A view at the wrong place, a copy skipped that
was needed, or two live values sharing bytes changes the outputs. The real models that had these
copies (YOLOv8n's head, PicoDet's head, MTCNN) lower to fewer launches and still compute what
the graph computes.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from emulated_arena import reference
from logic_emulator import node_by_node

from tx2_infer_core.cuda import views
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops import run_node, traits

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402
import zoo_launches  # noqa: E402

RNG = np.random.default_rng(11)
COPY_NODES = set(traits.names(kind=traits.COPY)) | {'Transpose', 'Slice', 'Split', 'Concat'}


# reshape_strides ------------------------------------------------------------------------------

def numpy_reshape_strides(shape, strides, new_shape):
    """Element strides numpy gives a no-copy reshape of a strided view, or None."""
    base = np.zeros(4096, np.int64)
    span = sum((n - 1) * s for n, s in zip(shape, strides))
    a = np.lib.stride_tricks.as_strided(base, shape, [8 * s for s in strides])
    if span >= base.size:
        return 'skip'
    b = a.view()
    try:
        b.shape = new_shape
    except AttributeError:
        return None
    return tuple(s // 8 for s in b.strides)


@st.composite
def strided_reshapes(draw):
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    order = draw(st.permutations(range(len(shape))))
    strides, acc = [0] * len(shape), 1
    for d in reversed(order):            # a transposed layout
        strides[d] = acc
        acc *= shape[d] * draw(st.sampled_from([1, 1, 2]))   # sometimes a gap
    factors = []
    total = int(np.prod(shape))
    for p in (2, 3):
        while total % p == 0:
            factors.append(p)
            total //= p
    factors = draw(st.permutations(factors))
    cuts = sorted(draw(st.lists(st.integers(0, len(factors)), max_size=3)))
    new_shape, start = [], 0
    for cut in cuts + [len(factors)]:
        new_shape.append(int(np.prod(factors[start:cut], dtype=np.int64)))
        start = cut
    return tuple(shape), tuple(strides), tuple(new_shape)


@settings(max_examples=300, deadline=None)
@given(strided_reshapes())
def test_reshape_strides_match_numpy(case):
    shape, strides, new_shape = case
    want = numpy_reshape_strides(shape, strides, new_shape)
    if want == 'skip':
        return
    got = views.reshape_strides(shape, strides, new_shape)
    assert (got is None) == (want is None), (case, got, want)
    if got is not None:
        assert views.same_strides(new_shape, got, want), (case, got, want)


# the emulated arena ---------------------------------------------------------------------------

def _strided(arena, element, shape, strides):
    return np.lib.stride_tricks.as_strided(arena[int(element):], tuple(int(n) for n in shape),
                                           tuple(4 * int(s) for s in strides))


def _slot_array(arena, slot):
    return _strided(arena, slot.ref.offset // 2 + slot.channel_off, slot.shape, slot.strides)


def _record_array(arena, ref, rec):
    nd = int(rec['ndim'])
    return _strided(arena, ref.offset // 2 + int(rec['offset']), rec['shape'][:nd],
                    rec['stride'][:nd])


def run_copy_launch(arena, launch):
    """Execute one copy launch of ``kernels/elementwise.cu`` (unary op 0 or unary_vec8)."""
    f = launch.fields
    assert f['op'] == 0 and int(f['act']['kind']) == 0, launch
    if launch.kernel == 'unary_vec8':
        n = 8 * int(f['n8'])
        src = arena[f['x'].offset // 2:f['x'].offset // 2 + n].copy()
        arena[f['y'].offset // 2:f['y'].offset // 2 + n] = src
        return
    assert launch.kernel == 'unary', launch
    src = _record_array(arena, f['x'], f['xv']).copy()
    _record_array(arena, f['y'], f['yv'])[...] = src.reshape(
        _record_array(arena, f['y'], f['yv']).shape)


def emulate(graph, feeds) -> tuple:
    """(outputs of ``graph`` run over the emulated FP16 arena, the lowered launches)."""
    with node_by_node():  # every node's own launches: the others run node by node below
        lowered = lower_graph(graph, arch=90, sm_count=132)
    arena = np.full(lowered.plan.arena_bytes // 2 + 64, np.nan, np.float32)
    for name, x in feeds.items():
        _slot_array(arena, lowered.slots[name])[...] = x
    for node in graph.nodes:
        if node.op in COPY_NODES:
            for launch in (k for k in lowered.launches if k.node == node.name):
                run_copy_launch(arena, launch)
            continue
        args = [np.array(_slot_array(arena, lowered.slots[n])) if n in lowered.slots
                else graph.weights.get(n) if n else None for n in node.inputs]
        for name, value in zip(node.outputs, run_node(node, args)):
            if name:
                _slot_array(arena, lowered.slots[name])[...] = value
    outputs = {n: np.array(_slot_array(arena, lowered.slots[n])) for n in graph.outputs}
    return outputs, lowered.launches


def check(graph, feeds=None, rtol=1e-6) -> list:
    """Emulated outputs equal the reference; returns the launches."""
    feeds = feeds or {n: RNG.standard_normal(graph.values[n].shape).astype(np.float32)
                      for n in graph.inputs}
    got, launches = emulate(graph, feeds)
    want = reference(graph, feeds)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=rtol, err_msg=name)
    return launches


def copies(launches, graph) -> dict:
    """{op: launches} of the copy nodes."""
    ops = {n.name: n.op for n in graph.nodes}
    out = {}
    for k in launches:
        if ops.get(k.node) in COPY_NODES:
            out[ops[k.node]] = out.get(ops[k.node], 0) + 1
    return out


# small graphs -------------------------------------------------------------------------------

class _Net:
    """A small graph builder: ``add(op, inputs, out shape, consts, **attrs)``."""

    def __init__(self, **inputs):
        self.nodes, self.weights, self.n = [], {}, 0
        self.values = {k: Value(k, s, 'float32', 'NCHW' if len(s) == 4 else '')
                       for k, s in inputs.items()}
        self.inputs = list(inputs)

    def add(self, op, inputs, shapes, consts=(), **attrs):
        self.n += 1
        shapes = shapes if isinstance(shapes, list) else [shapes]
        names = [f'{op.lower()}{self.n}_{i}' for i in range(len(shapes))]
        for name, shape in zip(names, shapes):
            self.values[name] = Value(name, tuple(shape), 'float32',
                                      'NCHW' if len(shape) == 4 else '')
        for i, c in enumerate(consts):
            self.weights[f'w{self.n}_{i}'] = np.asarray(c)
        inputs = list(inputs) + [f'w{self.n}_{i}' for i in range(len(consts))]
        self.nodes.append(Node(op, f'n{self.n}', inputs, names, attrs))
        return names if len(names) > 1 else names[0]

    def conv(self, x, k):
        n, c, h, w = self.values[x].shape
        wt = (RNG.standard_normal((k, c, 1, 1)) / np.sqrt(c)).astype(np.float32)
        return self.add('Conv', [x], (n, k, h, w), [wt], kernel_shape=[1, 1])

    def reshape(self, x, shape):
        return self.add('Reshape', [x], shape, [np.array(shape, np.int64)])

    def slice(self, x, shape, start, end, axis):
        return self.add('Slice', [x], shape, [np.array([start]), np.array([end]),
                                              np.array([axis])])

    def graph(self, outputs):
        return Graph(self.nodes, self.inputs, outputs, self.values, self.weights)


def yolov8_head():
    """Three conv outputs flattened and concatenated along the anchors, split into box and
    class rows, box rows split again and recombined (YOLOv8's Detect head, smaller)."""
    g = _Net(p3=(1, 8, 8, 8), p4=(1, 8, 4, 4), p5=(1, 8, 2, 4))
    sizes = (('p3', 64), ('p4', 16), ('p5', 8))
    flat = [g.reshape(g.conv(p, 24), (1, 24, n)) for p, n in sizes]
    cat = g.add('Concat', flat, (1, 24, 88), axis=2)
    box, cls = g.add('Split', [cat], [(1, 16, 88), (1, 8, 88)], [np.array([16, 8])], axis=1)
    dfl = g.add('Transpose', [g.reshape(box, (1, 4, 4, 88))], (1, 4, 4, 88), perm=[0, 2, 1, 3])
    dist = g.reshape(g.conv(g.add('Softmax', [dfl], (1, 4, 4, 88), axis=1), 1), (1, 4, 88))
    lt = g.slice(dist, (1, 2, 88), 0, 2, 1)
    rb = g.slice(dist, (1, 2, 88), 2, 4, 1)
    wh = g.add('Add', [lt, rb], (1, 2, 88))
    xy = g.add('Sub', [rb, lt], (1, 2, 88))
    boxes = g.add('Concat', [xy, wh], (1, 4, 88), axis=1)
    scaled = g.add('Mul', [boxes], (1, 4, 88), [np.float32(8.0)])
    out = g.add('Concat', [scaled, g.add('Sigmoid', [cls], (1, 8, 88))], (1, 12, 88), axis=1)
    return g.graph([out])


def test_yolov8_head_copies_are_views():
    graph = yolov8_head()
    launches = check(graph)
    # left: the three flattening copies (each reads an NHWC conv output) and the DFL
    # Transpose (writing NHWC: the Softmax over the channels reads its rows in place)
    assert copies(launches, graph) == {'Concat': 3, 'Transpose': 1}, copies(launches, graph)
    assert [k.kernel for k in launches if k.node == 'n11'] == ['softmax']


def picodet_head():
    """Conv outputs read as [1, HW, C] through Reshape + Transpose: the conv's own NHWC bytes."""
    g = _Net(x=(1, 16, 6, 5))
    flat = g.add('Transpose', [g.reshape(g.conv('x', 24), (1, 24, 30))], (1, 30, 24),
                 perm=[0, 2, 1])
    other = g.add('Transpose', [g.reshape(g.conv('x', 24), (1, 24, 30))], (1, 30, 24),
                  perm=[0, 2, 1])
    return g.graph([g.add('Concat', [g.add('Sigmoid', [flat], (1, 30, 24)), other],
                          (1, 60, 24), axis=1)])


def test_picodet_head_transposes_are_aliases():
    graph = picodet_head()
    launches = check(graph)
    assert copies(launches, graph) == {'Concat': 1}, copies(launches, graph)


def attention_split():
    """qkv [1, 6, 36] -> [1, 6, 3, 2, 6] -> transposed -> q, k, v slices; k transposed for a
    MatMul (which reads only row-major operands)."""
    g = _Net(x=(1, 6, 36))
    t = g.add('Transpose', [g.reshape('x', (1, 6, 3, 2, 6))], (3, 1, 2, 6, 6),
              perm=[2, 0, 3, 1, 4])
    q, k, v = (g.add('Squeeze', [g.slice(t, (1, 1, 2, 6, 6), i, i + 1, 0)], (1, 2, 6, 6),
                     [np.array([0])]) for i in range(3))
    scores = g.add('MatMul', [g.add('Mul', [q], (1, 2, 6, 6), [np.float32(0.5)]),
                              g.add('Transpose', [k], (1, 2, 6, 6), perm=[0, 1, 3, 2])],
                   (1, 2, 6, 6))
    out = g.add('MatMul', [scores, v], (1, 2, 6, 6))
    y = g.reshape(g.add('Transpose', [out], (1, 6, 2, 6), perm=[0, 2, 1, 3]), (1, 6, 12))
    return g.graph([g.add('Relu', [y], (1, 6, 12))])


def test_attention_split_copies_only_what_matmul_reads():
    graph = attention_split()
    launches = check(graph)
    # k^T and v are copied for the MatMuls, the final Reshape of a transposed view too
    assert copies(launches, graph) == {'Transpose': 1, 'Squeeze': 1, 'Reshape': 1}, \
        copies(launches, graph)


def nhwc_input():
    """An NHWC graph input transposed for a conv: the transpose is the input's own bytes."""
    g = _Net(x=(1, 6, 5, 3))
    conv = g.conv(g.add('Transpose', ['x'], (1, 3, 6, 5), perm=[0, 3, 1, 2]), 8)
    return g.graph([g.add('Relu', [conv], (1, 8, 6, 5))])


def test_nhwc_input_transpose_is_the_conv_input():
    graph = nhwc_input()
    launches = check(graph)
    assert copies(launches, graph) == {}


def conv_slice():
    """A channel slice read by a conv with an odd offset: the conv's 16-byte loads cannot
    read it, so the Slice copies."""
    g = _Net(x=(1, 16, 4, 4))
    part = g.slice(g.conv('x', 16), (1, 5, 4, 4), 3, 8, 1)
    return g.graph([g.conv(part, 8)])


def test_a_view_read_by_a_conv_is_copied():
    graph = conv_slice()
    launches = check(graph)
    assert copies(launches, graph) == {'Slice': 1}


def outputs_in_place():
    """A conv (NHWC) read out as [1, HW, C] graph outputs: the conv writes the output's bytes
    (its output and the Reshape's are views of the graph output), an activation too."""
    g = _Net(x=(1, 16, 6, 5))
    a = g.add('Transpose', [g.reshape(g.conv('x', 24), (1, 24, 30))], (1, 30, 24),
              perm=[0, 2, 1])
    b = g.add('Transpose', [g.reshape(g.add('Sigmoid', [g.conv('x', 8)], (1, 8, 6, 5)),
                                      (1, 8, 30))], (1, 30, 8), perm=[0, 2, 1])
    c = g.add('Transpose', [g.conv('x', 4)], (1, 6, 5, 4), perm=[0, 2, 3, 1])
    return g.graph([a, b, c])


def test_outputs_are_written_in_place():
    graph = outputs_in_place()
    launches = check(graph)
    assert copies(launches, graph) == {}


# real models --------------------------------------------------------------------------------

@pytest.mark.parametrize('name, left', [
    ('nudenet-320n', {'Concat': 3, 'Transpose': 1}),   # were 17 copies (YOLOv8n's head)
    ('layout-cdla', {'Reshape': 4}),                  # were 16 (PicoDet's head)
    ('mtcnn-pnet', {})])                              # were 5 (NHWC in and out, softmax)
def test_zoo_model_copies_and_outputs(name, left):
    model = zoo_data.BY_NAME[name]
    graph = zoo_launches.cuda_graph(model)
    launches = check(graph, {graph.inputs[0]: zoo_data.photo_tensor(model)}, rtol=1e-5)
    assert copies(launches, graph) == left
