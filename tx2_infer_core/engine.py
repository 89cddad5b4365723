"""Build once, run many: model file -> optimised graph + memory plan -> backend.

    engine = Engine.build('yolov3-tiny.cfg')          # import, fold, fuse, plan, allocate
    engine.save('yolov3-tiny.tx2plan')                # a robot boots from this, no rebuild
    engine = Engine.load('yolov3-tiny.tx2plan')
    outputs = engine.run({'images': x})
"""
import logging
import time
from pathlib import Path

import numpy as np

from tx2_infer_core import plan_file
from tx2_infer_core.engine_build import (  # noqa: F401 - re-exported: the engine's public API
    BACKENDS, CPU_BACKENDS, PRECISIONS, cache_key, darknet_weights, default_meta,
    feeds_digest, file_digest, import_model, make_backend, model_digest, own_errors,
    plan_target, precision_error, sized_input_shape)
from tx2_infer_core.engine_int8 import INT8_PRECISIONS, backend_for, quantize_for_build
from tx2_infer_core.errors import InputError, ModelFormatError, PlanFileError, Tx2InferError
from tx2_infer_core.limits import DEFAULT_LIMITS
from tx2_infer_core.plan_trust import remember, verified_marker, verify_shapes
from tx2_infer_core.planner import ALIGNMENT, MemoryPlan, check_plan, plan_memory
from tx2_infer_core.range_inputs import range_source

log = logging.getLogger('tx2_infer.engine')

CUDA_FP32_NOTE = 'cuda runs fp16 with fp32 accumulation'
_warned = set()                 # warnings already logged by this process
FINITE_CHECK_RUNS = 16          # the first runs of an engine check its outputs for inf/NaN
FP16_MAX = 65504.0
_default_meta = default_meta    # the name tests and benches use


def run_precision(backend, precision) -> str:
    """The precision ``backend`` (resolved: numpy, ort or cuda) runs a ``precision`` plan in.

    The cpu backends run fp32; the cuda backend runs fp16 (FP32 accumulation), so fp32 on
    cuda is reported as fp16, with a warning logged once per process.
    """
    reason = precision_error(precision)
    if reason:
        raise Tx2InferError(reason)
    if precision in INT8_PRECISIONS:        # the numpy emulation, or the cuda int8 kernels
        return precision
    if backend != 'cuda':
        return 'fp32'
    if precision == 'fp32' and 'cuda_fp32' not in _warned:
        _warned.add('cuda_fp32')
        log.warning('precision fp32 on the cuda backend: %s; reported as fp16', CUDA_FP32_NOTE)
    return 'fp16'


def cuda_available() -> bool:
    """True when pycuda imports and a CUDA device answers (no context is kept)."""
    try:
        from tx2_infer_core import cuda
    except ImportError:
        return False
    return cuda.available()


def resolve_backend(name) -> str:
    """The backend that runs for ``name``: 'auto' -> 'cuda' when a GPU answers, else what 'cpu'
    gives; 'cpu' -> 'ort' when onnxruntime imports, else 'numpy' (logged once); 'ort' without
    onnxruntime raises an error naming the package; 'numpy' and 'cuda' as they are."""
    from tx2_infer_core.backends.ort_backend import import_onnxruntime, ort_available
    if name not in BACKENDS:
        raise Tx2InferError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")
    if name == 'auto':
        return 'cuda' if cuda_available() else resolve_backend('cpu')
    if name == 'ort':
        import_onnxruntime()
    if name == 'cpu':
        if ort_available():
            return 'ort'
        if 'cpu_numpy' not in _warned:
            _warned.add('cpu_numpy')
            log.warning('backend cpu: onnxruntime is not installed, running the numpy backend '
                        '(pip install onnxruntime for the faster one)')
        return 'numpy'
    return name


def early_context(backend, backend_options=None):
    """For a cuda ``backend`` ('auto' where a GPU answers): its device's primary context
    started in a thread (``cuda.runtime.EarlyContext``: release it once the engine is made or
    the load failed); else None."""
    if backend != 'cuda' and not (backend == 'auto' and cuda_available()):
        return None
    from tx2_infer_core.cuda.runtime import EarlyContext
    return EarlyContext(int((backend_options or {}).get('device', 0)))


def non_finite_outputs(outputs) -> list:
    """Names of the float outputs in ``outputs`` ({name: array}) holding inf or NaN."""
    return sorted(name for name, array in outputs.items()
                  if np.asarray(array).dtype.kind == 'f' and not np.isfinite(array).all())


class Engine:
    """An optimised graph, its memory plan and a prepared backend.

    ``precision`` is what the backend really computes in (``run_precision``);
    ``options['precision']`` is what the plan was built for (its header). The memory plan is
    checked (``planner.check_plan``, milliseconds) before any backend uses it.
    """

    def __init__(self, graph, memory_plan, options, backend='numpy', backend_options=None):
        self.graph = graph
        self.memory_plan = (memory_plan if isinstance(memory_plan, MemoryPlan)
                            else MemoryPlan.from_dict(memory_plan))
        try:
            check_plan(graph, self.memory_plan)
        except Tx2InferError as exc:
            raise Tx2InferError(f"the memory plan of {options.get('model', graph.name)} is "
                                f'unsafe, refusing to run it: {exc}') from exc
        self.options = options
        self._own_buffers = None  # input_buffers() of a backend without host memory of its own
        self._finite_checks = FINITE_CHECK_RUNS
        name = backend_for(resolve_backend(backend), options.get('precision', 'fp32'))
        self.precision = run_precision(name, options.get('precision', 'fp32'))
        if self.precision != options.get('precision', 'fp32'):
            log.info('the plan was built for %s; the %s backend runs it in %s',
                     options.get('precision'), name, self.precision)
        self.backend = make_backend(name, backend_options)
        self.backend.prepare(graph, self.memory_plan)

    @classmethod
    def build(cls, model_path, input_shape=None, precision='fp32', backend='numpy',
              weights_path=None, optimize=True, backend_options=None, limits=None,
              int8_options=None, range_feeds=None):
        """Import, optimise and plan a model; then prepare ``backend`` for it.

        ``backend``: one of ``BACKENDS`` (``resolve_backend``); the default is the numpy
        oracle. ``backend_options`` go to the backend (cuda: ``conv_path='auto'|'tc'|'simt'``).
        ``limits`` (``Limits``): largest tensor, arena and file accepted (defaults when None).
        ``precision`` 'int8' or 'mixed' calibrates on real frames (``engine_int8.py``,
        ``int8_options``). ``range_feeds`` (cuda, fp16): real inputs (a feeds dict, a list
        of them, or files: a folder of images or an .npz, as a path or ``RangeInputs``,
        ``range_inputs.py``) the FP16 range is measured on; values that would overflow FP16
        are stored rescaled by powers of two (``fp16_range.py``; their exponents in
        ``options['fp16_range']``), those that cannot be are refused (``Fp16RangeError``).
        Any failure is a ``Tx2InferError`` (a bad model: ``ModelFormatError``).
        """
        with own_errors(f'{model_path}: cannot build it', ModelFormatError):
            return cls._build(model_path, input_shape, precision, backend, weights_path,
                              optimize, backend_options, limits, int8_options, range_feeds)

    @classmethod
    def _build(cls, model_path, input_shape, precision, backend, weights_path, optimize,
               backend_options, limits, int8_options=None, range_feeds=None):
        limits = limits or DEFAULT_LIMITS
        if str(model_path).endswith('.tx2plan'):
            return cls.load(model_path, backend, backend_options, limits)
        target = resolve_backend(backend)
        runs = run_precision(target, precision)
        range_feeds = range_source(range_feeds)     # files: checked before any work
        if precision == 'fp16' and target != 'cuda':
            raise Tx2InferError(f"precision fp16 needs the cuda backend; the {target} backend "
                                'runs fp32')
        start = time.perf_counter()
        graph = import_model(model_path, input_shape, weights_path, limits)
        default_meta(graph)
        report = {}
        if optimize:
            from tx2_infer_core.passes import POINTWISE_LEVEL, optimize as run_passes
            # cuda: also pointwise chains as FusedPointwise (numpy runs them; ort does not)
            graph, report = run_passes(graph, POINTWISE_LEVEL if target == 'cuda' else 2)
        scaled = {}
        if range_feeds is not None and runs == 'fp16':
            from tx2_infer_core.fp16_range import fit_range
            graph, scaled = fit_range(graph, range_feeds, report)
        if precision in INT8_PRECISIONS:
            graph, memory_plan, _ = quantize_for_build(
                graph, model_digest(model_path, weights_path), precision, int8_options)
        else:
            memory_plan = plan_memory(graph, ALIGNMENT)
        limits.check_arena(memory_plan.arena_bytes, f'{model_path}: the memory plan')
        in_shape = graph.values[graph.inputs[0]].shape
        options = {'precision': runs, 'backend': plan_target(target), 'model': str(model_path),
                   'input_shape': list(in_shape), 'passes': report,
                   'key': cache_key(model_digest(model_path, weights_path), in_shape,
                                    precision, plan_target(target),
                                    range_digest=feeds_digest(range_feeds))}
        if scaled:
            options['fp16_range'] = scaled
        log.info('built %s in %.2f s: %d nodes, %s', model_path, time.perf_counter() - start,
                 len(graph.nodes), memory_plan.report())
        return cls(graph, memory_plan, options, target, backend_options)

    @classmethod
    def build_cached(cls, model_path, input_shape=None, precision='fp32', backend='numpy',
                     weights_path=None, cache_dir=None, backend_options=None, limits=None,
                     int8_options=None, range_feeds=None):
        """Load the cached plan for this model/shape/precision/target (and ``range_feeds``),
        building it once."""
        from tx2_infer_core.assets import cache_dir as default_cache
        target = resolve_backend(backend)
        key = cache_key(model_digest(model_path, weights_path), input_shape or (), precision,
                        plan_target(target), int8_options if precision in INT8_PRECISIONS
                        else None, feeds_digest(range_feeds))
        folder = Path(cache_dir or default_cache() / 'plans')
        path = folder / f'{Path(model_path).stem}-{key}.tx2plan'
        if path.is_file():
            log.info('loading cached plan %s', path)
            return cls.load(path, target, backend_options, limits)
        engine = cls.build(model_path, input_shape, precision, target, weights_path,
                           backend_options=backend_options, limits=limits,
                           int8_options=int8_options, range_feeds=range_feeds)
        path.parent.mkdir(parents=True, exist_ok=True)
        engine.save(path)
        log.info('cached plan %s', path)
        return engine

    @classmethod
    def load(cls, plan_path, backend='numpy', backend_options=None, limits=None):
        """Load a saved plan without rebuilding (file size and arena within ``limits``)."""
        limits = limits or DEFAULT_LIMITS
        early = early_context(backend, backend_options)  # made while the file is read
        try:
            graph, memory_plan, options = plan_file.load_plan(
                plan_path, max_bytes=limits.max_file_bytes,
                max_arena_bytes=limits.max_arena_bytes)
            with own_errors(f'{plan_path}: the plan does not prepare', PlanFileError):
                marker = verified_marker(plan_path)
                if marker is None or not marker.is_file():
                    verify_shapes(graph, limits, plan_path)   # one reference run: seconds
                    remember(marker)
                return cls(graph, memory_plan, options, backend, backend_options)
        finally:
            if early is not None:
                early.release()

    def save(self, plan_path) -> None:
        """Write this engine's plan to ``plan_path`` (.tx2plan)."""
        plan_file.save_plan(plan_path, self.graph, self.memory_plan.to_dict(), self.options)
        remember(verified_marker(plan_path))   # this engine's own graph: nothing to re-check

    @property
    def input_specs(self):
        return [self.graph.values[n] for n in self.graph.inputs]

    @property
    def output_specs(self):
        return [self.graph.values[n] for n in self.graph.outputs]

    @property
    def meta(self) -> dict:
        return self.graph.meta

    def _check_feeds(self, feeds) -> dict:
        if isinstance(feeds, np.ndarray):
            feeds = {self.graph.inputs[0]: feeds}
        if not isinstance(feeds, dict):
            raise InputError(f'feeds must be a dict of input name -> array (or one array), '
                             f'got {type(feeds).__name__}')
        missing = [n for n in self.graph.inputs if n not in feeds]
        extra = [n for n in feeds if n not in self.graph.inputs]
        if missing or extra:
            raise InputError(f'inputs {sorted(feeds)} do not match the engine inputs '
                             f'{self.graph.inputs} (missing {missing}, unknown {extra})')
        for spec in self.input_specs:
            array = np.asarray(feeds[spec.name])
            if tuple(array.shape) != tuple(spec.shape):
                raise InputError(f"input '{spec.name}' has shape {tuple(array.shape)}, "
                                 f'the engine was built for {tuple(spec.shape)}')
            if array.dtype != np.dtype(spec.dtype):
                raise InputError(f"input '{spec.name}' has dtype {array.dtype}, "
                                 f'the engine expects {spec.dtype}')
        return feeds

    def run(self, feeds, out=None) -> dict:
        """One inference. ``feeds``: {input name: array} or the array of the single input;
        ``out``: {output name: array of the output's shape, float32} to fill (no per-call
        allocation), else the outputs are fresh arrays. A failure inside the run (an index
        out of range in data a model reads as indices) is a ``Tx2InferError`` naming it."""
        feeds, out = self._check_feeds(feeds), self._check_out(out)
        with own_errors(f"{self.options.get('model', 'engine')}: the run failed"):
            outputs = self.backend.run(feeds, out)
        if self._finite_checks:
            self._finite_checks -= 1
            self._warn_non_finite(outputs)
        return outputs

    def _warn_non_finite(self, outputs) -> None:
        """Log once which outputs hold inf or NaN (in FP16: likely values past its range)."""
        bad = non_finite_outputs(outputs)
        if not bad:
            return
        self._finite_checks = 0
        hint = (f' (FP16 holds at most {FP16_MAX:g}: the model computes larger values; the cpu '
                'backend runs FP32)' if self.precision == 'fp16' else '')
        log.warning('%s: outputs %s hold inf or NaN%s', self.options.get('model', 'engine'),
                    bad, hint)

    def input_buffers(self) -> dict:
        """{input name: float32 array} to fill in place and pass to ``run``: on the cuda
        backend the pinned host memory the device reads, so ``run`` copies no input."""
        buffers = self.backend.input_buffers()
        if buffers:
            return buffers
        if self._own_buffers is None:
            self._own_buffers = {s.name: np.zeros(s.shape, s.dtype) for s in self.input_specs}
        return self._own_buffers

    def _check_out(self, out):
        if out is None:
            return None
        if not isinstance(out, dict) or sorted(out) != sorted(self.graph.outputs):
            raise InputError(f'out must be a dict with the outputs {self.graph.outputs}')
        for spec in self.output_specs:
            array = out[spec.name]
            if not isinstance(array, np.ndarray) or tuple(array.shape) != tuple(spec.shape) \
                    or array.dtype != np.float32 or not array.flags.writeable:
                raise InputError(f"out['{spec.name}'] must be a writable float32 array of "
                                 f'shape {tuple(spec.shape)}')
        return out

    def close(self) -> None:
        self.backend.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
