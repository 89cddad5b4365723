"""Helpers shared by the bench scripts: latency summaries, timing loops, the machine and the
versions measured, JSON result files.

Only numpy is imported here, so the torch-only child (``bench_torch.py``) can use it too;
pycuda is imported by the functions that need it.
"""
import importlib.metadata
import json
import platform
import subprocess
import time
from pathlib import Path

import numpy as np


def stats(times, mean=False, minimum=False) -> dict:
    """Median, p99 (and, when asked, mean and min) in ms, and the count, of a list of
    milliseconds."""
    t = np.asarray(times, np.float64)
    out = dict(median_ms=float(np.median(t)), p99_ms=float(np.percentile(t, 99)))
    if mean:
        out['mean_ms'] = float(t.mean())
    if minimum:
        out['min_ms'] = float(t.min())
    out['runs'] = int(t.size)
    return out


def wall_times(fn, runs, warmup) -> list:
    """Host wall-clock milliseconds of each of ``runs`` calls of ``fn()``, after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def event_times(drv, stream, launch, runs, warmup) -> list:
    """CUDA-event milliseconds of each ``launch()`` on a pycuda ``stream`` (synchronised after
    each), after ``warmup`` launches; ``drv`` is ``pycuda.driver``, its context current."""
    for _ in range(warmup):
        launch()
    stream.synchronize()
    start, end, times = drv.Event(), drv.Event(), []
    for _ in range(runs):
        start.record(stream)
        launch()
        end.record(stream)
        end.synchronize()
        times.append(end.time_since(start))
    return times


def command_output(cmd) -> str:
    """Stripped stdout of ``cmd`` ('' when it cannot run), e.g. ``nvidia-smi`` queries."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ''


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (else what ``platform`` knows)."""
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or 'unknown'


def gpu_facts(drv) -> dict:
    """Device 0's name, compute capability, driver (nvidia-smi) and CUDA driver API version;
    ``drv`` is ``pycuda.driver``."""
    drv.init()
    dev = drv.Device(0)
    driver = command_output(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'])
    return dict(device=dev.name(), compute_capability='%d.%d' % dev.compute_capability(),
                driver=driver.splitlines()[0] if driver else '',
                cuda_driver_api=drv.get_driver_version())


def versions(*dists) -> dict:
    """{'python': version, dist: installed version or 'not installed'} for each distribution
    name (as pip knows it: 'numpy', 'onnxruntime', 'opencv-python-headless', 'pycuda')."""
    out = {'python': platform.python_version()}
    for dist in dists:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = 'not installed'
    return out


def write_json(path, doc, indent=1) -> Path:
    """Write ``doc`` as JSON to ``path`` (parent folders made), newline-terminated."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=indent) + '\n')
    return path
