"""Whole models on the GPU: FP16 against all-INT8 (every conv the kernels take), same run.

Per model (YOLOv3-tiny 416, open_nsfw (ResNet-50 thin) 224, YOLOv8 640): an FP16 engine and an
INT8 engine (min-max calibration on the fixed frame set, ``int8/frames.py``) on the cuda
backend, each with ``int8_path`` auto (integer tensor cores on sm_80+) and, for the TX2
question, dp4a; engine.run timed in three interleaved rounds (median and p99 of each, CUDA
synchronised by the run), and the INT8 output against the FP16 one on a real photo (relative
L2 per output). ``--dry`` builds and lowers here without a GPU (no timing). JSON to ``--out``.

    python bench/bench_int8_models.py [--models yolov3-tiny,open_nsfw,yolov8-fall]
        [--runs 200] [--out bench/results/int8_models_h200.json]
"""
import argparse
import time

import numpy as np

from benchlib import gpu_facts, stats, versions, write_json
from tx2_infer_core import assets
from tx2_infer_core.engine import Engine

MODELS = {
    'yolov3-tiny': lambda: (str(assets.yolov3_tiny()[0]), (1, 3, 416, 416), 'dog.jpg'),
    'open_nsfw': lambda: (str(assets.fetch('open_nsfw.onnx')), None, 'dog.jpg'),
    'yolov8-fall': lambda: (str(assets.fetch('yolov8-fall.onnx')), None, 'bus.jpg'),
}


def photo_feeds(engine, photo):
    import cv2
    from tx2_infer_core import detect
    spec = engine.input_specs[0]
    fmt = detect.resolve_input_format((engine.meta or {}).get('input_format'), spec.shape)
    image = cv2.imread(str(assets.fetch(photo)))
    return {spec.name: detect.preprocess(image, spec.shape, fmt)[0]}


CALIBRATION = {}   # int8_options shared by every INT8 build (main sets the frames folder)


def build(model, shape, precision, int8_path):
    options = dict(CALIBRATION, method='minmax') if precision == 'int8' else None
    backend_options = {'int8_path': int8_path} if precision == 'int8' else None
    return Engine.build(model, shape, precision, 'cuda', backend_options=backend_options,
                        int8_options=options)


def rel_l2(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def bench_model(name, runs, rounds=3):
    model, shape, photo = MODELS[name]()
    variants = {'fp16': ('fp16', 'auto'), 'int8': ('int8', 'auto'),
                'int8_dp4a': ('int8', 'dp4a')}
    engines, built_s = {}, {}
    for key, (precision, path) in variants.items():
        t0 = time.perf_counter()
        engines[key] = build(model, shape, precision, path)
        built_s[key] = round(time.perf_counter() - t0, 1)
    feeds = photo_feeds(engines['fp16'], photo)
    outs = {k: e.run(feeds) for k, e in engines.items()}
    times = {k: [] for k in engines}
    for _ in range(rounds):
        for key, engine in engines.items():
            for _ in range(10):
                engine.run(feeds)
            for _ in range(runs):
                t0 = time.perf_counter()
                engine.run(feeds)
                times[key].append((time.perf_counter() - t0) * 1e3)
    result = {'model': name, 'input_shape': list(engines['fp16'].input_specs[0].shape),
              'build_s': built_s,
              'int8_layers': sum(n.op == 'FusedConvInt8' for n in engines['int8'].graph.nodes),
              'convs': sum(n.op in ('FusedConv', 'FusedConvInt8')
                           for n in engines['int8'].graph.nodes),
              'ms': {k: stats(v) for k, v in times.items()},
              'int8_vs_fp16_rel_l2': {k: {o: rel_l2(outs[k][o], outs['fp16'][o])
                                          for o in outs['fp16']}
                                      for k in ('int8', 'int8_dp4a')}}
    result['ratio_int8_over_fp16'] = round(result['ms']['int8']['median_ms'] /
                                           result['ms']['fp16']['median_ms'], 3)
    for engine in engines.values():
        engine.close()
    return result


def dry(names):
    """Build the INT8 graphs and lower them for sm_90 and sm_62 here (no GPU)."""
    from tx2_infer_core.cuda.lowering import lower_graph
    from tx2_infer_core.engine_int8 import quantize_for_build  # noqa: F401 (import check)
    for name in names:
        model, shape, _ = MODELS[name]()
        engine = Engine.build(model, shape, 'int8', 'numpy', int8_options={'method': 'minmax'})
        for arch in (90, 62):
            lowered = lower_graph(engine.graph, arch=arch)
            print(name, arch, 'lowered:', len(lowered.launches), 'launches')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', default='yolov3-tiny,open_nsfw,yolov8-fall')
    parser.add_argument('--runs', type=int, default=200)
    parser.add_argument('--dry', action='store_true')
    parser.add_argument('--calibration-images', default='',
                        help='a folder of >= 8 real photos (default: the fixed frame set)')
    parser.add_argument('--out', default='bench/results/int8_models_h200.json')
    args = parser.parse_args(argv)
    names = args.models.split(',')
    if args.calibration_images:
        CALIBRATION['calibration_images'] = args.calibration_images
    if args.dry:
        return dry(names)
    import pycuda.driver as drv
    facts = gpu_facts(drv)
    results = []
    for name in names:
        results.append(bench_model(name, args.runs))
        r = results[-1]
        print(name, {k: round(v['median_ms'], 3) for k, v in r['ms'].items()},
              'int8/fp16', r['ratio_int8_over_fp16'], 'int8 layers', r['int8_layers'],
              'of', r['convs'], flush=True)
    write_json(args.out, {'what': __doc__.splitlines()[0], 'gpu': facts,
                          'versions': versions('numpy', 'pycuda'), 'runs': args.runs,
                          'rounds': 3, 'results': results,
                          'when': time.strftime('%Y-%m-%d %H:%M:%S')}, indent=1)


if __name__ == '__main__':
    main()
