"""Programmatic dependent launches (cuda/pdl.py) against plain launches, same models, same
process, rounds interleaved: kernels-only graph replay time and the outputs compared.

    python bench/bench_pdl.py --onnx-dir /tmp/onnx --assets /tmp/tx2cache/assets \
        --out $OUT/pdl_h200.json
"""
import argparse
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


def build(model, weights, use_pdl):
    from tx2_infer_core.engine import Engine
    return Engine.build(str(model), backend='cuda', precision='fp16',
                        weights_path=weights and str(weights),
                        backend_options=dict(pdl=use_pdl))


def measure(model, weights, rounds, runs) -> dict:
    """Both engines built once; ``rounds`` interleaved timings of each; outputs compared."""
    engines = {use: build(model, weights, use) for use in (False, True)}
    try:
        feeds = random_feeds(engines[False])
        outs = {use: e.run(feeds) for use, e in engines.items()}
        same = all(np.array_equal(outs[False][k], outs[True][k]) for k in outs[False])
        times = {False: [], True: []}
        for _ in range(rounds):
            for use, engine in engines.items():
                times[use].append(time_engine(engine, runs, 20)['ours']['median_ms'])
        pdl_launches = sum(type(fn).__name__ == 'PdlKernel'
                           for fn, _, _, _ in engines[True].backend.bound)
        return dict(launches=len(engines[True].backend.bound), pdl_launches=pdl_launches,
                    same_bits=bool(same), plain_ms=times[False], pdl_ms=times[True],
                    plain_median_ms=float(np.median(times[False])),
                    pdl_median_ms=float(np.median(times[True])))
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
    ap.add_argument('--deadline-s', type=float, default=300)
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
            print(f"{name}: plain {r['plain_median_ms']:.3f} ms, pdl {r['pdl_median_ms']:.3f} "
                  f"ms ({r['pdl_launches']} of {r['launches']} launches), same bits "
                  f"{r['same_bits']}")


if __name__ == '__main__':
    main()
