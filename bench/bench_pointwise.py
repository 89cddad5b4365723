"""Micro-benchmark of the memory-bound elementwise kernels on one GPU: one FP16 Add, one
per-channel Mul and one HardSwish-then-scale chain over a 4M-element NHWC map, old generic
(View-walking) kernels vs the vec8 fast paths vs one generated kernel
(``cuda/codegen_pointwise.py``). Reports median ms per launch, achieved GB/s (FP16 bytes read
and written / time) and the fraction of the HBM bandwidth given (``--hbm-gbps``, H200: 4800).

    python bench/bench_pointwise.py --out bench/results/pointwise_h200.json
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from benchlib import event_times, gpu_facts, stats, versions, write_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tx2_infer_core.cuda import codegen_pointwise as cg, lower_ops, params  # noqa: E402
from tx2_infer_core.cuda.launch import BLOCK, Launch, Ref, Slot, grid_1d, nhwc_strides  # noqa

SHAPE = (1, 64, 256, 256)  # 4,194,304 elements, NHWC in the arena
BIN = params.BINARY
HARDSWISH_SCALED = [('Add', ['x0', 3.0], {}), ('Clip', ['t0', 0.0, 6.0], {}),
                    ('Mul', ['x0', 't1'], {}), ('Div', ['t2', 6.0], {}),
                    ('Mul', ['t3', 'x1'], {})]


def slot(at, shape=SHAPE, base='arena'):
    if len(shape) == 4 and shape[2] > 1:
        return Slot(Ref(base, at), shape, nhwc_strides(shape), True)
    return Slot(Ref(base, at), shape, (shape[1], 1, 1, 1))


def generic_binary(a, b, y, op):
    """The View-walking ``binary`` kernel (the path every binary op took before vec8)."""
    n = int(np.prod(y.shape))
    views = [params.view_record(y.shape, cg.broadcast_strides(s, y.shape), s.channel_off)
             for s in (a, b, y)]
    fields = dict(a=a.ref, av=views[0], b=b.ref, bv=views[1], y=y.ref, yv=views[2], n=n,
                  op=op, act=params.act_record())
    return Launch('elementwise', 'binary', grid_1d(n), (BLOCK, 1, 1), params.BINARY_ARGS,
                  fields, 'generic')


def generic_unary(x, y, act):
    n = int(np.prod(y.shape))
    view = params.view_record(y.shape, y.strides)
    fields = dict(x=x.ref, xv=view, y=y.ref, yv=view, n=n, op=0, act=act)
    return Launch('elementwise', 'unary', grid_1d(n), (BLOCK, 1, 1), params.UNARY_ARGS,
                  fields, 'generic')


def cases(n):
    """{case: ([launches], FP16 bytes moved)} over x, z, y in the arena and c, s in weights."""
    x, z, y = slot(0), slot(2 * n), slot(4 * n)
    chan, scalar = slot(0, (1, SHAPE[1], 1, 1), 'weights'), slot(256, (1, 1, 1, 1), 'weights')
    big, small = 3 * 2 * n, 2 * 2 * n
    return {
        'add_generic': ([generic_binary(x, z, y, BIN['Add'])], big),
        'add_flat2': ([Launch('elementwise', 'binary_flat2', grid_1d(n // 2), (BLOCK, 1, 1),
                              params.BINARY_FLAT2, dict(a=x.ref, b=z.ref, y=y.ref, n2=n // 2,
                                                        op=BIN['Add'], act=params.act_record()),
                              'flat2')], big),
        'add_vec8': ([lower_ops.binary_vec8_launch('vec8', x, z, y, BIN['Add'])], big),
        'add_generated': ([cg.pointwise_launch('gen', [('Add', ['x0', 'x1'], {})], [x, z], y)],
                          big),
        'mul_channel_generic': ([generic_binary(x, chan, y, BIN['Mul'])], small),
        'mul_channel_vec8': ([lower_ops.binary_vec8_launch('vec8', x, chan, y, BIN['Mul'])],
                             small),
        'chain_unfused_generic': ([
            generic_binary(x, scalar, y, BIN['Add']),
            generic_unary(y, y, params.act_record('Clip', clip_min=0, clip_max=6)),
            generic_binary(x, y, y, BIN['Mul']), generic_binary(y, scalar, y, BIN['Div']),
            generic_binary(y, chan, y, BIN['Mul'])], 4 * small + big),
        'chain_generated': ([cg.pointwise_launch('gen', HARDSWISH_SCALED, [x, chan], y)],
                            small),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', default='bench/results/pointwise.json')
    ap.add_argument('--runs', type=int, default=200)
    ap.add_argument('--hbm-gbps', type=float, default=4800.0)
    args = ap.parse_args()
    from tx2_infer_core.cuda.runtime import DeviceContext
    ctx = DeviceContext(0)
    drv, n = ctx.drv, int(np.prod(SHAPE))
    try:
        arena, weights = drv.mem_alloc(6 * n + 4096), drv.mem_alloc(4096)
        drv.memcpy_htod(arena, np.random.default_rng(0).standard_normal(3 * n).astype(
            np.float16))
        drv.memcpy_htod(weights, np.full(2048, 0.5, np.float16))
        bases, stream, rows = {'arena': int(arena), 'weights': int(weights)}, drv.Stream(), {}
        for name, (launches, nbytes) in cases(n).items():
            bound = [(ctx.function(k.module, k.kernel), k.bind(bases), k.grid, k.block)
                     for k in launches if k is not None]

            def launch():
                for fn, rec, grid, block in bound:
                    fn(rec, grid=grid, block=block, stream=stream)
            summary = stats(event_times(drv, stream, launch, args.runs, 20))
            gbps = nbytes / summary['median_ms'] / 1e6
            rows[name] = dict(summary, launches=len(bound), bytes=nbytes, gbps=gbps,
                              hbm_fraction=gbps / args.hbm_gbps)
            print(f"{name:24s} {len(bound)} launch(es) {summary['median_ms']:8.4f} ms "
                  f'{gbps:8.1f} GB/s ({100 * gbps / args.hbm_gbps:5.1f}% of HBM)')
        doc = dict(device=gpu_facts(drv), versions=versions('numpy'), shape=list(SHAPE),
                   elements=n, hbm_gbps=args.hbm_gbps, cases=rows)
        write_json(args.out, doc)
    finally:
        drv.Context.pop()
        ctx.close()


if __name__ == '__main__':
    main()
