"""Latency summary shared by the bench scripts (numpy only, so torch-only children can use it)."""
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
