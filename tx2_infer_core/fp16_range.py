"""FP16 range at build: measure every activation on real inputs, rescale what would overflow.

The CUDA arena holds FP16 (at most 65504). ``fit_fp16(graph, feeds)`` runs the reference on
real inputs (a spectrogram front end's power spectrum reaches ~1e12 on speech), and every value
whose largest magnitude comes within ``MARGIN`` of that limit is stored times a power of two
that brings it to ``FP16_MAX / HEADROOM`` (``passes/fp16_scale.py``: exact in real numbers,
undone where the FP32 registers of a fused kernel read it). A value past 65504 that no rescale
can reach is refused by name with its range; one only within the margin is logged and kept.
"""
import logging
import math

import numpy as np

from tx2_infer_core import reference
from tx2_infer_core.errors import Fp16RangeError, InputError
from tx2_infer_core.passes.fp16_scale import apply_exponents, plan_exponents, scale_classes

log = logging.getLogger('tx2_infer.fp16_range')

FP16_MAX = 65504.0
MARGIN = 2.0        # rescale a value whose magnitude passes FP16_MAX / MARGIN on these inputs
HEADROOM = 16.0     # to at most FP16_MAX / HEADROOM: louder inputs than these still fit


def value_ranges(graph, feeds_list) -> dict:
    """{float activation: largest finite |value|} over runs of ``graph`` on each feeds dict."""
    ranges = {}

    def observe(name, value):
        value = np.asarray(value)
        if value.dtype.kind != 'f' or not value.size:
            return
        finite = np.abs(value[np.isfinite(value)])
        peak = float(finite.max()) if finite.size else 0.0
        ranges[name] = max(ranges.get(name, 0.0), peak)
    for feeds in feeds_list:
        reference.execute(graph, feeds, observe=observe)
    return ranges


def check_range_feeds(graph, feeds) -> None:
    """Refuse (``InputError``) range inputs that are not the graph's inputs, in its shapes."""
    if not isinstance(feeds, dict) or sorted(feeds) != sorted(graph.inputs):
        raise InputError(f'range inputs must be dicts of the inputs {graph.inputs}')
    for name in graph.inputs:
        spec, array = graph.values[name], np.asarray(feeds[name])
        if tuple(array.shape) != tuple(spec.shape) or array.dtype != np.dtype(spec.dtype):
            raise InputError(f"range input '{name}' is {array.dtype} {tuple(array.shape)}, the "
                             f'model takes {spec.dtype} {tuple(spec.shape)}')


def scale_demands(ranges) -> dict:
    """{value: k}: store the value times 2**-k, the least k that brings it to FP16_MAX /
    HEADROOM, for the values past FP16_MAX / MARGIN."""
    return {name: math.ceil(math.log2(peak * HEADROOM / FP16_MAX))
            for name, peak in ranges.items() if peak > FP16_MAX / MARGIN}


def fit_fp16(graph, feeds) -> tuple:
    """``(graph rescaled, {value: exponent})`` (a copy; ``graph`` itself when nothing needs
    it) so that every activation stays within FP16 on ``feeds`` (a feeds dict or a list of
    them). Raises ``Fp16RangeError`` naming a value past FP16 that cannot be rescaled."""
    feeds_list = [feeds] if isinstance(feeds, dict) else list(feeds)
    for one in feeds_list:
        check_range_feeds(graph, one)
    ranges = value_ranges(graph, feeds_list)
    demands = scale_demands(ranges)
    if not demands:
        return graph, {}
    classes = scale_classes(graph)
    exponents, refused = plan_exponents(graph, demands, classes)
    groups = {}
    for name in demands:
        groups.setdefault(classes.get(name, name), []).append(name)
    for root, reason in refused.items():
        _refuse_or_log(reason, ranges, groups[root])
    graph = graph.copy()
    changed = apply_exponents(graph, exponents)
    for root, names in groups.items():
        top = max(names, key=ranges.get)
        if root not in refused:
            log.info("fp16 range: '%s' reaches %.3g on the range inputs: stored times 2^%d, "
                     'with %d values of its class', top, ranges[top], exponents[top],
                     sum(classes.get(n) == root for n in exponents))
    log.info('fp16 range: %d values rescaled, %d nodes rewritten', len(exponents), changed)
    past = {n: p for n, p in value_ranges(graph, feeds_list).items() if p > FP16_MAX}
    if past:        # a guard: the rewrite is exact, so nothing should be left here
        name = max(past, key=past.get)
        raise Fp16RangeError(f"value '{name}' still reaches {past[name]:.3g} after the FP16 "
                             'rescale')
    return graph, exponents


def fit_range(graph, range_feeds, report) -> tuple:
    """``fit_fp16`` for ``Engine.build``: ``range_feeds`` may be files (``range_inputs.py``,
    read for this graph); the count of rescaled values goes in the passes ``report``;
    the exponents come back sorted by value name."""
    from tx2_infer_core.range_inputs import feeds_of
    graph, scaled = fit_fp16(graph, feeds_of(range_feeds, graph))
    report['fp16_range'] = len(scaled)
    return graph, dict(sorted(scaled.items()))


def _refuse_or_log(reason, ranges, names) -> None:
    top = max(names, key=lambda n: ranges.get(n, 0.0))
    peak = ranges.get(top, 0.0)
    message = (f"value '{top}' reaches {peak:.3g} on the range inputs (FP16 holds at most "
               f'{FP16_MAX:g}) and cannot be rescaled: {reason}')
    if peak > FP16_MAX:
        raise Fp16RangeError(message)
    log.warning('fp16 range: %s; kept as it is', message)
