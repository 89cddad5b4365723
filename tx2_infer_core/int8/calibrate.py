"""INT8 calibration: activation thresholds of every FusedConv input over real frames.

Two passes over the calibration frames (``collect``): the first records max|x| of each
tensor, the second a histogram of |x| in ``NUM_BINS`` bins on [0, max]. A threshold per
tensor then comes from one of ``METHODS`` (pure functions of the histogram):

- ``entropy``: TensorRT's classic KL search: for each candidate i >= 128 bins, the reference
  distribution P (bins [0, i), the outliers added to the last bin) is compared with Q, the
  same bins merged into 128 levels and expanded back over P's non-zero bins; both smoothed
  (zero bins get 1e-4, taken from the others); threshold = i * bin width of the minimum KL.
- ``minmax``: max|x|.
- ``percentile``: the ``percentile`` (99.99 by default) of |x|, interpolated in its bin.

The scale of a tensor is ``threshold / 127`` (notes/int8.md). ``calibrate`` is the driver:
it runs the graph on the frames (ONNX Runtime with the wanted tensors as extra outputs, or the
reference interpreter for graphs ONNX cannot hold), with a progress bar on stderr, and keeps
the thresholds in a JSON cache keyed by model, frame set, input shape and method.
"""
import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np

from tx2_infer_core.errors import Tx2InferError

log = logging.getLogger('tx2_infer.int8')

METHODS = ('entropy', 'minmax', 'percentile')
NUM_BINS = 2048
QUANT_LEVELS = 128
DEFAULT_PERCENTILE = 99.99
SMOOTH_EPS = 1e-4
CACHE_VERSION = 1


class CalibrationError(Tx2InferError):
    """Calibration data is missing, too small or unusable, or a calibration option is bad."""


# Pure maths ------------------------------------------------------------------------------------

def abs_histogram(x, top, bins=NUM_BINS) -> np.ndarray:
    """Counts (int64) of |x| in ``bins`` equal bins on [0, ``top``]; values above go last."""
    values = np.abs(np.asarray(x, np.float32)).ravel()
    if top <= 0:
        counts = np.zeros(bins, np.int64)
        counts[0] = values.size
        return counts
    index = np.minimum((values * np.float32(bins / top)).astype(np.int64), bins - 1)
    return np.bincount(index, minlength=bins).astype(np.int64)


def smooth(counts, eps=SMOOTH_EPS) -> np.ndarray:
    """Histogram ``counts`` with each zero bin at ``eps``, the mass taken evenly from the
    non-zero bins (on counts, as TensorRT and MXNet do, so no bin goes negative)."""
    counts = np.asarray(counts, np.float64)
    zeros = counts == 0
    n_zero = int(zeros.sum())
    if n_zero == 0 or n_zero == counts.size:
        return counts
    take = eps * n_zero / (counts.size - n_zero)
    return np.where(zeros, eps, np.maximum(counts - take, eps * 1e-3))


def kl_divergence(p, q) -> float:
    """KL(p || q) of two histograms of the same support, each normalised to sum 1 (q > 0
    where p > 0)."""
    p = p / p.sum()
    q = q / q.sum()
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def merge_expand(hist, levels=QUANT_LEVELS) -> np.ndarray:
    """``hist`` merged into ``levels`` groups of len(hist) // levels bins (the last takes the
    rest), each group's sum spread evenly over its non-zero bins."""
    n = len(hist)
    starts = np.arange(levels) * (n // levels)
    sizes = np.diff(np.append(starts, n))
    nonzero = (hist != 0).astype(np.float64)
    sums = np.add.reduceat(hist.astype(np.float64), starts)
    counts = np.add.reduceat(nonzero, starts)
    mean = np.divide(sums, counts, out=np.zeros(levels), where=counts > 0)
    return np.repeat(mean, sizes) * nonzero


def entropy_threshold(hist, top, levels=QUANT_LEVELS) -> float:
    """TensorRT's KL threshold of a |x| histogram on [0, ``top``] (see the module doc)."""
    hist = np.asarray(hist, np.float64)
    n = len(hist)
    if top <= 0 or hist.sum() == 0:
        return float(top)
    tail = np.cumsum(hist[::-1])[::-1]         # tail[i] = sum(hist[i:])
    best_i, best_kl = n, np.inf
    for i in range(levels, n + 1):
        p = hist[:i].copy()
        if i < n:
            p[-1] += tail[i]
        if p.sum() == 0:
            continue
        q = merge_expand(hist[:i], levels)
        if q.sum() == 0:
            continue
        kl = kl_divergence(smooth(p), smooth(q))
        if kl < best_kl:
            best_i, best_kl = i, kl
    return float(best_i * top / n)


def percentile_threshold(hist, top, percentile=DEFAULT_PERCENTILE) -> float:
    """The ``percentile`` of |x| from its histogram on [0, ``top``], linear inside its bin."""
    if not 0 < percentile <= 100:
        raise CalibrationError(f'percentile must be in (0, 100], got {percentile}')
    hist = np.asarray(hist, np.float64)
    total = hist.sum()
    if top <= 0 or total == 0:
        return float(top)
    width = top / len(hist)
    cum = np.cumsum(hist)
    target = total * percentile / 100.0
    k = int(np.searchsorted(cum, target))
    k = min(k, len(hist) - 1)
    below = cum[k - 1] if k else 0.0
    frac = (target - below) / hist[k] if hist[k] else 1.0
    return float(min(top, (k + frac) * width))


def threshold(hist, top, method, percentile=DEFAULT_PERCENTILE) -> float:
    """The threshold of one tensor by ``method`` (one of ``METHODS``)."""
    if method == 'entropy':
        return entropy_threshold(hist, top)
    if method == 'minmax':
        return float(top)
    if method == 'percentile':
        return percentile_threshold(hist, top, percentile)
    raise CalibrationError(f"unknown calibration method {method!r}; choose one of "
                           f"{', '.join(METHODS)}")


def scale_of(threshold_value) -> float:
    """The activation scale of a threshold: threshold / 127 (1.0 for an all-zero tensor)."""
    return float(threshold_value) / 127.0 if threshold_value > 0 else 1.0


# Running the graph -----------------------------------------------------------------------------

def conv_inputs(graph, ops=('FusedConv',)) -> list:
    """The activation input (input 0) of every ``ops`` node, each tensor once, graph order."""
    names = []
    for node in graph.nodes:
        if node.op in ops and node.inputs[0] not in names:
            names.append(node.inputs[0])
    return names


def tensor_runner(graph, tensors):
    """A function feeds -> {tensor: array} for ``tensors`` of ``graph``: ONNX Runtime with them
    as extra outputs when the graph exports to ONNX, else the reference interpreter."""
    from tx2_infer_core.reference import execute
    wanted = [t for t in tensors if t not in graph.inputs]

    def run_reference(feeds):
        env = execute(graph, feeds, keep_all=True)
        return {t: env[t] for t in tensors}
    try:
        import onnxruntime as ort
        from tx2_infer_core.onnx_export import value_info, to_onnx
        model = to_onnx(graph)
        known = {o.name for o in model.graph.output}
        model.graph.output.extend(value_info(graph.values[t]) for t in wanted
                                  if t not in known)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=['CPUExecutionProvider'])
    except ImportError:
        return run_reference
    except Exception as exc:  # noqa: BLE001 - e.g. a fused op ONNX cannot hold: the oracle runs it
        log.info('calibration runs the reference interpreter: %s: %s', type(exc).__name__,
                 str(exc).splitlines()[0][:200])
        return run_reference

    def run_ort(feeds):
        got = dict(zip(wanted, session.run(wanted, feeds)))
        got.update({t: feeds[t] for t in tensors if t in graph.inputs})
        return got
    return run_ort


def progress(iterable, desc, total=None):
    """A plain progress bar on stderr (tqdm; silent when stderr is not a terminal)."""
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, total=total, unit='frame', leave=False, disable=None,
                file=sys.stderr)


def collect(run, feeds_list, tensors, bins=NUM_BINS, show=progress) -> dict:
    """{tensor: (histogram of |x|, max|x|)} over ``feeds_list`` (two passes: max, then
    histogram on [0, max]); ``run`` as from ``tensor_runner``."""
    tops = {t: 0.0 for t in tensors}
    for feeds in show(feeds_list, 'calibrate: ranges', len(feeds_list)):
        for name, array in run(feeds).items():
            tops[name] = max(tops[name], float(np.max(np.abs(array))))
    hists = {t: np.zeros(bins, np.int64) for t in tensors}
    for feeds in show(feeds_list, 'calibrate: histograms', len(feeds_list)):
        for name, array in run(feeds).items():
            hists[name] += abs_histogram(array, tops[name], bins)
    return {t: (hists[t], tops[t]) for t in tensors}


def thresholds_of(stats, method, percentile=DEFAULT_PERCENTILE) -> dict:
    """{tensor: threshold} of ``collect``'s stats by ``method``."""
    return {t: threshold(h, top, method, percentile) for t, (h, top) in stats.items()}


# The cache -------------------------------------------------------------------------------------

def cache_key(model_digest, frames_digest, input_shape, method,
              percentile=DEFAULT_PERCENTILE) -> str:
    """Key of a calibration: model, frame set, input shape and method (with its percentile)."""
    shape = 'x'.join(str(d) for d in input_shape)
    extra = f'p{percentile}' if method == 'percentile' else ''
    text = f'v{CACHE_VERSION}|{model_digest}|{frames_digest}|{shape}|{method}{extra}'
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cache_path(key, cache_dir=None) -> Path:
    """Where the calibration of ``key`` is kept (``<cache>/calibration/<key>.json``)."""
    from tx2_infer_core.assets import cache_dir as default_cache
    return Path(cache_dir or default_cache()) / 'calibration' / f'{key}.json'


def load_cached(path):
    """The cached {tensor: threshold} at ``path``, or None when absent or unreadable."""
    try:
        with open(path) as f:
            data = json.load(f)
        return {str(k): float(v) for k, v in data['thresholds'].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def save_cached(path, thresholds, info) -> None:
    """Write {tensor: threshold} and ``info`` (what the key was made of) as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix('.part')
    tmp.write_text(json.dumps({'info': info, 'thresholds': thresholds}, indent=1,
                              sort_keys=True))
    tmp.replace(path)


def calibrate(graph, feeds_list, method='entropy', model_digest='', frames_digest='',
              percentile=DEFAULT_PERCENTILE, cache_dir=None, use_cache=True, show=progress):
    """{tensor: threshold} of every FusedConv input of ``graph`` (optimised) over the
    preprocessed ``feeds_list``; returns (thresholds, info) where ``info`` says the method,
    the cache key and whether the cache answered. The cache is used when both digests are
    given and ``use_cache``."""
    if method not in METHODS:
        threshold(np.zeros(1), 0, method)       # raises the error naming the methods
    tensors = conv_inputs(graph)
    shape = graph.values[graph.inputs[0]].shape
    key = cache_key(model_digest, frames_digest, shape, method, percentile)
    info = {'method': method, 'key': key, 'frames': len(feeds_list), 'cached': False}
    if method == 'percentile':
        info['percentile'] = percentile
    path = cache_path(key, cache_dir)
    cacheable = use_cache and model_digest and frames_digest
    if cacheable:
        found = load_cached(path)
        if found is not None and set(found) >= set(tensors):
            info['cached'] = True
            return {t: found[t] for t in tensors}, info
    if not feeds_list:
        raise CalibrationError('no calibration frames: give a folder of images')
    stats = collect(tensor_runner(graph, tensors), feeds_list, tensors, show=show)
    result = thresholds_of(stats, method, percentile)
    if cacheable:
        save_cached(path, result, dict(info, model=model_digest, frames_digest=frames_digest,
                                       input_shape=list(shape)))
    return result, info
