"""Pointwise fusion (passes/fuse_pointwise.py): random chains of elementwise ops give what the
unfused graph gives on the numpy oracle, only single-reader intermediates are fused, and the
decomposed activations (HardSwish, HardSigmoid, SiLU, GELU) fold into the convolution."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tx2_infer_core import reference
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops.fused import program_steps
from tx2_infer_core.passes import POINTWISE_LEVEL, fuse_activation_patterns, fuse_pointwise, \
    optimize
from tx2_infer_core.passes.pointwise_chains import MAX_INPUTS, recognise_activation
from tx2_infer_core.planner import plan_memory

SHAPE = (1, 8, 5, 3)
UNARY = ['Relu', 'Sigmoid', 'Tanh', 'Neg', 'Abs', 'Exp', 'Erf', 'HardSwish', 'Softplus',
         'LeakyRelu', 'Floor', 'Sin']
BINARY = ['Add', 'Sub', 'Mul', 'Div', 'Max', 'Min']


def _value(name, shape, dtype='float32'):
    return Value(name, tuple(shape), dtype, 'NCHW' if len(shape) == 4 else '')


class Builder:
    """A graph grown one node at a time (values are float32 of SHAPE unless told)."""

    def __init__(self, shape=SHAPE):
        self.shape, self.nodes, self.weights = shape, [], {}
        self.values = {'x': _value('x', shape)}

    def const(self, name, array):
        self.weights[name] = np.asarray(array, np.float32)
        return name

    def add(self, op, inputs, attrs=None, dtype='float32'):
        out = f'v{len(self.nodes)}'
        self.nodes.append(Node(op, f'n{len(self.nodes)}_{op}', list(inputs), [out],
                               dict(attrs or {})))
        self.values[out] = _value(out, self.shape, dtype)
        return out

    def graph(self, outputs, inputs=('x',)):
        return Graph(list(self.nodes), list(inputs), list(outputs), dict(self.values),
                     dict(self.weights))


def _operand(draw, b, made, k):
    """Another operand: a made value, x, a scalar or a per-channel constant."""
    kind = draw(st.sampled_from(['value', 'x', 'scalar', 'channel', 'scalar4d']))
    if kind == 'value':
        return draw(st.sampled_from(made))
    if kind == 'x':
        return 'x'
    value = draw(st.floats(0.25, 3.0)) * draw(st.sampled_from([-1, 1]))
    if kind == 'channel':
        return b.const(f'c{k}', np.linspace(0.5, 2.0, SHAPE[1]).reshape(1, -1, 1, 1) * value)
    return b.const(f'c{k}', np.full((1, 1, 1, 1) if kind == 'scalar4d' else (), value))


@st.composite
def chains(draw):
    """A random graph of elementwise ops over x (some values also graph outputs)."""
    b, made, outputs = Builder(), ['x'], []
    for k in range(draw(st.integers(2, 9))):
        kind = draw(st.sampled_from(['unary', 'binary', 'clip', 'where']))
        last = made[-1]
        if kind == 'unary':
            made.append(b.add(draw(st.sampled_from(UNARY)), [last]))
        elif kind == 'binary':
            ins = [last, _operand(draw, b, made, k)]
            order = draw(st.sampled_from([1, -1]))
            made.append(b.add(draw(st.sampled_from(BINARY)), ins[::order]))
        elif kind == 'clip':
            made.append(b.add('Clip', [last, b.const(f'lo{k}', -1.5), b.const(f'hi{k}', 2.0)]))
        else:
            cond = b.add('Greater', [last, b.const(f'z{k}', 0.0)], dtype='bool')
            made.append(b.add('Where', [cond, last, _operand(draw, b, made, k)]))
        if draw(st.booleans()) and draw(st.booleans()):
            outputs.append(made[-1])
    outputs = list(dict.fromkeys(outputs + [made[-1]]))
    return b.graph(outputs)


def _run(graph, x):
    return reference.execute(graph, {'x': x})


def _assert_single_reader_rule(before, after):
    """Every value that is a graph output or has several readers is still computed."""
    readers = before.consumers()
    produced = {o for n in after.nodes for o in n.outputs}
    for node in before.nodes:
        name = node.outputs[0]
        if name in before.outputs or len({id(r) for r in readers.get(name, [])}) > 1:
            assert name in produced, name


@settings(max_examples=60, deadline=None)
@given(chains(), st.integers(0, 2 ** 16))
def test_random_chains_equal_the_unfused_graph(graph, seed):
    x = np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32) * 3
    want = _run(graph, x)
    fused = graph.copy()
    fuse_pointwise(fused)
    fused.prune()
    _assert_single_reader_rule(graph, fused)
    got = _run(fused, x)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-6)
    plan_memory(fused)  # the fused graph plans (in place where the op allows)


def test_a_chain_becomes_one_node_with_a_json_program():
    b = Builder()
    t = b.add('Mul', ['x', b.const('s', np.arange(8).reshape(1, 8, 1, 1))])
    t = b.add('Add', [t, b.const('three', 3.0)])
    t = b.add('Sigmoid', [t])
    graph = b.graph([t])
    assert fuse_pointwise(graph) == 1
    [node] = graph.nodes
    assert node.op == 'FusedPointwise' and node.inputs == ['x', 's'] and node.outputs == [t]
    assert program_steps(node.attrs['program']) == [
        ('Mul', ['x0', 'x1'], {}), ('Add', ['t0', 3.0], {}), ('Sigmoid', ['t1'], {})]


def test_intermediates_read_twice_or_graph_outputs_are_not_fused():
    b = Builder()
    a = b.add('Relu', ['x'])
    c = b.add('Neg', [a])
    d = b.add('Exp', [c])
    e = b.add('Add', [a, d])      # a has two readers: it stays a node output
    graph = b.graph([e, c])       # c is a graph output: it stays one too
    fused = graph.copy()
    assert fuse_pointwise(fused) == 1
    assert [n.op for n in fused.nodes] == ['Relu', 'Neg', 'FusedPointwise']
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    for name in (e, c):
        np.testing.assert_array_equal(_run(fused, x)[name], _run(graph, x)[name])


PATTERNS = {
    # name: (the expected activation, a builder of its decomposed form over x)
    'hardswish_div': ('HardSwish', lambda b: b.add('Div', [b.add('Mul', ['x', b.add(
        'Clip', [b.add('Add', ['x', b.const('k3', 3.0)]), b.const('k0', 0.0),
                 b.const('k6', 6.0)])]), b.const('k6b', 6.0)])),
    'hardswish_relu6_mul': ('HardSwish', lambda b: b.add('Mul', [b.add('Mul', [b.add(
        'Min', [b.add('Relu', [b.add('Add', ['x', b.const('k3', 3.0)])]),
                b.const('k6', 6.0)]), 'x']), b.const('sixth', 1 / 6)])),
    'hardsigmoid': ('HardSigmoid', lambda b: b.add('Div', [b.add('Clip', [b.add(
        'Add', ['x', b.const('k3', 3.0)]), b.const('k0', 0.0), b.const('k6', 6.0)]),
        b.const('k6b', 6.0)])),
    'silu_div_exp': ('SiLU', lambda b: b.add('Div', ['x', b.add('Add', [b.add(
        'Exp', [b.add('Neg', ['x'])]), b.const('one', 1.0)])])),
    'gelu_erf': ('Gelu', lambda b: b.add('Mul', [b.add('Mul', ['x', b.add('Add', [b.add(
        'Erf', [b.add('Div', ['x', b.const('r2', np.sqrt(2.0))])]), b.const('one', 1.0)])]),
        b.const('half', 0.5)])),
}


@pytest.mark.parametrize('name', sorted(PATTERNS))
def test_decomposed_activation_becomes_one_node(name):
    op, make = PATTERNS[name]
    b = Builder()
    graph = b.graph([make(b)])
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32) * 4
    want = _run(graph, x)[graph.outputs[0]]
    assert fuse_activation_patterns(graph) == 1
    graph.prune()
    assert [n.op for n in graph.nodes] == [op]
    np.testing.assert_allclose(_run(graph, x)[graph.outputs[0]], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', sorted(PATTERNS))
def test_decomposed_activation_after_a_conv_folds_into_it(name):
    op, make = PATTERNS[name]
    b = Builder()
    b.weights['w'] = np.random.default_rng(2).standard_normal((8, 8, 1, 1)).astype(
        np.float32) / 3
    conv = b.add('Conv', ['x', 'w'], {'kernel_shape': [1, 1]})
    out = make(_Renamed(b, conv))
    graph = b.graph([out])
    x = np.random.default_rng(3).standard_normal(SHAPE).astype(np.float32) * 4
    want = _run(graph, x)[out]
    fused, report = optimize(graph, level=POINTWISE_LEVEL)
    expected = 'Gelu' if op == 'Gelu' else 'FusedConv'  # no GELU conv epilogue yet
    assert fused.nodes[-1].op == expected and report['fuse_activation_patterns'] == 1
    if op != 'Gelu':
        assert [(n.op, n.attrs['activation']) for n in fused.nodes] == [('FusedConv', op)]
    np.testing.assert_allclose(_run(fused, x)[out], want, rtol=1e-5, atol=1e-5)


class _Renamed:
    """A Builder whose 'x' is another value (the pattern applied to a conv's output)."""

    def __init__(self, builder, x):
        self.b, self.x = builder, x

    def const(self, name, array):
        return self.b.const(name, array)

    def add(self, op, inputs, attrs=None, dtype='float32'):
        return self.b.add(op, [self.x if i == 'x' else i for i in inputs], attrs, dtype)


def test_programs_that_are_not_activations_are_not_recognised():
    assert recognise_activation([('Mul', ['x0', 2.0], {}), ('Add', ['t0', 1.0], {})]) is None
    assert recognise_activation([('Sigmoid', ['x0'], {}), ('Mul', ['t0', 2.0], {})]) is None
    # relu(x) * sigmoid(x) is SiLU for x >= 0 only
    assert recognise_activation([('Sigmoid', ['x0'], {}), ('Relu', ['x0'], {}),
                                 ('Mul', ['t1', 't0'], {})]) is None
    # x * clip(x + 3, 0, 6) / 5 is no HardSwish
    assert recognise_activation([('Add', ['x0', 3.0], {}), ('Clip', ['t0', 0.0, 6.0], {}),
                                 ('Mul', ['x0', 't1'], {}), ('Div', ['t2', 5.0], {})]) is None


def test_level_2_leaves_chains_alone():
    b = Builder()
    graph = b.graph([b.add('Sigmoid', [b.add('Add', ['x', b.const('k', 1.0)])])])
    assert [n.op for n in optimize(graph, level=2)[0].nodes] == ['Add', 'Sigmoid']
    assert [n.op for n in optimize(graph, level=POINTWISE_LEVEL)[0].nodes] == [
        'FusedPointwise']


def _sum_tree(draw_pair, n, ops=('Add',)):
    """A graph whose output combines n inputs x0..x{n-1} by binary ops in a tree whose shape
    ``draw_pair(pool size, step)`` picks (the two operands of each step, by position)."""
    b = Builder()
    leaves = [f'x{i}' for i in range(n)]
    b.values = {name: _value(name, SHAPE) for name in leaves}
    pool = list(leaves)
    for step in range(n - 1):
        i, j = draw_pair(len(pool), step)
        a, c = pool[i], pool[j]
        pool = [v for k, v in enumerate(pool) if k not in (i, j)]
        pool.append(b.add(ops[step % len(ops)], [a, c]))
    return b.graph(pool, inputs=leaves)


def _fused_and_checked(graph, seed=0):
    """``graph`` fused: every FusedPointwise reads at most MAX_INPUTS tensors, and the numpy
    outputs equal the unfused graph's bit for bit (the same steps in the same order)."""
    rng = np.random.default_rng(seed)
    feeds = {name: rng.standard_normal(SHAPE).astype(np.float32) for name in graph.inputs}
    want = reference.execute(graph, feeds)
    fused = graph.copy()
    fuse_pointwise(fused)
    fused.prune()
    assert all(len(n.inputs) <= MAX_INPUTS for n in fused.nodes if n.op == 'FusedPointwise')
    got = reference.execute(fused, feeds)
    for name in graph.outputs:
        assert np.array_equal(got[name], want[name])
    return fused


def test_a_sum_of_eleven_tensors_is_cut_into_two_groups():
    """madmom's skip sum (11 same-shape tensors added in a chain, 10 Adds) read more tensors
    than one generated kernel takes (MAX_INPUTS = 8): it was left as 10 launches; now a group
    of 7 Adds over 8 inputs and one of 3 over the remaining 3 and that group's sum."""
    graph = _sum_tree(lambda size, step: (size - 2, size - 1) if step else (0, 1), 11)
    fused = _fused_and_checked(graph)
    assert [n.op for n in fused.nodes] == ['FusedPointwise'] * 2
    assert [len(n.inputs) for n in fused.nodes] == [8, 4]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_trees_of_many_inputs_fuse_within_the_input_limit(data):
    """Random binary trees over 2-30 inputs: each group reads at most MAX_INPUTS tensors,
    outputs unchanged, never more nodes than the unfused n - 1, and a tree of at most
    MAX_INPUTS inputs is one group."""
    n = data.draw(st.integers(2, 30))

    def pair(size, step):
        i = data.draw(st.integers(0, size - 1))
        j = data.draw(st.integers(0, size - 2))
        return i, j + (j >= i)

    ops = data.draw(st.sampled_from([('Add',), ('Add', 'Mul'), ('Max', 'Sub', 'Add')]))
    fused = _fused_and_checked(_sum_tree(pair, n, ops), data.draw(st.integers(0, 2 ** 16)))
    assert len(fused.nodes) <= n - 1
    if 2 < n <= MAX_INPUTS:
        assert [node.op for node in fused.nodes] == ['FusedPointwise']
