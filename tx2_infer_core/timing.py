"""Latency measurement shared by ``tx2-infer bench`` and ``bench/``: median and p99 in ms."""
import time
from pathlib import Path

import numpy as np

from tx2_infer_core import detect


def bench_input(engine, image=None):
    """Feeds for benchmarking: a real BGR photo if given, else a grey image, preprocessed."""
    spec = engine.input_specs[0]
    if image is None:
        image = np.full((480, 640, 3), 114, dtype=np.uint8)
    tensor, _ = detect.preprocess(image, spec.shape, engine.meta.get('input_format'))
    return {spec.name: tensor.astype(spec.dtype)}


def time_runs(run, feeds, runs, warmup, progress=None):
    """Milliseconds of each of ``runs`` calls of run(feeds), after ``warmup`` calls.

    ``progress(iterable, desc)`` may wrap the timed loop (a progress bar).
    """
    for _ in range(warmup):
        run(feeds)
    times = []
    loop = progress(range(runs), 'timing') if progress else range(runs)
    for _ in loop:
        start = time.perf_counter()
        run(feeds)
        times.append((time.perf_counter() - start) * 1e3)
    return np.asarray(times)


def timing_line(name, times):
    """'name  median X ms  p99 Y ms  (N runs)'."""
    return (f'{name:<22} median {np.median(times):8.2f} ms   p99 '
            f'{np.percentile(times, 99):8.2f} ms   ({len(times)} runs)')


def ort_runner(engine, model_path):
    """run(feeds) of ONNX Runtime on the same model (the ONNX file, or the graph exported)."""
    import onnxruntime as ort
    model = str(model_path)
    if Path(model_path).suffix != '.onnx':
        from tx2_infer_core.onnx_export import to_onnx
        model = to_onnx(engine.graph).SerializeToString()
    session = ort.InferenceSession(model, providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    return lambda feeds: session.run(names, feeds)
