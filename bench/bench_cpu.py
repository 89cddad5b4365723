"""CPU benchmark: our two CPU backends against ONNX Runtime on the original model, same models,
same run, same machine.

    python bench/bench_cpu.py [--runs 30] [--out bench/results/cpu_backends.json]

Three columns per model: the numpy backend (the oracle, ``backend: numpy``), the ort backend
(ONNX Runtime on our optimised graph, what ``backend: cpu`` runs) and ONNX Runtime on the
original model (default session options). Writes one JSON with the host CPU, cores, load
average (before and after), versions, and per model: median and p99 latency (ms) of each, the
ratios to ONNX Runtime, and the memory plan (arena vs lower bound vs naive sum).
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2

from benchlib import cpu_name, stats, versions, write_json
from tx2_infer_core import assets, detect, timing
from tx2_infer_core.backends.ort_backend import physical_cores
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
    engine = Engine.build(cfg, weights_path=weights, backend='numpy')
    yield 'yolov3-tiny-416', engine, dn_onnx, None
    path = assets.fetch('yolov8-fall.onnx')
    yield 'yolov8-640', Engine.build(path, backend='numpy'), path, None
    path = assets.fetch('open_nsfw.onnx')
    yield ('resnet50-open-nsfw-224', Engine.build(path, input_shape=NSFW_SHAPE, backend='numpy'),
           path, NSFW_FORMAT)


def bench_model(name, engine, onnx_path, runs, input_format=None):
    """The three engines on the same real photo, interleaved in blocks so load drifts hit all
    three; the ort backend runs the numpy engine's plan (the same optimised graph)."""
    spec = engine.input_specs[0]
    photo = cv2.imread(str(assets.fetch('bus.jpg')))
    tensor, _ = detect.preprocess(photo, spec.shape, input_format or engine.meta['input_format'])
    feeds = {spec.name: tensor}
    ours_ort = Engine(engine.graph, engine.memory_plan, engine.options, backend='ort')
    runners = {'numpy_backend': engine.run, 'ort_backend': ours_ort.run,
               'onnxruntime_cpu': timing.ort_runner(engine, onnx_path)}
    times = {key: [] for key in runners}
    for _ in range(BLOCKS):
        for key, run in runners.items():
            times[key].extend(timing.time_runs(run, feeds, runs // BLOCKS, warmup=1))
    ours_ort.close()
    row = {'model': name, 'input_shape': list(spec.shape)}
    row.update({key: stats(t) for key, t in times.items()})
    ort_median = row['onnxruntime_cpu']['median_ms']
    row['ratio_median'] = row['numpy_backend']['median_ms'] / ort_median
    row['ort_backend_ratio_median'] = row['ort_backend']['median_ms'] / ort_median
    plan = engine.memory_plan
    row.update(arena_bytes=plan.arena_bytes, lower_bound_bytes=plan.lower_bound,
               naive_bytes=plan.naive_bytes, nodes=len(engine.graph.nodes))
    cells = '  '.join(f"{key.split('_')[0]} {row[key]['median_ms']:7.1f} ms "
                      f"(p99 {row[key]['p99_ms']:.1f})" for key in runners)
    print(f'{name:24s} {cells}  {plan.report()}', flush=True)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=30)
    parser.add_argument('--out', default='bench/results/cpu_backends.json')
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench_model(name, engine, path, args.runs, fmt)
                for name, engine, path, fmt in models(tmp)]
    result = {'benchmark': 'numpy backend, ort backend (ONNX Runtime on our optimised graph) '
                           'and ONNX Runtime on the original model, CPU (fp32, batch 1)',
              'device': cpu_name(), 'cores': len(os.sched_getaffinity(0)),
              'physical_cores': physical_cores(),
              'load_average_1_5_15': {'before': load_before, 'after': os.getloadavg()},
              'blas_threads': os.environ.get('OPENBLAS_NUM_THREADS', 'default'),
              'versions': versions('numpy', 'onnxruntime', 'onnx'),
              'date': time.strftime('%Y-%m-%d'), 'models': rows}
    write_json(args.out, result, indent=2)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
