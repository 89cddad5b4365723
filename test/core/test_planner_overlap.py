"""The memory plan run for real: each node writes into its planned bytes while its inputs live.

The numpy backend computes a node's whole result before copying it into the arena, so an
output planned over one of its own still-live inputs reads correct inputs there and the overlap
is invisible. ``run_in_arena`` closes that gap: before a node reads its inputs it fills the
node's planned output bytes with a poison pattern (0xFF bytes, a NaN in float32), unless the
plan declares that output in place over an input (``MemoryPlan.inplace``); every read is then
checked, bit for bit, against the bytes the value's producer wrote, and the outputs against
the plain interpreter (``reference.execute``).

Bug this guards against (planted to check the tests bite): planner lifetimes treated as
half-open, i.e. a value freed at its last-use step (``life[name][1] = step - 1`` in
``planner.lifetimes``), so the reading node's output may share the value's bytes. Every
engine-vs-ORT test and ``check_plan`` (which uses the same lifetimes) pass with it.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops import run_node
from tx2_infer_core.passes import optimize
from tx2_infer_core.planner import check_plan, plan_memory
from tx2_infer_core.reference import execute

POISON = 0xFF
OFF = dict(inplace=False, concat_placement=False)
# Ops whose output element i reads input elements at i only (kept apart from the planner's own
# list on purpose): the only ops a plan may run in place over an input.
POINTWISE = {'Relu', 'LeakyRelu', 'Sigmoid', 'Tanh', 'Clip', 'HardSwish', 'HardSigmoid', 'Neg',
             'Add', 'Sub', 'Mul', 'Div', 'BatchNormalization'}


class StaleRead(AssertionError):
    """A node read a value whose planned bytes no longer hold what its producer wrote."""


class ArenaRun:
    """One arena laid out by ``plan``; ``written`` keeps each value's bytes as produced."""

    def __init__(self, graph, plan):
        self.graph, self.plan = graph, plan
        self.arena = np.zeros(max(int(plan.arena_bytes), 1), np.uint8)
        self.written = {}

    def span(self, name):
        offset = int(self.plan.offsets[name])
        return slice(offset, offset + self.graph.values[name].nbytes)

    def view(self, name):
        value = self.graph.values[name]
        return np.ndarray(value.shape, np.dtype(value.dtype), buffer=self.arena,
                          offset=int(self.plan.offsets[name]))

    def write(self, name, array):
        value = self.graph.values[name]
        array = np.ascontiguousarray(np.asarray(array).astype(value.dtype)).reshape(value.shape)
        self.view(name)[...] = array
        self.written[name] = array

    def read(self, name, node):
        """The value as the arena holds it; raises ``StaleRead`` if it was overwritten."""
        if not name:
            return None
        if self.graph.is_constant(name):
            return self.graph.weights[name]
        held = self.view(name)
        if held.tobytes() != self.written[name].tobytes():
            raise StaleRead(f"node '{node}' reads '{name}' (bytes {self.span(name)}) but they "
                            'were overwritten after its producer wrote them')
        return held.copy()

    def poison(self, node):
        """Fill the node's planned output bytes, except outputs declared in place."""
        for name in node.outputs:
            if name in self.plan.inplace:
                assert node.op in POINTWISE and self.plan.inplace[name] in node.inputs, (
                    f"'{name}' is planned in place over '{self.plan.inplace[name]}' by "
                    f"'{node.name}' ({node.op})")
            elif name:
                self.arena[self.span(name)] = POISON

    def placed_concat(self, node):
        """A placed Concat is not run: its output must already hold its inputs' slices."""
        parts = [self.written[name] for name in node.inputs]
        self.written[node.outputs[0]] = np.concatenate(parts, axis=node.attrs['axis'])
        self.read(node.outputs[0], node.name)


def run_in_arena(graph, plan, feeds) -> dict:
    """Run ``graph`` inside ``plan``'s arena, poisoning each node's output bytes first.

    Raises ``StaleRead`` when a node reads a value whose bytes something else overwrote.
    """
    run = ArenaRun(graph, plan)
    for name, array in feeds.items():
        run.write(name, array)
    placed = set(plan.placed_concats)
    for node in graph.nodes:
        if node.name in placed:
            run.placed_concat(node)
            continue
        run.poison(node)
        args = [run.read(name, node.name) for name in node.inputs]
        for name, result in zip(node.outputs, run_node(node, args)):
            if name:
                run.write(name, result)
        for name in node.outputs:
            run.read(name, node.name)          # a later output did not clobber an earlier one
    return {name: run.read(name, 'graph output') for name in graph.outputs}


def assert_plan_runs(graph, plan, feeds, tol=1e-5):
    check_plan(graph, plan)
    got, want = run_in_arena(graph, plan, feeds), execute(graph, feeds)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=tol, atol=tol, err_msg=name)


def make_graph(nodes, inputs, outputs, weights=None):
    """Graph from (op, inputs, outputs[, attrs]) tuples; shapes by running the interpreter."""
    ir_nodes = [Node(n[0], f'n{i}_{n[0]}', list(n[1]), list(n[2]), n[3] if len(n) > 3 else {})
                for i, n in enumerate(nodes)]
    graph = Graph(ir_nodes, [name for name, _ in inputs], list(outputs),
                  {name: Value(name, shape) for name, shape in inputs}, dict(weights or {}))
    feeds = {name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)
             for name, shape in inputs}
    for name, array in execute(graph, feeds, keep_all=True).items():
        graph.values[name] = Value(name, array.shape, array.dtype.name)
    return graph, feeds


# ---- the executor itself sees overlaps the numpy backend hides ------------------------------

def test_executor_catches_an_output_planned_over_its_own_live_input():
    # x -> Relu a -> Transpose b: b over a is wrong (Transpose is not elementwise), yet the
    # numpy backend would compute the transpose before copying it over a.
    nodes = [('Relu', ['x'], ['a']), ('Transpose', ['a'], ['b'], {'perm': [0, 2, 3, 1]}),
             ('Relu', ['b'], ['c'])]
    graph, feeds = make_graph(nodes, [('x', (1, 4, 8, 8))], ['c'])
    plan = plan_memory(graph, **OFF)
    assert_plan_runs(graph, plan, feeds)
    plan.offsets['b'] = plan.offsets['a']
    with pytest.raises(StaleRead, match="'n1_Transpose' reads 'a'"):
        run_in_arena(graph, plan, feeds)


def test_executor_catches_a_later_reader_seeing_a_clobbered_value():
    nodes = [('Relu', ['x'], ['a']), ('Sigmoid', ['x'], ['b']), ('Add', ['a', 'b'], ['c'])]
    graph, feeds = make_graph(nodes, [('x', (1, 2, 4, 4))], ['c'])
    plan = plan_memory(graph, **OFF)
    plan.offsets['b'] = plan.offsets['a']
    with pytest.raises(StaleRead, match="'n2_Add' reads 'a'"):
        run_in_arena(graph, plan, feeds)


# ---- hypothesis: random executable graphs with in-place ops and channel concats ------------

UNARY = ('Relu', 'Sigmoid', 'Tanh', 'LeakyRelu', 'HardSwish', 'Neg')
BINARY = ('Add', 'Mul', 'Sub')


def _draw_node(draw, i, names, channels):
    """One random node reading earlier values; returns (node tuple, out channels, weights)."""
    out, kind = f'v{i}', draw(st.sampled_from(('unary', 'binary', 'concat', 'conv')))
    if kind == 'unary':
        src = draw(st.sampled_from(names))
        return (draw(st.sampled_from(UNARY)), [src], [out]), channels[src], {}
    if kind == 'binary':
        a = draw(st.sampled_from(names))
        b = draw(st.sampled_from([n for n in names if channels[n] == channels[a]]))
        return (draw(st.sampled_from(BINARY)), [a, b], [out]), channels[a], {}
    if kind == 'concat' and len(names) > 2:
        parts = draw(st.lists(st.sampled_from(names), min_size=2, max_size=3, unique=True))
        return ('Concat', parts, [out], {'axis': 1}), sum(channels[p] for p in parts), {}
    src, width = draw(st.sampled_from(names)), draw(st.integers(1, 4))
    weight = np.full((width, channels[src], 1, 1), 0.25, np.float32)
    return ('Conv', [src, f'w{i}'], [out]), width, {f'w{i}': weight}


@st.composite
def random_graphs(draw):
    """A random DAG over (1, C, 4, 4) float32 values; each node reads any earlier value."""
    channels, names = {'x': draw(st.integers(1, 4))}, ['x']
    nodes, weights = [], {}
    for i in range(draw(st.integers(2, 14))):
        node, width, consts = _draw_node(draw, i, names, channels)
        nodes.append(node)
        weights.update(consts)
        channels[node[2][0]] = width
        names.append(node[2][0])
    extra = draw(st.lists(st.sampled_from(names[1:-1] or names[-1:]), max_size=2, unique=True))
    outputs = list(dict.fromkeys([names[-1]] + extra))
    return make_graph(nodes, [('x', (1, channels['x'], 4, 4))], outputs, weights)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(case=random_graphs(), alignment=st.sampled_from((16, 64, 256)),
       switches=st.sampled_from(({}, OFF, {'inplace': False}, {'concat_placement': False})))
def test_random_graph_plans_run_without_stale_reads(case, alignment, switches):
    graph, feeds = case
    assert_plan_runs(graph, plan_memory(graph, alignment=alignment, **switches), feeds)


# ---- the real models, optimised as the engine does ------------------------------------------

@pytest.mark.parametrize('name', ['yolov3', 'yolov8', 'open_nsfw'])
def test_real_model_plans_run_without_stale_reads(name, request):
    graph, _ = optimize(request.getfixturevalue(name))
    x = graph.values[graph.inputs[0]]
    feeds = {x.name: np.random.default_rng(1).random(x.shape).astype(x.dtype)}
    plan = plan_memory(graph)
    print(f'\n{name}: {plan.report()}; {len(plan.inplace)} in place, '
          f'{len(plan.placed_concats)} concats placed')
    assert plan.inplace or plan.placed_concats
    assert_plan_runs(graph, plan, feeds, tol=1e-4)
