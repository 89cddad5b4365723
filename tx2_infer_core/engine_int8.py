"""The engine's INT8 precisions (issue 11): ``int8`` (every FusedConv the quantize pass
accepts, one calibration method) and ``mixed`` (the layers chosen under an accuracy budget,
``int8/sensitivity.py``).

``Engine.build(..., precision='mixed', int8_options={...})`` calls ``quantize_for_build`` on
the optimised graph; the schedule, scales, method, calibration key and the per-layer report go
in the plan header (``meta['int8']``). On the numpy backend (and 'cpu', 'ort': they fall back
to numpy, since ONNX Runtime cannot run the internal FusedConvInt8) an INT8 plan runs the exact
integer emulation: slow, a test oracle. INT8 pays only on a GPU.

``int8_options`` (all optional):
- ``calibration_images``: a folder of images (``int8/frames.py``: >= 8, every 4th held out);
  default: the fixed photo + video set;
- ``accuracy_budget``: the loss of agreement with FP32 ``mixed`` may spend (default 0.005);
- ``method``: the calibration method of ``int8`` (default 'percentile'); ``mixed`` tries every
  one per layer;
- ``timings``: {layer: ms saved in INT8} measured on the GPU at hand, with ``gpu`` naming it;
  without it the gain is the layer's FLOPs;
- ``cache_dir``: the calibration cache folder.
"""
import logging

from tx2_infer_core.errors import Tx2InferError

log = logging.getLogger('tx2_infer.engine')

INT8_PRECISIONS = ('int8', 'mixed')
DEFAULT_METHOD = 'percentile'
OPTION_KEYS = ('calibration_images', 'accuracy_budget', 'method', 'timings', 'gpu',
               'cache_dir', 'video_frames')


def check_options(options) -> dict:
    """``int8_options`` with defaults; unknown keys and bad values are a CalibrationError."""
    from tx2_infer_core.int8.calibrate import METHODS, CalibrationError
    from tx2_infer_core.int8.sensitivity import DEFAULT_BUDGET
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise CalibrationError(f"unknown int8 option(s) {unknown}; known: "
                               f"{', '.join(OPTION_KEYS)}")
    budget = options.setdefault('accuracy_budget', DEFAULT_BUDGET)
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 0 <= budget < 1:
        raise CalibrationError(f'accuracy_budget must be a number in [0, 1), got {budget!r}')
    method = options.setdefault('method', DEFAULT_METHOD)
    if method not in METHODS:
        raise CalibrationError(f"unknown calibration method {method!r}; choose one of "
                               f"{', '.join(METHODS)}")
    return options


def backend_for(backend, precision) -> str:
    """The resolved backend that runs a ``precision`` plan: an INT8 plan on 'ort' runs on
    numpy (the exact emulation), logged."""
    if precision in INT8_PRECISIONS and backend == 'ort':
        log.info('precision %s on the cpu: the numpy backend runs the exact INT8 emulation '
                 '(slow; INT8 pays only on a GPU)', precision)
        return 'numpy'
    return backend


def frame_set(options):
    """The calibration frames of ``options`` (a folder, or the default set)."""
    from tx2_infer_core.int8 import frames
    if options.get('calibration_images'):
        return frames.folder_frames(options['calibration_images'])
    return frames.default_frames(options.get('video_frames', 8))


def quantize_for_build(graph, digest, precision, options=None, show=None):
    """``(int8 graph, memory plan, report)`` of an optimised ``graph`` for ``precision``
    ('int8' or 'mixed'); ``digest`` is the model's (``model_digest``), the cache key's part."""
    from tx2_infer_core.int8 import calibrate as cal
    from tx2_infer_core.int8 import frames, sensitivity
    from tx2_infer_core.int8.build import build_quantized
    if precision not in INT8_PRECISIONS:
        raise Tx2InferError(f'quantize_for_build: {precision!r} is not an INT8 precision')
    options = check_options(options)
    show = show or cal.progress
    fs = frame_set(options)
    calib = frames.input_feeds(fs.calibration, graph)
    held = frames.input_feeds(fs.held_out, graph)
    methods = [options['method']] if precision == 'int8' else list(cal.METHODS)
    thresholds, keys = {}, {}
    for method in methods:
        thresholds[method], info = cal.calibrate(graph, calib, method, digest, fs.digest,
                                                 cache_dir=options.get('cache_dir'), show=show)
        keys[method] = info['key']
    if precision == 'int8':
        schedule = sensitivity.full_schedule(graph, thresholds[options['method']])
        report = {'layers': [{'layer': n, 'method': options['method'], 'x_scale': lq.x_scale,
                              'int8': True} for n, lq in schedule.items()]}
    else:
        schedule, report = sensitivity.choose_schedule(
            graph, thresholds, calib, held, options['accuracy_budget'], options.get('timings'),
            show=show)
    quantized, memory_plan = build_quantized(graph, schedule)
    info = quantized.meta.setdefault('int8', {})
    info.update({'precision': precision, 'methods': methods, 'calibration_keys': keys,
                 'frames_digest': fs.digest, 'frames': {'calibration': len(calib),
                                                        'held_out': len(held)},
                 'gpu': options.get('gpu') if options.get('timings') else 'flops',
                 'report': report})
    log.info('%s: %d of %d FusedConv layers in INT8', precision, len(schedule),
             sum(1 for n in graph.nodes if n.op == 'FusedConv'))
    return quantized, memory_plan, report
