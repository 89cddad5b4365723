"""What the A/B benchmarks of one lowering choice share (bench_pdl.py, bench_splitk_modes.py):
the models (PyTorch exports and the cached assets), engines timed in interleaved rounds, and
the loop over models with a deadline that writes one JSON."""
import argparse
import time
from pathlib import Path

import numpy as np

from bench_ours import time_engine
from bench_splitk import ASSET_MODELS, export_torch
from benchlib import gpu_facts, versions, write_json


def arguments(description, deadline_s, extra=None,
              models='resnet50,yolov5s,bert_tiny') -> argparse.Namespace:
    """The shared options; ``extra`` {name: default string} adds a bench's own ``--name``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument('--models', default=models)
    for name, default in (extra or {}).items():
        ap.add_argument(f"--{name.replace('_', '-')}", default=default)
    ap.add_argument('--assets', default='', help='folder with yolov8/open_nsfw/yolov3-tiny')
    ap.add_argument('--onnx-dir', default='/tmp/splitk_onnx')
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--runs', type=int, default=200)
    ap.add_argument('--out', required=True)
    ap.add_argument('--deadline-s', type=float, default=deadline_s)
    return ap.parse_args()


def models(args) -> dict:
    """{name: (onnx or cfg path, weights path or None)}: the PyTorch exports, then the assets."""
    found = export_torch([m for m in args.models.split(',') if m], args.onnx_dir)
    for name, (model, weights) in ASSET_MODELS.items():
        path = Path(args.assets) / model if args.assets else None
        if path and path.is_file():
            found[name] = (path, weights and Path(args.assets) / weights)
    return found


def interleaved_times(engines: dict, rounds, runs) -> dict:
    """{key: {'median_ms': [per round], 'p99_ms': [...]}} of kernels-only graph replays, the
    engines taking turns in every round (a drift of the machine hits all of them)."""
    times = {key: dict(median_ms=[], p99_ms=[]) for key in engines}
    for _ in range(rounds):
        for key, engine in engines.items():
            ours = time_engine(engine, runs, 20)['ours']
            times[key]['median_ms'].append(ours['median_ms'])
            times[key]['p99_ms'].append(ours['p99_ms'])
    return times


def run(description, measure, args, extra_models=None) -> dict:
    """``measure(model, weights)`` of every model (and of ``extra_models``, {name: (path,
    weights)}) until the deadline; one JSON at ``args.out`` (a model's exception is its
    row)."""
    t0 = time.perf_counter()
    import pycuda.driver as drv
    doc = dict(what=description, device=gpu_facts(drv), versions=versions('numpy'),
               rounds=args.rounds, runs=args.runs, results={}, skipped=[])
    for name, (model, weights) in dict(models(args), **(extra_models or {})).items():
        if time.perf_counter() - t0 > args.deadline_s:
            doc['skipped'].append(name)
            continue
        try:
            doc['results'][name] = measure(model, weights)
        except Exception as exc:  # noqa: BLE001 - reported per model
            doc['results'][name] = dict(error=f'{type(exc).__name__}: {exc}')
        print(name, {k: v for k, v in doc['results'][name].items() if not k.endswith('_ms')},
              flush=True)
    write_json(args.out, doc, indent=1)
    return doc


def median(values) -> float:
    return float(np.median(values))


def max_rel(a, b) -> float:
    """max |a - b| over max |b| (0 for empty arrays), in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12)) if a.size else 0.0
