"""The detector node's engine side: load or build the engine for the node's parameters and
wrap it in the core ``Detector`` (which runs the frames, with per-stage timings).
"""
import time
from pathlib import Path

from tx2_infer_core import detect
from tx2_infer_core.detector import Detector
from tx2_infer_core.engine import Engine, resolve_backend, sized_input_shape
from tx2_infer_core.errors import Tx2InferError, UnsupportedOpError

MODEL_SUFFIXES = ('.onnx', '.cfg', '.tx2plan')


def default_model():
    """(cfg path, labels path) of the default model, Darknet YOLOv3-tiny (COCO)."""
    from tx2_infer_core import assets
    cfg, _weights, names = assets.yolov3_tiny()
    return str(cfg), str(names)


def _check_model_path(model_path):
    path = Path(model_path)
    if path.suffix not in MODEL_SUFFIXES:
        raise Tx2InferError(f"model_path '{model_path}' is not a model file; expected "
                            f"{', '.join(MODEL_SUFFIXES)}")
    if not path.is_file():
        raise Tx2InferError(f"model_path '{model_path}' does not exist")
    if path.suffix == '.cfg' and not path.with_suffix('.weights').is_file():
        raise Tx2InferError(f"Darknet weights '{path.with_suffix('.weights')}' not found "
                            f"beside '{model_path}'")


def model_input_shape(model_path, input_size=0, batch=1):
    """The input shape to build ``model_path`` for: ``input_size`` square (0: the model's own
    size) and ``batch`` images. None: the model's own shape at batch 1."""
    shape = sized_input_shape(model_path, input_size)
    if batch <= 1 or Path(model_path).suffix == '.tx2plan':
        return shape
    if shape is None and Path(model_path).suffix == '.cfg':
        from tx2_infer_core.darknet_cfg import parse_cfg
        net, _ = parse_cfg(model_path)
        shape = (1, net.int('channels', 3), net.int('height'), net.int('width'))
    elif shape is None:
        import onnx
        model = onnx.load(str(model_path), load_external_data=False)
        weights = {t.name for t in model.graph.initializer}
        first = next(i for i in model.graph.input if i.name not in weights)
        shape = [d.dim_value for d in first.type.tensor_type.shape.dim]
        if 0 in shape[1:]:
            raise Tx2InferError(f'{Path(model_path).name}: the input {shape} has dynamic '
                                'sizes; set input_size for a batch')
    return (int(batch),) + tuple(int(d) for d in shape[1:])


def cpu_fallback(precision) -> tuple:
    """(backend, precision) that the CPU runs instead of a CUDA build: fp16 is GPU-only, so
    it becomes fp32; the other precisions stay."""
    return resolve_backend('cpu'), 'fp32' if precision == 'fp16' else precision


def range_feeds_for(range_images, backend, precision):
    """The ``range_feeds`` of a build: the ``range_images`` folder for a cuda build in fp16
    or fp32 (which cuda runs in fp16), else None (so other builds keep their cache key)."""
    if range_images and backend == 'cuda' and precision in ('fp16', 'fp32'):
        return range_images
    return None


def load_detector(model_path='', labels_path='', input_size=0, backend='auto',
                  precision='fp32', log=print, int8_options=None, batch=1,
                  range_images='') -> tuple:
    """Load a plan or build (and cache) the engine, warm it up -> (Detector, info).

    ``input_size`` (0: the model's own) is a square size in the model's own layout
    (``engine.sized_input_shape``); ``info`` holds the facts diagnostics report, taken from
    what runs: backend, precision, frame path, model and input shape. ``log(text)`` reports
    progress. ``batch`` > 1 builds the engine for that many images (``model_input_shape``);
    a .tx2plan keeps its own. With ``backend`` auto, a model the GPU kernels refuse (an op
    with no CUDA kernel) runs on the CPU backend instead, logged with the op named.
    ``range_images``: a folder of real images the FP16 range of a cuda build is measured on
    (``range_feeds_for``; part of the plan cache key).
    """
    default_labels = ''
    if not model_path:
        model_path, default_labels = default_model()
    _check_model_path(model_path)
    requested, backend = backend, resolve_backend(backend)
    start = time.perf_counter()
    if model_path.endswith('.tx2plan'):
        log(f'loading plan {model_path} on {backend}' + (
            ' (range_images not used: a plan keeps the FP16 range it was built with)'
            if range_images else ''))
        engine = Engine.load(model_path, backend)
    else:
        shape = model_input_shape(model_path, input_size, batch)
        log(f'loading or building the engine for {model_path} ({precision}, {backend}, '
            f'input {input_size or "from the model"}, batch {batch}); a first build takes a '
            'while and is cached')
        try:
            engine = Engine.build_cached(
                model_path, shape, precision, backend, int8_options=int8_options,
                range_feeds=range_feeds_for(range_images, backend, precision))
        except UnsupportedOpError as exc:
            if requested != 'auto' or backend != 'cuda':
                raise
            backend, precision = cpu_fallback(precision)
            log(f'backend auto: the GPU kernels cannot run this model ({exc}); running it '
                f'on the CPU instead ({backend}, {precision})')
            engine = Engine.build_cached(model_path, shape, precision, backend,
                                         int8_options=int8_options)
    log(f'engine ready in {time.perf_counter() - start:.1f} s')
    try:
        labels_path = labels_path or default_labels
        labels = detect.load_labels(labels_path) if labels_path else None
        detector = Detector(engine, labels=labels)
        detector.warm_up()
    except Exception:
        engine.close()
        raise
    info = {'backend': engine.backend.name, 'precision': engine.precision,
            'frame_path': detector.path, 'model': Path(model_path).name,
            'input_shape': 'x'.join(str(d) for d in detector.spec.shape),
            'batch': str(detector.batch)}
    return detector, info
