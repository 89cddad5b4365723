"""CPU benchmark: our numpy backend against ONNX Runtime CPU, same models, same run, same machine.

    python bench/bench_cpu.py [--runs 30] [--out bench/results/cpu_numpy_vs_ort.json]

Writes one JSON with the device, versions, and per model: median and p99 latency (ms) of both
engines, their ratio, and the memory plan (arena vs lower bound vs naive sum).
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2

from benchlib import cpu_name, stats, versions, write_json
from tx2_infer_core import assets, detect, timing
from tx2_infer_core.engine import Engine

NSFW_SHAPE = (1, 224, 224, 3)
NSFW_FORMAT = {'color': 'BGR', 'layout': 'NHWC', 'scale': 1.0, 'mean': [104.0, 117.0, 123.0],
               'resize': 'stretch'}
BLOCKS = 5


def models(tmp):
    from tx2_infer_core.darknet import load_darknet
    from tx2_infer_core.onnx_export import save_onnx
    cfg, weights, _ = assets.yolov3_tiny()
    dn_onnx = Path(tmp) / 'yolov3-tiny.onnx'
    save_onnx(load_darknet(cfg, weights), dn_onnx)
    yield 'yolov3-tiny-416', Engine.build(cfg, weights_path=weights), dn_onnx, None
    path = assets.fetch('yolov8-fall.onnx')
    yield 'yolov8-640', Engine.build(path), path, None
    path = assets.fetch('open_nsfw.onnx')
    yield ('resnet50-open-nsfw-224', Engine.build(path, input_shape=NSFW_SHAPE), path,
           NSFW_FORMAT)


def bench_model(name, engine, onnx_path, runs, input_format=None):
    """Both engines on the same real photo, interleaved in blocks so load drifts hit both."""
    spec = engine.input_specs[0]
    photo = cv2.imread(str(assets.fetch('bus.jpg')))
    tensor, _ = detect.preprocess(photo, spec.shape, input_format or engine.meta['input_format'])
    feeds = {spec.name: tensor}
    ort_run = timing.ort_runner(engine, onnx_path)
    ours, theirs = [], []
    for _ in range(BLOCKS):
        ours.extend(timing.time_runs(engine.run, feeds, runs // BLOCKS, warmup=1))
        theirs.extend(timing.time_runs(ort_run, feeds, runs // BLOCKS, warmup=1))
    ours, theirs = stats(ours), stats(theirs)
    plan = engine.memory_plan
    row = {'model': name, 'input_shape': list(spec.shape), 'numpy_backend': ours,
           'onnxruntime_cpu': theirs, 'ratio_median': ours['median_ms'] / theirs['median_ms'],
           'arena_bytes': plan.arena_bytes, 'lower_bound_bytes': plan.lower_bound,
           'naive_bytes': plan.naive_bytes, 'nodes': len(engine.graph.nodes)}
    print(f"{name:24s} numpy {ours['median_ms']:8.1f} ms (p99 {ours['p99_ms']:.1f})  "
          f"ORT {theirs['median_ms']:8.1f} ms (p99 {theirs['p99_ms']:.1f})  "
          f"ratio {row['ratio_median']:.2f}  {plan.report()}", flush=True)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=30)
    parser.add_argument('--out', default='bench/results/cpu_numpy_vs_ort.json')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench_model(name, engine, path, args.runs, fmt)
                for name, engine, path, fmt in models(tmp)]
    result = {'benchmark': 'numpy backend vs ONNX Runtime CPU (fp32, batch 1)',
              'device': cpu_name(), 'cores': len(os.sched_getaffinity(0)),
              'blas_threads': os.environ.get('OPENBLAS_NUM_THREADS', 'default'),
              'versions': versions('numpy', 'onnxruntime', 'onnx'),
              'date': time.strftime('%Y-%m-%d'), 'models': rows}
    write_json(args.out, result, indent=2)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
