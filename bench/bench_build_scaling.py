"""Build time against graph length: a chain of N small nodes through each build stage.

Two chains on a 1x4x4x4 input, so every stage's cost is its bookkeeping, not arithmetic:
'conv' (Conv 1x1 -> Relu -> Add a constant -> ...) and 'elementwise' (Relu -> Relu -> Add ->
..., one in-place chain for the planner and one pointwise group for the level-3 passes).
Stages, each timed alone (median of ``--repeat`` runs, seconds): ``import`` (ONNX proto -> IR,
shapes included), ``toposort``, ``passes`` (``optimize`` level 2 and 3), ``plan_memory`` and
``check_plan`` on the optimised graph and on the unoptimised one. A linear build keeps
seconds / node flat as N grows; a quadratic stage's ratio grows with N. The machine may be
shared: the load average is recorded.

    python bench/bench_build_scaling.py [--sizes 1000 2000 5000 10000] [--repeat 3]
        [--out bench/results/build_scaling_cpu.json]
"""
import argparse
import os
import sys
import time

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_name, versions, write_json  # noqa: E402
from tx2_infer_core.onnx_import import graph_from_model  # noqa: E402
from tx2_infer_core.passes import optimize  # noqa: E402
from tx2_infer_core.planner import check_plan, plan_memory  # noqa: E402

CHANNELS = 4


def chain_model(length, kind='conv'):
    """An ONNX model: ``length`` nodes cycling Conv 1x1, Relu, Add (constant); with
    ``kind='elementwise'`` Relu, Relu, Add (one long in-place / pointwise chain)."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(
        rng.standard_normal((CHANNELS, CHANNELS, 1, 1)).astype(np.float32) * 0.1, 'w')
    bias = numpy_helper.from_array(np.full((CHANNELS,), 0.01, np.float32), 'b')
    shift = numpy_helper.from_array(np.full((1, CHANNELS, 1, 1), 0.5, np.float32), 'c')
    nodes, last = [], 'x'
    for k in range(length):
        out = f'v{k}'
        if k % 3 == 0 and kind == 'conv':
            nodes.append(helper.make_node('Conv', [last, 'w', 'b'], [out], f'conv{k}'))
        elif k % 3 != 2:
            nodes.append(helper.make_node('Relu', [last], [out], f'relu{k}'))
        else:
            nodes.append(helper.make_node('Add', [last, 'c'], [out], f'add{k}'))
        last = out
    shape = [1, CHANNELS, 4, 4]
    graph = helper.make_graph(
        nodes, 'chain', [helper.make_tensor_value_info('x', TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(last, TensorProto.FLOAT, None)],
        [weight, bias, shift])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])


def timed(fn):
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def measure(length, repeat, kind) -> dict:
    """Median seconds per stage for a chain of ``length`` nodes."""
    model = chain_model(length, kind)
    runs = {}
    for _ in range(repeat):
        took = {}
        took['import'], graph = timed(lambda: graph_from_model(model, source='chain'))
        took['toposort'], _ = timed(graph.copy().toposort)
        took['passes_level2'], (opt, _) = timed(lambda: optimize(graph, 2))
        took['passes_level3'], _ = timed(lambda: optimize(graph, 3))
        took['plan_memory'], plan = timed(lambda: plan_memory(opt))
        took['check_plan'], _ = timed(lambda: check_plan(opt, plan))
        took['plan_memory_unoptimised'], plan = timed(lambda: plan_memory(graph))
        took['check_plan_unoptimised'], _ = timed(lambda: check_plan(graph, plan))
        for stage, seconds in took.items():
            runs.setdefault(stage, []).append(seconds)
    return {'chain': kind, 'nodes': length, 'optimised_nodes': len(opt.nodes),
            'median_s': {k: float(np.median(v)) for k, v in runs.items()}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[1000, 2000, 5000, 10000])
    parser.add_argument('--repeat', type=int, default=3)
    parser.add_argument('--out', default='bench/results/build_scaling_cpu.json')
    args = parser.parse_args(argv)
    rows = []
    for kind, length in [(k, n) for k in ('conv', 'elementwise') for n in args.sizes]:
        rows.append(measure(length, args.repeat, kind))
        total = sum(rows[-1]['median_s'].values())
        print(f'{kind} {length:6d} nodes: ' + ', '.join(
            f'{k} {v:.3f}' for k, v in rows[-1]['median_s'].items()) + f' (total {total:.2f} s)',
            flush=True)
    doc = {'cpu': cpu_name(), 'load_average': os.getloadavg(), 'repeat': args.repeat,
           'versions': versions('numpy', 'onnx'), 'rows': rows}
    write_json(args.out, doc)
    print('wrote', args.out)


if __name__ == '__main__':
    main()
