"""Split-K summed by a thread-block cluster in the conv launch ('cluster': sm_90, distributed
shared memory) against the two-launch split-K ('launch': conv_splitk_reduce), same models, same
process, rounds interleaved: launches, kernels-only graph replay time, outputs compared (and
the cluster build run twice: its sum order is fixed, so the bits must repeat).

    python bench/bench_splitk_modes.py --assets /tmp/tx2cache/assets --out $OUT/x.json
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from bench_ours import random_feeds, time_engine  # noqa: E402
from bench_splitk import ASSET_MODELS, export_torch  # noqa: E402
from benchlib import gpu_facts, versions, write_json  # noqa: E402

MODES = ('launch', 'cluster')


def build(model, weights, mode):
    from tx2_infer_core.engine import Engine
    os.environ['TX2_INFER_SPLITK'] = mode   # read when the backend lowers the graph
    return Engine.build(str(model), backend='cuda', precision='fp16',
                        weights_path=weights and str(weights))


def max_rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)) if a.size else 0.0


def measure(model, weights, rounds, runs) -> dict:
    """Both engines built once; ``rounds`` interleaved timings of each; outputs compared."""
    engines = {mode: build(model, weights, mode) for mode in MODES}
    try:
        feeds = random_feeds(engines['launch'])
        outs = {mode: e.run(feeds) for mode, e in engines.items()}
        again = engines['cluster'].run(feeds)
        times, p99 = {mode: [] for mode in MODES}, {mode: [] for mode in MODES}
        for _ in range(rounds):
            for mode, engine in engines.items():
                ours = time_engine(engine, runs, 20)['ours']
                times[mode].append(ours['median_ms'])
                p99[mode].append(ours['p99_ms'])
        return dict(
            launches={m: len(e.backend.launches) for m, e in engines.items()},
            max_rel_cluster_vs_launch=max(max_rel(outs['cluster'][k], outs['launch'][k])
                                          for k in outs['launch']),
            cluster_repeats_bits=all(np.array_equal(again[k], outs['cluster'][k])
                                     for k in again),
            **{f'{m}_ms': times[m] for m in MODES},
            **{f'{m}_p99_ms': p99[m] for m in MODES},
            **{f'{m}_median_ms': float(np.median(times[m])) for m in MODES})
    finally:
        for engine in engines.values():
            engine.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', default='resnet50,yolov5s,bert_tiny')
    ap.add_argument('--assets', default='')
    ap.add_argument('--onnx-dir', default='/tmp/splitk_onnx')
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--runs', type=int, default=200)
    ap.add_argument('--out', required=True)
    ap.add_argument('--deadline-s', type=float, default=240)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    models = export_torch([m for m in args.models.split(',') if m], args.onnx_dir)
    for name, (model, weights) in ASSET_MODELS.items():
        path = Path(args.assets) / model if args.assets else None
        if path and path.is_file():
            models[name] = (path, weights and Path(args.assets) / weights)
    import pycuda.driver as drv
    doc = dict(what=__doc__.splitlines()[0], device=gpu_facts(drv), versions=versions('numpy'),
               rounds=args.rounds, runs=args.runs, results={}, skipped=[])
    for name, (model, weights) in models.items():
        if time.perf_counter() - t0 > args.deadline_s:
            doc['skipped'].append(name)
            continue
        try:
            doc['results'][name] = measure(model, weights, args.rounds, args.runs)
        except Exception as exc:  # noqa: BLE001 - reported per model
            doc['results'][name] = dict(error=f'{type(exc).__name__}: {exc}')
        r = doc['results'][name]
        print(name, {k: v for k, v in r.items() if not k.endswith('_ms')}, flush=True)
    write_json(args.out, doc, indent=1)
    for name, r in doc['results'].items():
        if 'error' not in r:
            print(f"{name}: launch {r['launch_median_ms']:.3f} ms, cluster "
                  f"{r['cluster_median_ms']:.3f} ms, launches {r['launches']}, max rel "
                  f"{r['max_rel_cluster_vs_launch']:.1e}, bits repeat "
                  f"{r['cluster_repeats_bits']}")


if __name__ == '__main__':
    main()
