"""``tx2-infer``: build, run, benchmark and inspect models from the command line.

    tx2-infer build yolov3-tiny.cfg -o yolov3-tiny.tx2plan
    tx2-infer build melspec.onnx -o melspec.tx2plan --backend cuda --range-inputs speech.npz
    tx2-infer run yolov3-tiny.tx2plan dog.jpg --out out/
    tx2-infer bench yolov8.onnx --runs 50 --compare-ort
    tx2-infer inspect yolov8.onnx
    tx2-infer demo

MODEL is an .onnx file, a Darknet .cfg (weights beside it with the same stem, or --weights)
or a built .tx2plan. Bad input prints one line on stderr and exits with status 2.
"""
import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from tx2_infer_core.cli_int8 import add_calibrate_command, add_int8_args, int8_options
from tx2_infer_core.detect_params import DEFAULTS, DetectParams
from tx2_infer_core.engine import BACKENDS, PRECISIONS, precision_error
from tx2_infer_core.errors import InputError, Tx2InferError
from tx2_infer_core.image_header import read_image

log = logging.getLogger('tx2_infer.cli')


def parse_shape(text):
    """'1x3x640x640' -> (1, 3, 640, 640)."""
    try:
        shape = tuple(int(d) for d in text.lower().split('x'))
    except ValueError:
        shape = ()
    if not shape or min(shape) <= 0:
        raise argparse.ArgumentTypeError(f"bad shape '{text}': expected e.g. 1x3x640x640")
    return shape


def parse_classes(text):
    """'0,2,5' -> [0, 2, 5]."""
    try:
        return [int(c) for c in text.split(',') if c.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad class list '{text}': expected e.g. 0,2,5")


def parse_precision(text):
    """'fp16' -> 'fp16'; a precision that does not run (int8) is refused with the reason."""
    reason = precision_error(text)
    if reason:
        raise argparse.ArgumentTypeError(reason)
    return text


def parse_json_dict(text):
    """'{"color": "BGR"}' -> dict (the --input-format override)."""
    import json
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f'bad JSON {text!r}: {exc}')
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f'expected a JSON object, got {text!r}')
    return value


def _progress(iterable, desc, total=None):
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, total=total, unit='it', leave=False, disable=None,
                file=sys.stderr)


def open_engine(args, backend=None):
    """Engine for args.model: load a .tx2plan, or build an .onnx / Darknet .cfg."""
    from tx2_infer_core.engine import Engine
    path = Path(args.model)
    if not path.is_file():
        raise FileNotFoundError(f'model file not found: {path}')
    backend = backend or args.backend
    if path.suffix == '.tx2plan':
        return _override_meta(Engine.load(path, backend), args)
    start = time.perf_counter()
    print(f'building {path.name} ...', file=sys.stderr)
    engine = Engine.build(path, input_shape=getattr(args, 'input_shape', None),
                          precision=getattr(args, 'precision', 'fp32'), backend=backend,
                          weights_path=args.weights, optimize=not args.no_optimize,
                          int8_options=int8_options(args), range_feeds=range_inputs(args))
    print(f'built {path.name} in {time.perf_counter() - start:.1f} s', file=sys.stderr)
    return _override_meta(engine, args)


def range_inputs(args):
    """The --range-inputs files (with the --input-format override) or None."""
    from tx2_infer_core.range_inputs import RangeInputs
    path = getattr(args, 'range_inputs', None)
    return RangeInputs(path, getattr(args, 'input_format', None)) if path else None


def _override_meta(engine, args):
    """Apply --input-format and --labels to engine.meta (a built plan keeps them)."""
    from tx2_infer_core import detect
    if getattr(args, 'input_format', None):
        fmt = dict(engine.meta.get('input_format') or {})
        fmt.update(args.input_format)
        detect.resolve_input_format(fmt)   # fail now on a bad key value
        engine.meta['input_format'] = fmt
    if getattr(args, 'labels', None):
        engine.meta['labels'] = detect.load_labels(args.labels)
    return engine


def format_detection(name, det):
    """One printed line: image, label, score, box x1 y1 x2 y2 in image pixels."""
    return (f'{name}: {det.label or det.class_id:<14} {det.score:.3f}  '
            f'[{det.x1:7.1f} {det.y1:7.1f} {det.x2:7.1f} {det.y2:7.1f}]')


def detect_params(args) -> DetectParams:
    """The --conf, --iou, --max-det and --classes options as ``DetectParams``."""
    return DetectParams(args.conf, args.iou, args.max_det, args.classes)


def detect_images(engine, images, out_dir, args, labels=None):
    """Detect on each image path, print one line per detection, write annotated copies."""
    import cv2
    from tx2_infer_core import detect
    from tx2_infer_core.detector import Detector
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    detector = Detector(engine, detect_params(args), labels)
    total = 0
    for path in _progress(images, 'detect'):
        image = read_image(path)
        dets = detector.detect(image)
        for det in dets:
            print(format_detection(Path(path).name, det))
        if not dets:
            print(f'{Path(path).name}: no detections')
        target = out_dir / Path(path).name
        if not cv2.imwrite(str(target), detect.draw_detections(image, dets)):
            raise InputError(f'cannot write annotated image {target}')
        total += len(dets)
    print(f'{total} detections in {len(images)} images; annotated images in {out_dir}',
          file=sys.stderr)
    return total


def cmd_build(args):
    """build MODEL -o PLAN."""
    engine = open_engine(args)
    engine.save(args.output)
    print(f'wrote {args.output} ({engine.memory_plan.report()})')
    if args.range_inputs and engine.precision != 'fp16':
        print(f'--range-inputs not used: the {engine.backend.name} backend runs '
              f'{engine.precision} (the FP16 range is fitted for cuda builds)', file=sys.stderr)
    elif args.range_inputs:
        scaled = engine.options.get('fp16_range', {})
        print(f'fp16 range: {len(scaled)} values stored rescaled (tx2-infer inspect lists '
              'them)')
    engine.close()


def cmd_run(args):
    """run PLAN|MODEL IMAGE...: print detections, write annotated images."""
    with open_engine(args) as engine:
        if args.pose:
            from tx2_infer_core.draw_pose import pose_images
            pose_images(engine, args.images, args.out, args.pose, detect_params(args))
            return
        detect_images(engine, args.images, args.out, args)


def cmd_bench(args):
    """bench PLAN|MODEL: median and p99 latency, optionally against ONNX Runtime."""
    from tx2_infer_core.timing import bench_input, ort_runner, time_runs, timing_line
    with open_engine(args) as engine:
        feeds = bench_input(engine, read_image(args.image) if args.image else None)
        backend = type(engine.backend).__name__
        ours = time_runs(engine.run, feeds, args.runs, args.warmup, _progress)
        print(timing_line(f'tx2_infer ({backend})', ours))
        if args.compare_ort:
            try:
                ort_run = ort_runner(engine, args.model)
            except ImportError:
                print('onnxruntime is not installed: no comparison', file=sys.stderr)
                return
            theirs = time_runs(ort_run, feeds, args.runs, args.warmup, _progress)
            print(timing_line('onnxruntime (cpu)', theirs))
            print(f'ratio tx2_infer / onnxruntime (median): '
                  f'{np.median(ours) / np.median(theirs):.2f}x')


def cmd_inspect(args):
    """inspect PLAN|MODEL: layers, fusions, FLOPs, memory plan."""
    from tx2_infer_core.inspect_report import inspect_lines
    with open_engine(args, backend='numpy') as engine:
        for line in inspect_lines(engine):
            print(line)


def cmd_demo(args):
    """Default detector (YOLOv3-tiny) on the bundled real photos."""
    from tx2_infer_core import assets
    from tx2_infer_core.engine import Engine
    print('fetching YOLOv3-tiny and photos (cached after the first time) ...', file=sys.stderr)
    cfg, weights, _ = assets.yolov3_tiny()
    photos = assets.fetch_photos()
    engine = Engine.build_cached(cfg, backend=args.backend, weights_path=weights)
    with engine:
        detect_images(engine, photos, args.out, args)


BACKEND_HELP = ('execution backend (default auto: cuda when a GPU answers, else cpu; cpu: ort '
                'when onnxruntime is installed, else numpy, the reference)')


def _model_args(parser, shape=True):
    parser.add_argument('model', help='.onnx, Darknet .cfg or .tx2plan')
    parser.add_argument('--weights', help='Darknet .weights (default: beside the .cfg)')
    parser.add_argument('--backend', default='auto', choices=BACKENDS, help=BACKEND_HELP)
    parser.add_argument('--no-optimize', action='store_true',
                        help='skip the optimisation passes (debugging)')
    if shape:
        parser.add_argument('--input-shape', type=parse_shape, metavar='NxCxHxW',
                            help='fix the input shape, e.g. 1x3x640x640')
    parser.add_argument('--input-format', type=parse_json_dict, metavar='JSON',
                        help='preprocessing override, e.g. \'{"color": "BGR", "layout": '
                             '"NHWC", "mean": [104, 117, 123], "scale": 1, "resize": '
                             '"stretch"}\' (see detect.py)')


def _detect_args(parser, out):
    parser.add_argument('--out', default=out, help=f'annotated images folder (default {out})')
    parser.add_argument('--conf', type=float, default=DEFAULTS.conf_threshold,
                        help=f'score threshold (default {DEFAULTS.conf_threshold})')
    parser.add_argument('--iou', type=float, default=DEFAULTS.iou_threshold,
                        help=f'NMS IoU threshold (default {DEFAULTS.iou_threshold})')
    parser.add_argument('--max-det', type=int, default=DEFAULTS.max_detections,
                        help=f'detections per image (default {DEFAULTS.max_detections})')
    parser.add_argument('--classes', type=parse_classes, help='class ids to keep, e.g. 0,2')


def make_parser():
    """The argparse parser with the build, run, bench, inspect and demo subcommands."""
    parser = argparse.ArgumentParser(prog='tx2-infer', description=__doc__.split('\n')[0])
    parser.add_argument('-v', '--verbose', action='store_true', help='log engine steps')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')

    build = sub.add_parser('build', help='build a .tx2plan from a model')
    _model_args(build)
    build.add_argument('-o', '--output', required=True, help='plan file to write')
    build.add_argument('--precision', default='fp32', type=parse_precision,
                       metavar='{' + ','.join(PRECISIONS) + '}',
                       help='fp16 needs --backend cuda; fp32 on cuda runs fp16 with fp32 '
                            'accumulation and is recorded as fp16; int8/mixed calibrate on '
                            'real frames (the cpu runs them as a slow exact emulation)')
    build.add_argument('--labels', help='class names file to store in the plan')
    build.add_argument('--range-inputs', metavar='PATH',
                       help='cuda: real inputs to measure the FP16 range on, a folder of '
                            'images (preprocessed as the detector does) or an .npz of arrays '
                            'named after the model inputs (a leading axis: several runs); '
                            'values past FP16 are stored rescaled by powers of two')
    add_int8_args(build)
    build.set_defaults(func=cmd_build)
    add_calibrate_command(sub, _model_args, open_engine)

    run = sub.add_parser('run', help='detect objects in images')
    _model_args(run)
    run.add_argument('images', nargs='+', metavar='IMAGE')
    run.add_argument('--labels', help='class names file, one per line')
    run.add_argument('--pose', type=int, metavar='K', help='pose model (YOLOv8/YOLO11-pose '
                     'head) with K keypoints a person: draw keypoints and skeleton')
    _detect_args(run, 'tx2_infer_out')
    run.set_defaults(func=cmd_run)

    bench = sub.add_parser('bench', help='measure latency (median, p99)')
    _model_args(bench)
    bench.add_argument('--runs', type=int, default=20, help='timed runs (default 20)')
    bench.add_argument('--warmup', type=int, default=3, help='untimed runs first (default 3)')
    bench.add_argument('--image', help='photo to feed (default: a grey image)')
    bench.add_argument('--compare-ort', action='store_true',
                       help='also time ONNX Runtime (CPU) on the same model')
    bench.set_defaults(func=cmd_bench)

    inspect = sub.add_parser('inspect', help='layers, fusions, FLOPs and memory plan')
    _model_args(inspect)
    inspect.set_defaults(func=cmd_inspect)

    demo = sub.add_parser('demo', help='YOLOv3-tiny on real photos')
    demo.add_argument('--backend', default='auto', choices=BACKENDS, help=BACKEND_HELP)
    _detect_args(demo, 'demo_out')
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv=None):
    """Entry point of ``tx2-infer``; returns the exit status (2 on bad input)."""
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format='%(name)s: %(message)s')
    try:
        args.func(args)
    except (Tx2InferError, OSError) as exc:     # bad input, unreadable file: one line
        message = ' '.join(str(exc).split())
        print(f'tx2-infer {args.command}: error: {message}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
