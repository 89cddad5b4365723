"""Channel Concat/Split by placement against copies, on the GPU: kernels-only latency, launch
counts and the time in copy kernels, per model; plus the cold/warm build of the ONNX models.

    python bench/bench_placement.py OUT.json [--plan NAME=FILE.tx2plan] [--onnx NAME=FILE.onnx]

A ``--plan`` is loaded twice (placement on, off); an ``--onnx`` model is built cold (fresh
kernel cache, ``bench_ours.build_and_load``), then timed the same way.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import bench_ours  # noqa: E402
from tx2_infer_core.engine import Engine  # noqa: E402


def measure(engine, runs) -> dict:
    """Kernels-only latency, launches, copy launches and their profiled time."""
    times = bench_ours.time_engine(engine, runs, 50)['ours']
    prof = bench_ours.profile(engine, replays=20, top=0)
    copy = prof['by_kernel'].get('unary', dict(launches=0, ms=0.0))
    return dict(median_ms=times['median_ms'], p99_ms=times['p99_ms'],
                launches=times['launches'], copy_launches=copy['launches'],
                copy_profile_ms=copy['ms'], profile_sum_ms=prof['sum_ms'])


def both(plan, runs) -> dict:
    out = {}
    for place in (True, False):
        engine = Engine.load(plan, backend='cuda',
                             backend_options={'conv_path': 'tc', 'place_channels': place})
        try:
            out['placed' if place else 'copies'] = measure(engine, runs)
        finally:
            engine.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('out')
    ap.add_argument('--plan', action='append', default=[])
    ap.add_argument('--onnx', action='append', default=[])
    ap.add_argument('--runs', type=int, default=300)
    args = ap.parse_args()
    res, work = {}, Path(tempfile.mkdtemp())
    for item in args.onnx:
        name, path = item.split('=', 1)
        engine, build = bench_ours.build_and_load(path, work, name)
        engine.close()
        res[name] = dict(build=build, **both(work / f'{name}-tc.tx2plan', args.runs))
    for item in args.plan:
        name, path = item.split('=', 1)
        res[name] = both(path, args.runs)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"{'model':10s} {'mode':7s} {'median ms':>9s} {'p99':>7s} {'launch':>6s} "
          f"{'copies':>6s} {'copy ms':>7s}")
    for name, r in res.items():
        for mode in ('placed', 'copies'):
            m = r[mode]
            print(f"{name:10s} {mode:7s} {m['median_ms']:9.3f} {m['p99_ms']:7.3f} "
                  f"{m['launches']:6d} {m['copy_launches']:6d} {m['copy_profile_ms']:7.3f}")
        if 'build' in r:
            b = r['build']
            print(f"{name:10s} build cold {b['cold_build_s']:.1f} s (compile "
                  f"{b['cold_kernel_compile_s']:.1f} s summed), warm {b['warm_build_s']:.2f} s, "
                  f"load {b['load_s']:.2f} s")


if __name__ == '__main__':
    main()
