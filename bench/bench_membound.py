"""Micro-benchmark of issue 14's memory-bound reductions on one GPU, old and new kernels side by
side in the same run: GlobalAveragePool over NHWC maps of few channels and many pixels (the new
``global_reduce`` split over the pixels for this GPU's SMs; the old one a block per 32 channels)
and Softmax over ppocr-rec's [1, 40, 6625] (the new row-team kernel, a block a row; the old one a
warp a row). The old kernels are ``bench/old_membound.cu`` (as they were before), compiled here.
Each case is lowered as the engine lowers it (``lower_graph`` with this GPU's SM count); only the
op's launch is timed. Reports median ms, achieved GB/s (FP16 bytes the op must read and write
once / time), the fraction of the HBM bandwidth (``--hbm-gbps``, H200: 4800) and the largest
difference between the old and new outputs.

    python bench/bench_membound.py --out bench/results/membound_h200.json
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from benchlib import event_times, gpu_facts, stats, versions, write_json

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tx2_infer_core.cuda import compile as cc, params  # noqa: E402
from tx2_infer_core.cuda.launch import BLOCK, Launch, grid_1d  # noqa: E402
from tx2_infer_core.cuda.lowering import lower_graph  # noqa: E402
from tx2_infer_core.ir import Graph, Node, Value  # noqa: E402

OLD = 'membound_old'  # bench/old_membound.cu, registered as a generated module
OLD_GLOBAL_REDUCE = np.dtype([('x', params.PTR), ('y', params.PTR)]
                             + [(n, 'i4') for n in ('N', 'HW', 'C', 'x_pix', 'x_off', 'y_pix',
                                                    'y_off', 'op')], align=True)
OLD_SOFTMAX = np.dtype([('x', params.PTR), ('y', params.PTR), ('outer', 'i8'), ('n', 'i4'),
                        ('inner', 'i4'), ('log_softmax', 'i4')], align=True)
# case: (op, input shape, axis); 4-D inputs are NHWC images (a 1x1 MaxPool makes them)
CASES = {'gap_1x96x160x160': ('GlobalAveragePool', (1, 96, 160, 160), None),
         'gap_1x24x320x320': ('GlobalAveragePool', (1, 24, 320, 320), None),
         'gap_1x24x120x160': ('GlobalAveragePool', (1, 24, 120, 160), None),
         'softmax_1x40x6625': ('Softmax', (1, 40, 6625), -1)}


def case_graph(op, shape, axis) -> Graph:
    """x [-> MaxPool 1x1 b] -> op -> y."""
    image = len(shape) == 4
    out = shape[:2] + (1, 1) if op == 'GlobalAveragePool' else shape
    layout = 'NCHW' if image else ''
    values = {'x': Value('x', shape, 'float32', layout), 'b': Value('b', shape, 'float32', layout),
              'y': Value('y', out, 'float32', layout)}
    attrs = {} if axis is None else {'axis': axis}
    nodes = [Node(op, 'op', ['b' if image else 'x'], ['y'], attrs)]
    if image:
        nodes.insert(0, Node('MaxPool', 'img', ['x'], ['b'], {'kernel_shape': [1, 1]}))
    return Graph(nodes, ['x'], ['y'], values, {})


def old_launch(new, shape) -> Launch:
    """The old kernel's launch of the same op on the same slots as ``new``."""
    f = new.fields
    if new.kernel == 'global_reduce':
        fields = {k: f[k] for k in OLD_GLOBAL_REDUCE.names}
        return Launch(OLD, 'global_reduce', (new.grid[0], new.grid[1], 1), new.block,
                      OLD_GLOBAL_REDUCE, fields, 'old')
    rows = int(np.prod(shape[:-1]))
    fields = dict(x=f['x'], y=f['y'], outer=rows, n=shape[-1], inner=1, log_softmax=0)
    return Launch(OLD, 'softmax', grid_1d(rows * 32), (BLOCK, 1, 1), OLD_SOFTMAX, fields, 'old')


def moved_bytes(op, shape) -> int:
    """FP16 bytes the op reads and writes at least once."""
    n = int(np.prod(shape))
    return 2 * (n + shape[0] * shape[1]) if op == 'GlobalAveragePool' else 4 * n


def run_case(ctx, drv, stream, name, runs):
    op, shape, axis = CASES[name]
    lowered = lower_graph(case_graph(op, shape, axis), ctx.arch, sm_count=ctx.sm_count)
    new = next(k for k in lowered.launches if k.node == 'op')
    arena = drv.mem_alloc(lowered.plan.arena_bytes + 256)
    weights = drv.mem_alloc(max(lowered.weight_bytes, 256))
    drv.memcpy_htod(weights, lowered.weight_image())
    rng = np.random.default_rng(0)
    drv.memcpy_htod(arena, (0.5 + rng.standard_normal(lowered.plan.arena_bytes // 2))
                    .astype(np.float16))
    bases = {'arena': int(arena), 'weights': int(weights)}
    y = lowered.slots['y']
    count = int(np.prod(y.shape))
    row = {'bytes': moved_bytes(op, shape), 'grid': list(new.grid), 'block': list(new.block)}
    outputs = {}
    for label, launch in (('old', old_launch(new, shape)), ('new', new)):
        fn = ctx.function(launch.module, launch.kernel)
        rec = launch.bind(bases)

        def go():
            fn(rec, grid=launch.grid, block=launch.block, stream=stream)
        summary = stats(event_times(drv, stream, go, runs, 20))
        gbps = row['bytes'] / summary['median_ms'] / 1e6
        row[label] = dict(summary, gbps=gbps)
        out = np.empty(count + 64, np.float16)  # the slot's span, read dense from its start
        drv.memcpy_dtoh(out, int(arena) + y.ref.offset)
        outputs[label] = out[:count].astype(np.float32)
    row['max_abs_diff'] = float(np.abs(outputs['old'] - outputs['new']).max())
    row['speedup'] = row['old']['median_ms'] / row['new']['median_ms']
    arena.free()
    weights.free()
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', default='bench/results/membound.json')
    ap.add_argument('--runs', type=int, default=200)
    ap.add_argument('--hbm-gbps', type=float, default=4800.0)
    args = ap.parse_args()
    from tx2_infer_core.cuda.runtime import DeviceContext
    cc.register_source(OLD, (Path(__file__).parent / 'old_membound.cu').read_text())
    ctx = DeviceContext(0)
    drv = ctx.drv
    try:
        stream, rows = drv.Stream(), {}
        for name in CASES:
            row = rows[name] = run_case(ctx, drv, stream, name, args.runs)
            for label in ('old', 'new'):
                r = row[label]
                r['hbm_fraction'] = r['gbps'] / args.hbm_gbps
                print(f"{name:20s} {label} {r['median_ms']:8.4f} ms {r['gbps']:8.1f} GB/s "
                      f"({100 * r['hbm_fraction']:5.1f}% of HBM)")
            print(f"{name:20s} x{row['speedup']:.1f}, grid {row['grid']}, "
                  f"old - new max |diff| {row['max_abs_diff']:.2e}")
        doc = dict(device=gpu_facts(drv), versions=versions('numpy'), sm_count=ctx.sm_count,
                   hbm_gbps=args.hbm_gbps, cases=rows)
        write_json(args.out, doc)
    finally:
        drv.Context.pop()
        ctx.close()


if __name__ == '__main__':
    main()
