"""The FP16 rescale pass (``passes/fp16_scale.py``) on random scale-equivariant chains: run in
float64 before and after, every output is the same and every value is stored times exactly
2**its exponent (hypothesis); the classes, the program rewrite and the refusals by name."""
import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tx2_infer_core import reference
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops.fused import FusedPointwise, program_text
from tx2_infer_core.passes.fp16_scale import (apply_exponents, plan_exponents, scale_classes,
                                              scaled_program)

SHAPE = (1, 4, 3, 3)          # H = W so a Transpose of the last two axes keeps it
ACTS = ('', 'Relu', 'LeakyRelu', 'Clip', 'PRelu')
PROGRAMS = (                  # any pointwise program: FP32 registers undo the scales
    [['Pow', ['x0', 2.0], {}], ['Pow', ['x1', 2.0], {}], ['Add', ['t0', 't1'], {}]],
    [['Abs', ['x0'], {}], ['Add', ['t0', 1.0], {}], ['Log', ['t1'], {}],
     ['Mul', ['t2', 'x1'], {}]],
    [['Sigmoid', ['x0'], {}], ['Mul', ['t0', 'x1'], {}], ['Sub', ['t1', 0.5], {}]],
    [['Mul', ['x0', 'x1'], {}], ['Div', ['t0', 3.0], {}]])


class Chain:
    """A random graph over values of ``SHAPE`` (float64 constants), built node by node."""

    def __init__(self, rng):
        self.rng, self.nodes, self.weights, self.names = rng, [], {}, ['x']
        self.shapes = {'x': SHAPE}

    def const(self, shape, scale=1.0):
        name = f'c{len(self.weights)}'
        self.weights[name] = self.rng.standard_normal(shape) * scale
        return name

    def const_int(self, values):
        name = f'i{len(self.weights)}'
        self.weights[name] = np.array(values, np.int64)
        return name

    def add(self, op, inputs, shape=SHAPE, **attrs):
        """A node whose output of ``shape`` (``SHAPE``: one more value to read) it returns."""
        out = f'v{len(self.nodes)}'
        self.nodes.append(Node(op, f'n{len(self.nodes)}', list(inputs), [out], attrs))
        self.shapes[out] = shape
        if shape == SHAPE:
            self.names.append(out)
        return out

    def graph(self, last):
        y = self.add('FusedPointwise', [last], program=program_text([['Mul', ['x0', 1.0], {}]]))
        values = {n: Value(n, s, 'float32', 'NCHW') for n, s in self.shapes.items()}
        return Graph(self.nodes, ['x'], [y], values, self.weights)


def linear_attrs(draw, rng):
    act = draw(st.sampled_from(ACTS))
    attrs = dict(activation=act, post_scale=float(draw(st.sampled_from([1.0, 0.5, -3.0]))),
                 post_shift=float(draw(st.sampled_from([0.0, 0.25]))))
    if act == 'LeakyRelu':
        attrs['alpha'] = 0.1
    if act == 'Clip':
        attrs.update(clip_min=-0.5, clip_max=float(rng.uniform(0.5, 2.0)))
    return attrs


def add_linear(draw, chain, op, x, pool):
    """A FusedConv (1x1) or FusedLinear with a bias, perhaps a residual and PRelu's slope."""
    rng = chain.rng
    w = chain.const((4, 4, 1, 1) if op == 'FusedConv' else (3, 3))
    b = chain.const((4,) if op == 'FusedConv' else (3,))
    attrs = linear_attrs(draw, rng)
    inputs = [x, w, b]
    if draw(st.booleans()):
        inputs.append(draw(st.sampled_from(pool)))
        attrs['residual_after_act'] = int(draw(st.booleans()))
    if attrs['activation'] == 'PRelu':
        inputs += [''] * (4 - len(inputs)) + [chain.const((4, 1, 1) if op == 'FusedConv'
                                                          else (3,), 0.2)]
    if op == 'FusedConv':
        attrs.update(kernel_shape=[1, 1])
    return chain.add(op, inputs, **attrs)


def add_node(draw, chain):
    """One random node reading values already made."""
    pool = list(chain.names)
    x, other = draw(st.sampled_from(pool)), draw(st.sampled_from(pool))
    kind = draw(st.sampled_from(['FusedConv', 'FusedLinear', 'FusedPointwise', 'Relu',
                                 'Transpose', 'Add', 'Max', 'Clip', 'MulConst', 'DivConst',
                                 'AddConst', 'MaxPool', 'AveragePool', 'Concat']))
    if kind in ('FusedConv', 'FusedLinear'):
        return add_linear(draw, chain, kind, x, pool)
    if kind == 'FusedPointwise':
        return chain.add(kind, [x, other], program=program_text(draw(st.sampled_from(PROGRAMS))))
    if kind in ('Add', 'Max'):
        return chain.add(kind, [x, other])
    if kind == 'Clip':
        lo, hi = chain.const(()), chain.const(())
        chain.weights[lo], chain.weights[hi] = -abs(chain.weights[lo]), abs(chain.weights[hi])
        return chain.add(kind, [x, lo, hi])
    if kind in ('MulConst', 'DivConst', 'AddConst'):
        return chain.add(kind[:-5], [x, chain.const((4, 1, 1))])
    if kind in ('MaxPool', 'AveragePool'):
        return chain.add(kind, [x], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    if kind == 'Concat':        # then back to SHAPE: a Slice of the second half
        both = chain.add('Concat', [x, other], shape=(1, 8, 3, 3), axis=1)
        return chain.add('Slice', [both, *[chain.const_int(v) for v in ([4], [8], [1])]])
    return chain.add('Transpose' if kind == 'Transpose' else kind, [x],
                     **({'perm': [0, 1, 3, 2]} if kind == 'Transpose' else {}))


@st.composite
def chains(draw):
    """(graph, demands): a random chain and {value: k} for a few of its values."""
    chain = Chain(np.random.default_rng(draw(st.integers(0, 2 ** 16))))
    last = add_linear(draw, chain, 'FusedConv', 'x', ['x'])  # the input's class apart
    for _ in range(draw(st.integers(1, 8))):
        last = add_node(draw, chain)
    graph = chain.graph(last)
    inner = [n for n in chain.shapes if n not in ('x', graph.outputs[0])]
    picked = draw(st.lists(st.sampled_from(inner), min_size=1, max_size=4))
    return graph, {name: draw(st.integers(1, 30)) for name in picked}


@settings(max_examples=300, deadline=None)
@given(case=chains())
def test_rescaled_chain_computes_the_same_in_float64(case):
    graph, demands = case
    feeds = {'x': np.random.default_rng(0).standard_normal(SHAPE) * 3.0}
    before = reference.execute(graph, feeds, keep_all=True)
    exponents, refused = plan_exponents(graph, demands)
    event(f'{len(exponents) > 0 and "rescaled" or "nothing rescaled"}')
    scaled = graph.copy()
    apply_exponents(scaled, exponents)
    after = reference.execute(scaled, feeds, keep_all=True)
    for name, value in before.items():
        stored = value * 2.0 ** exponents.get(name, 0)
        np.testing.assert_allclose(after[name], stored, rtol=1e-12, atol=0, err_msg=name)
    classes = scale_classes(graph)
    for name, k in demands.items():   # every demand met, or its class refused whole
        assert classes[name] in refused or exponents[name] <= -k


# Pieces, refusals ------------------------------------------------------------------------------

def test_scaled_program_multiplies_inputs_first_and_the_result_last():
    steps = [('Log', ['x0'], {}), ('Add', ['t0', 'x1'], {})]
    out = scaled_program(steps, [-8, 0], -3)
    assert out == [('Mul', ['x0', 256.0], {}), ('Log', ['t0'], {}),
                   ('Add', ['t1', 'x1'], {}), ('Mul', ['t2', 0.125], {})]
    x0, x1 = np.float32([1000.0]), np.float32([2.0])
    assert FusedPointwise(x0 / 256, x1, program=program_text(out)) == \
        FusedPointwise(x0, x1, program=program_text(steps)) / 8


def _graph(nodes, weights=None, outputs=('y',)):
    names = {o for n in nodes for o in n.outputs} | {'x'}
    values = {n: Value(n, SHAPE, 'float32', 'NCHW') for n in names}
    return Graph(nodes, ['x'], list(outputs), values, dict(weights or {}))


W = {'w': np.ones((4, 4, 1, 1), np.float32)}


def test_a_class_reaching_a_non_equivariant_node_is_refused_naming_it():
    nodes = [Node('FusedConv', 'conv', ['x', 'w'], ['c'], {'kernel_shape': [1, 1]}),
             Node('Relu', 'relu', ['c'], ['r']),
             Node('Softmax', 'soft', ['r'], ['y'], {'axis': 1})]
    exponents, refused = plan_exponents(_graph(nodes, W), {'c': 4})
    assert exponents == {}
    assert list(refused.values()) == ["node 'soft' (Softmax) reads or writes 'r': it computes "
                                      'in FP16 from the value']


def test_a_conv_with_a_sigmoid_cannot_read_a_scaled_input():
    nodes = [Node('FusedConv', 'a', ['x', 'w'], ['c'], {'kernel_shape': [1, 1]}),
             Node('FusedConv', 'b', ['c', 'w'], ['d'],
                  {'kernel_shape': [1, 1], 'activation': 'Sigmoid'}),
             Node('Relu', 'out', ['d'], ['y'])]
    graph = _graph(nodes, W)
    assert list(plan_exponents(graph, {'c': 4})[1].values()) == [
        "node 'b' (FusedConv) reads or writes 'c': its activation 'Sigmoid' is not "
        'scale-equivariant']
    assert list(plan_exponents(graph, {'d': 4})[1].values()) == [   # d's class holds y
        "'y' is a graph output (the host writes or reads it unscaled)"]


def test_classes_follow_carrying_nodes_and_stop_at_fused_ones():
    nodes = [Node('FusedConv', 'a', ['x', 'w'], ['c'], {'kernel_shape': [1, 1]}),
             Node('MaxPool', 'p', ['c'], ['m'], {'kernel_shape': [1, 1]}),
             Node('Mul', 'k', ['m', 'w'], ['k'], {}),
             Node('Mul', 'q', ['k', 'c'], ['q'], {}),     # product of two activations
             Node('FusedPointwise', 'y', ['q'], ['y'],
                  {'program': program_text([['Relu', ['x0'], {}]])})]
    classes = scale_classes(_graph(nodes, W))
    assert classes['c'] == classes['m'] == classes['k'] != classes['q']
    assert classes['q'] != classes['y'] != classes['x']
    _, refused = plan_exponents(_graph(nodes, W), {'k': 2})      # q = k * c
    assert list(refused) == [classes['k']]
    assert refused[classes['k']].endswith(": its result is not proportional to this input")
    assert plan_exponents(_graph(nodes, W), {'q': 2}) == ({}, {classes['q']: (
        "node 'q' (Mul) reads or writes 'q': it computes the value from inputs it cannot "
        'rescale')})
    exponents, refused = plan_exponents(_graph(nodes, W), {'y': 2, 'x': 1})
    assert exponents == {} and len(refused) == 2    # graph input and output: the host's


def test_a_residual_added_after_any_activation_takes_the_output_scale():
    """Sigmoid is not scale-equivariant, but a residual added after it is at the output's
    scale (post_scale and post_shift rescaled), so r and c rescale together."""
    grow = program_text([['Mul', ['x0', 1e6], {}]])
    nodes = [Node('FusedPointwise', 'r', ['x'], ['r'], {'program': grow}),
             Node('FusedConv', 'c', ['x', 'w', 'b', 'r'], ['c'],
                  {'kernel_shape': [1, 1], 'activation': 'Sigmoid', 'residual_after_act': 1,
                   'post_scale': 3.0, 'post_shift': 0.5}),
             Node('FusedPointwise', 'y', ['c'], ['y'], {'program': grow})]
    graph = _graph(nodes, {**W, 'b': np.arange(4.0)})
    exponents, refused = plan_exponents(graph, {'r': 20})
    assert exponents == {'r': -20, 'c': -20} and not refused
    scaled = graph.copy()
    apply_exponents(scaled, exponents)
    feeds = {'x': np.random.default_rng(1).standard_normal(SHAPE)}
    want = reference.execute(graph, feeds, keep_all=True)
    got = reference.execute(scaled, feeds, keep_all=True)
    np.testing.assert_array_equal(got['c'], want['c'] * 2.0 ** -20)
    np.testing.assert_array_equal(got['y'], want['y'])
