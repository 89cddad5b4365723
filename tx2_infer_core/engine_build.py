"""Engine build helpers: importing a model file, the plan cache key, the backend object and
the detector-head defaults (``engine.py`` re-exports the names other modules use).
"""
import contextlib
import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from tx2_infer_core import plan_file
from tx2_infer_core.errors import ModelFormatError, Tx2InferError
from tx2_infer_core.heads import head_from_outputs, meta_keypoints
from tx2_infer_core.limits import DEFAULT_LIMITS
from tx2_infer_core.range_inputs import RangeInputs, range_source

log = logging.getLogger('tx2_infer.engine')

# int8/mixed: calibrated INT8 (engine_int8.py); the numpy emulation on the cpu, slow
PRECISIONS = ('fp32', 'fp16', 'int8', 'mixed')
# auto: cuda if a GPU answers, else cpu; cpu: ort if onnxruntime imports, else numpy (the oracle)
BACKENDS = ('auto', 'cpu', 'numpy', 'ort', 'cuda')
CPU_BACKENDS = ('numpy', 'ort')     # run the same fp32 plans: a plan's target is 'cpu' for both


def import_model(model_path, input_shape=None, weights_path=None, limits=None):
    """Any supported model file (.onnx, Darknet .cfg) -> IR graph with static shapes, every
    tensor within ``limits`` (``Limits``, defaults when None)."""
    path = Path(model_path)
    limits = limits or DEFAULT_LIMITS
    if path.suffix == '.onnx':
        from tx2_infer_core.onnx_import import load_onnx
        return load_onnx(path, input_shape, limits)
    if path.suffix == '.cfg':
        from tx2_infer_core.darknet import load_darknet
        names = path.with_name('coco.names')
        return load_darknet(path, darknet_weights(path, weights_path), input_shape,
                            names_path=names if names.is_file() else None,
                            max_elements=limits.max_tensor_elements)
    raise Tx2InferError(f"unknown model type '{path.suffix}' for {path}: "
                        'expected .onnx, a Darknet .cfg (with .weights) or a .tx2plan')


def darknet_weights(cfg_path, weights_path=None) -> Path:
    """The .weights of a Darknet .cfg: ``weights_path``, else the file beside it (same stem)."""
    return Path(weights_path) if weights_path else Path(cfg_path).with_suffix('.weights')


def file_digest(*paths) -> str:
    """sha256 over the bytes of the given files (the model part of a plan's cache key)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 20), b''):
                digest.update(chunk)
    return digest.hexdigest()


def model_digest(model_path, weights_path=None) -> str:
    """``file_digest`` of the files a model is built from (a Darknet .cfg with its .weights)."""
    if str(model_path).endswith('.cfg'):
        return file_digest(model_path, darknet_weights(model_path, weights_path))
    return file_digest(model_path)


def cache_key(model_digest, input_shape, precision, target, int8_options=None,
              range_digest='') -> str:
    """Key of a built plan: model hash, input shape, precision, target (backend + arch) and,
    for int8/mixed, the calibration options (a folder by its files' names, sizes and times);
    ``range_digest``: ``feeds_digest`` of the FP16 range inputs, if any. The plan file format
    is part of the key: a cached plan of an older format is rebuilt, not refused."""
    text = f'{model_digest}|{tuple(input_shape)}|{precision}|{target}'
    text += f'|plan format {plan_file.FORMAT_VERSION}'
    if range_digest:
        text += f'|range:{range_digest}'
    if int8_options:
        options = dict(int8_options)
        folder = options.get('calibration_images')
        if folder and Path(folder).is_dir():
            options['calibration_images'] = [(p.name, p.stat().st_size, p.stat().st_mtime_ns)
                                             for p in sorted(Path(folder).iterdir())]
        text += '|' + json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def feeds_digest(feeds) -> str:
    """sha256 over the names, shapes, dtypes and bytes of ``feeds`` (a feeds dict or a list of
    them; files, a path or ``RangeInputs``: ``RangeInputs.digest``); '' for None."""
    if feeds is None:
        return ''
    if isinstance(feeds, (str, Path, RangeInputs)):
        return range_source(feeds).digest()
    digest = hashlib.sha256()
    for one in [feeds] if isinstance(feeds, dict) else feeds:
        for name in sorted(one):
            array = np.ascontiguousarray(one[name])
            digest.update(f'{name}|{array.shape}|{array.dtype}|'.encode())
            digest.update(array.tobytes())
    return digest.hexdigest()[:24]


def precision_error(precision):
    """None when ``precision`` is offered, else the reason it is refused."""
    if precision not in PRECISIONS:
        return f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
    return None


def sized_input_shape(model_path, size):
    """The input shape of a square ``size`` in the model's own layout: (1, C, size, size), or
    (1, size, size, C) when the model declares an NHWC input (e.g. open_nsfw). None when
    ``size`` is 0 (the model's own shape) or the model is a built .tx2plan (shape fixed)."""
    path = Path(model_path)
    if not size or path.suffix == '.tx2plan':
        return None
    if path.suffix != '.onnx':              # Darknet: NCHW, 3 channels
        return (1, 3, size, size)
    import onnx
    model = onnx.load(str(path), load_external_data=False)
    constants = {t.name for t in model.graph.initializer}
    first = next(i for i in model.graph.input if i.name not in constants)
    dims = [d.dim_value if d.HasField('dim_value') else 0
            for d in first.type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ModelFormatError(f"{path.name}: input '{first.name}' is {len(dims)}-D; "
                               'a square input size needs a 4-D image input')
    if dims[3] in (1, 3, 4) and dims[1] not in (1, 3, 4):
        return (1, size, size, dims[3])
    return (1, dims[1] or 3, size, size)


@contextlib.contextmanager
def own_errors(what, error=Tx2InferError):
    """The project's errors pass; any other exception becomes ``error`` naming ``what`` (the
    original chained), so nothing else escapes the public API."""
    try:
        yield
    except Tx2InferError:
        raise
    except Exception as exc:  # MemoryError, RecursionError and any bug on hostile input
        raise error(f'{what}: {type(exc).__name__}: {str(exc)[:300]}') from exc


def default_meta(graph):
    """Fill detector head and input format defaults from the graph's outputs and input."""
    meta = graph.meta
    if 'head' not in meta:
        shapes = {name: graph.values[name].shape for name in graph.outputs}
        try:
            meta['head'] = head_from_outputs(shapes, meta_keypoints(meta))
        except ModelFormatError as exc:     # a generic model: the engine runs it all the same
            log.info('no detector head: %s', exc)
            meta['head'] = {'type': 'none'}
    if 'input_format' not in meta:
        layout = graph.values[graph.inputs[0]].layout or 'NCHW'
        meta['input_format'] = {'layout': layout}
    return meta


def plan_target(backend) -> str:
    """What a plan built for ``backend`` (resolved) targets: 'cpu' for numpy and ort (the same
    plan runs on both), else the backend."""
    return 'cpu' if backend in CPU_BACKENDS else backend


def make_backend(name, options=None):
    """A backend by resolved name (``CPU_BACKENDS`` or 'cuda'); its precision is
    ``run_precision``'s."""
    if name in CPU_BACKENDS and options:
        raise Tx2InferError(f'backend options {options} need the cuda backend')
    if name == 'numpy':
        from tx2_infer_core.backends.numpy_backend import NumpyBackend
        return NumpyBackend()
    if name == 'ort':
        from tx2_infer_core.backends.ort_backend import OrtBackend
        return OrtBackend()
    from tx2_infer_core.backends.cuda_backend import CudaBackend
    return CudaBackend(precision='fp16', **(options or {}))
