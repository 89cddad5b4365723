"""Static memory planner: brute-force optimum, in-place and concat-placement rules, reports."""
import itertools
import json
import random

import numpy as np
import pytest

from tx2_infer_core import assets
from tx2_infer_core.engine import import_model
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.passes import optimize
from tx2_infer_core.planner import (ELEMENTWISE_OPS, MemoryPlan, MemoryPlanError, check_plan,
                                    lifetimes, plan_memory)

OFF = dict(inplace=False, concat_placement=False)


def make_graph(nodes, inputs, outputs, shapes, weights=()):
    """Graph from (op, inputs, outputs[, attrs]) tuples and {value: shape} (float32)."""
    values = {name: Value(name, tuple(shape)) for name, shape in shapes.items()}
    ir_nodes = [Node(n[0], f'n{i}_{n[0]}', list(n[1]), list(n[2]), n[3] if len(n) > 3 else {})
                for i, n in enumerate(nodes)]
    consts = {w: np.zeros(shapes.get(w, (1,)), np.float32) for w in weights}
    return Graph(ir_nodes, list(inputs), list(outputs), values, consts)


# ---- (1) brute force on small random graphs -------------------------------------------------

def random_graph(rng, count):
    """A random DAG of ``count`` values; each node reads 1-2 earlier values (chains when 1)."""
    shapes = {'v0': (rng.randint(1, 12) * 64 + rng.choice((0, 8, 100)),)}
    nodes = []
    for i in range(1, count):
        reads = rng.sample(range(i), min(i, rng.choice((1, 1, 2))))
        nodes.append(('Conv', [f'v{j}' for j in reads], [f'v{i}']))
        shapes[f'v{i}'] = (rng.randint(1, 12) * 64 + rng.choice((0, 8, 100)),)
    outputs = [f'v{count - 1}'] + ([f'v{count - 2}'] if rng.random() < 0.3 else [])
    return make_graph(nodes, ['v0'], outputs, shapes)


def oracle_intervals(graph):
    """(birth, death, aligned bytes) per value, computed independently of the planner."""
    birth = {name: 0 for name in graph.inputs}
    death = dict(birth)
    for step, node in enumerate(graph.nodes, 1):
        for name in node.inputs:
            death[name] = step
        birth[node.outputs[0]] = death[node.outputs[0]] = step
    for name in graph.outputs:
        death[name] = len(graph.nodes) + 1
    return [(birth[n], death[n], -(-graph.values[n].nbytes // 256) * 256) for n in birth]


def first_fit(blocks):
    """Arena size when ``blocks`` are placed in this order, each at the lowest free offset."""
    placed, top = [], 0
    for start, end, size in blocks:
        busy = sorted((o, o + s) for o, s, a, b in placed if a <= end and b >= start)
        offset = 0
        for low, high in busy:
            if low >= offset + size:
                break
            offset = max(offset, high)
        placed.append((offset, size, start, end))
        top = max(top, offset + size)
    return top


def brute_force_optimum(blocks):
    return min(first_fit(order) for order in itertools.permutations(blocks))


def test_arena_matches_brute_force_optimum_on_random_graphs():
    rng = random.Random(1234)
    exact, ratios = 0, []
    for trial in range(120):
        graph = random_graph(rng, rng.randint(3, 7))
        plan = plan_memory(graph, **OFF)
        check_plan(graph, plan)
        optimum = brute_force_optimum(oracle_intervals(graph))
        assert plan.lower_bound <= optimum <= plan.arena_bytes
        ratios.append(plan.arena_bytes / optimum)
        exact += plan.arena_bytes == optimum
    print(f'\nplanner == brute-force optimum on {exact}/120 graphs, worst {max(ratios):.3f}x')
    assert exact >= 0.9 * 120
    assert max(ratios) <= 1.1


def random_rich_graph(rng, count):
    """Random graphs with elementwise ops and channel Concats, for plan validity."""
    shapes, nodes = {'x': (1, 2, 4, 4)}, []
    names = ['x']
    for i in range(count):
        out, pick = f'v{i}', rng.random()
        if pick < 0.25 and len(names) > 2:
            parts = rng.sample(names[1:], rng.randint(2, min(3, len(names) - 1)))
            nodes.append(('Concat', parts, [out], {'axis': 1}))
            shapes[out] = (1, sum(shapes[p][1] for p in parts), 4, 4)
        elif pick < 0.6:
            op = rng.choice(ELEMENTWISE_OPS[:8])
            same = [n for n in names if shapes[n] == shapes[names[-1]]]
            reads = [names[-1]] if op not in ('Add', 'Mul') else [names[-1], rng.choice(same)]
            nodes.append((op, reads, [out]))
            shapes[out] = shapes[names[-1]]
        else:
            nodes.append(('Conv', [rng.choice(names)], [out]))
            shapes[out] = (1, rng.choice((1, 2, 3, 4)), 4, 4)
        names.append(out)
    return make_graph(nodes, ['x'], [names[-1]], shapes)


def test_random_graphs_with_inplace_and_concat_give_valid_plans():
    rng = random.Random(99)
    inplace = placed = 0
    for trial in range(60):
        graph = random_rich_graph(rng, rng.randint(4, 14))
        plan = plan_memory(graph)
        check_plan(graph, plan)
        assert plan.lower_bound <= plan.arena_bytes <= plan.naive_bytes
        inplace, placed = inplace + len(plan.inplace), placed + len(plan.placed_concats)
    assert inplace > 10 and placed > 5


# ---- (2) in-place rules ---------------------------------------------------------------------

S = (1, 4, 8, 8)


def chain(op, shapes=None, **kw):
    """x -> Conv a -> op b -> Conv c."""
    nodes = [('Conv', ['x'], ['a']), (op, ['a'], ['b']), ('Conv', ['b'], ['c'])]
    return make_graph(nodes, ['x'], ['c'], shapes or {'x': S, 'a': S, 'b': S, 'c': S})


@pytest.mark.parametrize('op', ['Relu', 'LeakyRelu', 'Sigmoid', 'Clip', 'HardSwish'])
def test_elementwise_op_writes_over_its_dying_input(op):
    graph = chain(op)
    plan = plan_memory(graph)
    check_plan(graph, plan)
    assert plan.inplace == {'b': 'a'}
    assert plan.offsets['a'] == plan.offsets['b']
    assert plan.lower_bound == 2 * graph.values['a'].nbytes


def test_inplace_declined_for_non_elementwise_ops_and_when_switched_off():
    assert plan_memory(chain('FusedConv')).inplace == {}
    assert plan_memory(chain('Relu'), inplace=False).inplace == {}


def test_inplace_declined_when_input_is_read_later():
    nodes = [('Conv', ['x'], ['a']), ('Relu', ['a'], ['b']), ('Add', ['a', 'b'], ['c'])]
    graph = make_graph(nodes, ['x'], ['c'], {'x': S, 'a': S, 'b': S, 'c': S})
    plan = plan_memory(graph)
    check_plan(graph, plan)
    assert plan.inplace == {'c': 'a'}        # Relu may not overwrite a; the last Add may


def test_inplace_declined_over_graph_inputs_and_outputs():
    graph = make_graph([('Relu', ['x'], ['y'])], ['x'], ['y'], {'x': S, 'y': S})
    assert plan_memory(graph).inplace == {}
    nodes = [('Conv', ['x'], ['a']), ('Relu', ['a'], ['b'])]
    graph = make_graph(nodes, ['x'], ['a', 'b'], {'x': S, 'a': S, 'b': S})
    assert plan_memory(graph).inplace == {}


def test_inplace_declined_over_smaller_broadcast_input():
    small = (1, 4, 1, 1)
    nodes = [('Conv', ['x'], ['a']), ('Conv', ['x'], ['s']), ('Mul', ['s', 'a'], ['b']),
             ('Conv', ['b'], ['c'])]
    graph = make_graph(nodes, ['x'], ['c'], {'x': S, 'a': S, 's': small, 'b': S, 'c': S})
    plan = plan_memory(graph)
    check_plan(graph, plan)
    assert plan.inplace == {'b': 'a'}        # over a (same shape), never over s


def test_inplace_chain_shares_one_block():
    nodes = [('Conv', ['x'], ['a']), ('Sigmoid', ['a'], ['b']), ('Tanh', ['b'], ['c']),
             ('Conv', ['c'], ['d'])]
    graph = make_graph(nodes, ['x'], ['d'], {k: S for k in 'xabcd'})
    plan = plan_memory(graph)
    check_plan(graph, plan)
    assert plan.inplace == {'b': 'a', 'c': 'b'}
    assert plan.offsets['a'] == plan.offsets['b'] == plan.offsets['c']


# ---- (2) concat placement rules -------------------------------------------------------------

def concat_graph(axis=1, batch=1, extra=(), inputs=('a', 'b'), graph_inputs=('x',), weights=()):
    """x -> Conv a, Conv b -> Concat(inputs) c -> Conv d (+ extra nodes)."""
    shapes = {'x': (batch, 4, 8, 8), 'a': (batch, 4, 8, 8), 'b': (batch, 2, 8, 8),
              'd': (batch, 4, 8, 8), 'w': (batch, 4, 8, 8)}
    cat = list(shapes[inputs[0]])
    cat[axis] = sum(shapes[n][axis] for n in inputs)
    shapes['c'] = tuple(cat)
    nodes = [('Conv', ['x'], ['a']), ('Conv', ['x'], ['b']),
             ('Concat', list(inputs), ['c'], {'axis': axis}), ('Conv', ['c'], ['d'])]
    return make_graph(nodes + list(extra), graph_inputs, ['d'], shapes, weights)


def test_concat_inputs_are_laid_out_as_slices_of_the_output():
    graph = concat_graph()
    plan = plan_memory(graph)
    check_plan(graph, plan)
    assert plan.placed_concats == ['n2_Concat']
    assert plan.offsets['a'] == plan.offsets['c']
    assert plan.offsets['b'] == plan.offsets['c'] + graph.values['a'].nbytes
    # a, b and c form one block (6 units of 256 B) alive with x (4) at step 2 or d (4) at 4;
    # unplaced, a + b + c (4 + 2 + 6) are all alive at the Concat step.
    assert plan.lower_bound == plan.arena_bytes == (6 + 4) * 256
    off = plan_memory(graph, **OFF)
    assert off.placed_concats == [] and off.lower_bound == (4 + 2 + 6) * 256


@pytest.mark.parametrize('case', ['batch2', 'axis2', 'graph_input', 'constant', 'duplicate',
                                  'two_concats', 'unaligned'])
def test_concat_placement_declines(case):
    if case == 'batch2':
        graph = concat_graph(batch=2)
    elif case == 'axis2':
        graph = concat_graph(axis=2)
    elif case == 'graph_input':
        graph = concat_graph(inputs=('x', 'a'))
    elif case == 'constant':
        graph = concat_graph(inputs=('a', 'w'), weights=('w',))
        del graph.values['w']
    elif case == 'duplicate':
        graph = concat_graph(inputs=('a', 'a'))
    elif case == 'two_concats':
        graph = concat_graph(extra=[('Concat', ['b', 'a'], ['e'], {'axis': 1})])
        graph.values['e'] = Value('e', (1, 6, 8, 8))
    else:
        graph = concat_graph()
        graph.values['a'] = Value('a', (1, 1, 1, 3))        # 12 bytes: b's slice unaligned
        graph.values['c'] = Value('c', (1, 1, 1, 3 + 128))
        graph.values['b'] = Value('b', (1, 1, 1, 128))
        graph.nodes[2].attrs['axis'] = 3
    plan = plan_memory(graph)
    check_plan(graph, plan)
    assert plan.placed_concats == []


def test_placed_concat_inputs_are_not_written_in_place():
    # a -> Relu b; Concat(b, a2): b is placed, so Relu may not write over a.
    nodes = [('Conv', ['x'], ['a']), ('Relu', ['a'], ['b']), ('Conv', ['x'], ['a2']),
             ('Concat', ['b', 'a2'], ['c'], {'axis': 1}), ('Conv', ['c'], ['d'])]
    graph = make_graph(nodes, ['x'], ['d'], {'x': S, 'a': S, 'b': S, 'a2': S, 'c': (1, 8, 8, 8),
                                             'd': S})
    plan = plan_memory(graph)
    check_plan(graph, plan)
    assert plan.placed_concats == ['n3_Concat'] and plan.inplace == {}


def test_inplace_over_concat_output_declined_when_a_slice_is_also_read():
    # Add(c, a) with a a slice of c: writing over c would clobber a mid-read.
    nodes = [('Conv', ['x'], ['a']), ('Conv', ['x'], ['b']),
             ('Concat', ['a', 'b'], ['c'], {'axis': 1}), ('Add', ['c', 'a'], ['d'])]
    one = (1, 1, 8, 8)
    graph = make_graph(nodes, ['x'], ['d'], {'x': S, 'a': one, 'b': one, 'c': (1, 2, 8, 8),
                                             'd': (1, 2, 8, 8)})
    plan = plan_memory(graph)
    check_plan(graph, plan)
    assert plan.placed_concats == ['n2_Concat'] and plan.inplace == {}


def test_inplace_over_placed_concat_output():
    nodes = [('Conv', ['x'], ['a']), ('Conv', ['x'], ['b']),
             ('Concat', ['a', 'b'], ['c'], {'axis': 1}), ('Relu', ['c'], ['d']),
             ('Conv', ['d'], ['e'])]
    cat = (1, 8, 8, 8)
    graph = make_graph(nodes, ['x'], ['e'], {'x': S, 'a': S, 'b': S, 'c': cat, 'd': cat, 'e': S})
    plan = plan_memory(graph)
    check_plan(graph, plan)
    assert plan.inplace == {'d': 'c'} and plan.offsets['d'] == plan.offsets['a']


def test_nested_concat_placement():
    # c1 = Concat(a, b); c2 = Concat(c1, e): a, b, e all land in c2.
    nodes = [('Conv', ['x'], ['a']), ('Conv', ['x'], ['b']),
             ('Concat', ['a', 'b'], ['c1'], {'axis': 1}), ('Conv', ['c1'], ['e']),
             ('Concat', ['c1', 'e'], ['c2'], {'axis': 1}), ('Conv', ['c2'], ['y'])]
    graph = make_graph(nodes, ['x'], ['y'], {'x': S, 'a': S, 'b': S, 'c1': (1, 8, 8, 8),
                                             'e': S, 'c2': (1, 12, 8, 8), 'y': S})
    plan = plan_memory(graph)
    check_plan(graph, plan)
    assert plan.placed_concats == ['n2_Concat', 'n4_Concat']
    base, quarter = plan.offsets['c2'], graph.values['a'].nbytes
    relative = [plan.offsets[n] - base for n in ('c1', 'a', 'b', 'e')]
    assert relative == [0, 0, quarter, 2 * quarter]


# ---- (3) lifetimes, lower bound, report, serialisation, check_plan --------------------------

def lower_bound_example():
    """x(1 KiB) -> a(2 KiB) -> b(512 B); Add(a, b) -> y(2 KiB). Sizes in 256-byte units."""
    nodes = [('Conv', ['x'], ['a']), ('Conv', ['a'], ['b']), ('Conv', ['a', 'b'], ['y'])]
    return make_graph(nodes, ['x'], ['y'], {'x': (256,), 'a': (512,), 'b': (128,), 'y': (512,)})


def test_lifetimes_and_lower_bound_by_hand():
    graph = lower_bound_example()
    assert lifetimes(graph) == {'x': [0, 1], 'a': [1, 3], 'b': [2, 3], 'y': [3, 4]}
    plan = plan_memory(graph, **OFF)
    check_plan(graph, plan)
    # step 1: x+a = 3 KiB; step 3: a+b+y = 4.5 KiB (the peak); naive: 5.5 KiB.
    assert plan.lower_bound == 4608 and plan.naive_bytes == 5632
    assert plan.arena_bytes == 4608
    assert all(offset % 256 == 0 for offset in plan.offsets.values())


def test_alignment_rounds_block_sizes():
    graph = make_graph([('Conv', ['x'], ['y'])], ['x'], ['y'], {'x': (3,), 'y': (5,)})
    plan = plan_memory(graph, alignment=64)
    assert plan.arena_bytes == plan.lower_bound == 128 and plan.naive_bytes == 128


def test_report_and_json_round_trip():
    graph = concat_graph(extra=[('Relu', ['d'], ['r'])])
    graph.values['r'] = Value('r', (1, 4, 8, 8))
    graph.outputs = ['r']
    plan = plan_memory(graph)
    again = MemoryPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan and again.inplace == {'r': 'd'}
    assert plan.report().startswith('arena ') and 'lower bound' in plan.report()
    with pytest.raises(MemoryPlanError, match='missing keys'):
        MemoryPlan.from_dict({'offsets': {}})


def test_check_plan_catches_broken_plans():
    graph = lower_bound_example()
    plan = plan_memory(graph, **OFF)
    clash = dict(plan.offsets, b=plan.offsets['a'])
    with pytest.raises(MemoryPlanError, match="'a'.*'b'|'b'.*'a'"):
        check_plan(graph, MemoryPlan(**{**plan.to_dict(), 'offsets': clash}))
    with pytest.raises(MemoryPlanError, match='no offset'):
        check_plan(graph, MemoryPlan(**{**plan.to_dict(), 'offsets': {'x': 0}}))
    with pytest.raises(MemoryPlanError, match='outside the arena'):
        check_plan(graph, MemoryPlan(**{**plan.to_dict(), 'arena_bytes': 1024}))
    graph = concat_graph()
    plan = plan_memory(graph)
    moved = dict(plan.offsets, b=plan.offsets['b'] + 256)
    with pytest.raises(MemoryPlanError, match='slice'):
        check_plan(graph, MemoryPlan(**{**plan.to_dict(), 'offsets': moved}))


def test_unordered_graph_or_dynamic_shape_fails_loudly():
    graph = lower_bound_example()
    graph.nodes.reverse()
    with pytest.raises(MemoryPlanError, match='before it is produced'):
        plan_memory(graph)
    graph = lower_bound_example()
    graph.values['b'] = Value('b', ('N', 128))
    with pytest.raises(MemoryPlanError, match="'b' has no static shape"):
        plan_memory(graph)
    del graph.values['b']
    with pytest.raises(MemoryPlanError, match="'b' has no static shape"):
        plan_memory(graph)


# ---- real models (imported and optimised as the engine does) --------------------------------

def real_model(name):
    if name == 'yolov3-tiny':
        cfg, weights, _ = assets.yolov3_tiny()
        return import_model(cfg, None, weights)
    return import_model(assets.fetch(name))


@pytest.mark.parametrize('name', ['yolov3-tiny', 'yolov8-fall.onnx', 'open_nsfw.onnx'])
def test_real_models_pack_within_five_percent_of_the_lower_bound(name):
    graph, _ = optimize(real_model(name))
    plan, off = plan_memory(graph), plan_memory(graph, **OFF)
    print(f'\n{name}: {plan.report()}; {len(plan.inplace)} in place, '
          f'{len(plan.placed_concats)} concats placed; switched off: {off.report()}')
    for each in (plan, off):
        check_plan(graph, each)
        assert each.arena_bytes <= 1.05 * each.lower_bound
        assert each.arena_bytes < each.naive_bytes
    assert plan.arena_bytes <= off.arena_bytes
    concats = [n.name for n in graph.nodes if n.op == 'Concat']
    if name == 'yolov8-fall.onnx':          # C2f blocks and the neck concat along C
        assert len(plan.placed_concats) >= len(concats) // 2
