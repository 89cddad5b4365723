"""Per-layer INT8 sensitivity and the mixed-precision schedule under an accuracy budget.

Metric (``Evaluator.agreement``, 1.0 = the FP32 results exactly): for a detector, mAP@0.5 of
the INT8 detections with the FP32 detections as ground truth (both decoded by the model's head,
``heads.decode``, as the Detector does); for a classifier, the fraction of frames whose top-1
class is the FP32 one. The loss of a schedule is ``1 - agreement``.

``choose_schedule``:
1. sensitivity of each FusedConv: the loss with that layer alone in INT8 (the exact numpy
   emulation, ``int8/build.py``), on the calibration frames, with the scale of the
   calibration method that loses least and, among equals, disturbs the raw outputs least
   (relative L2 against FP32: on a few frames most layers alone lose nothing of a detector's
   mAP, and the error still tells the methods apart);
2. gain of each layer: the GPU time it saves in INT8 when a table is given (``timings``:
   {layer: ms saved}), else its FLOPs as the proxy (``gain_source: 'flops'``); a layer that
   saves nothing is never INT8;
3. greedy by gain per loss, best first: a layer joins while the sum of the chosen layers'
   losses stays within ``budget`` (default 0.005: 0.5% of the metric);
4. the whole schedule is verified on the held-out frames; over the budget, the longest
   prefix of the greedy order that keeps it is found by bisection (the empty prefix always
   does), each step verified: a few held-out runs, not one a dropped layer.
Every choice is logged (``tx2_infer.int8``) and kept in the returned ``decisions``.
"""
import logging

import numpy as np

from tx2_infer_core import heads
from tx2_infer_core.detect_params import DEFAULTS
from tx2_infer_core.flops import graph_flops
from tx2_infer_core.int8.build import build_quantized
from tx2_infer_core.int8.quant_math import scale_from_threshold
from tx2_infer_core.int8.schedule import LayerQuant
from tx2_infer_core.metrics import map50
from tx2_infer_core.passes.quantize import decline_reason
from tx2_infer_core.reference import execute

log = logging.getLogger('tx2_infer.int8')

DEFAULT_BUDGET = 0.005
TINY_LOSS = 1e-6        # a loss-free layer's ratio: gain / TINY_LOSS


def full_schedule(graph, thresholds) -> dict:
    """{FusedConv name: LayerQuant} for every FusedConv the quantize pass accepts (the
    ``int8`` precision: every layer the kernels support)."""
    schedule = {}
    for node in graph.nodes:
        if node.op != 'FusedConv' or node.inputs[0] not in thresholds:
            continue
        lq = LayerQuant(float(scale_from_threshold(thresholds[node.inputs[0]])))
        if not decline_reason(graph, node, lq):
            schedule[node.name] = lq
    return schedule


def node_key(node):
    return (node.op, tuple(node.inputs), tuple(node.outputs))


def execute_changed(graph, fp32_env, fp32_keys) -> dict:
    """The outputs of ``graph`` (an INT8 rewrite of the FP32 graph) recomputing only the nodes
    that changed or read a changed value; the others' values come from ``fp32_env`` (every
    value of the FP32 run). Exact: the same reference ops either way."""
    from tx2_infer_core.ops import run_node
    env = dict(graph.weights)
    dirty = set()
    for node in graph.nodes:
        if node_key(node) in fp32_keys and not dirty.intersection(node.inputs):
            continue
        args = []
        for name in node.inputs:
            if not name:
                args.append(None)
            else:
                args.append(env[name] if name in env else fp32_env[name])
        for name, value in zip(node.outputs, run_node(node, args)):
            if name:
                env[name] = value
                dirty.add(name)
    return {name: env[name] if name in env else fp32_env[name] for name in graph.outputs}


class Evaluator:
    """Agreement of INT8 schedules with FP32 on fixed frames (preprocessed feeds).

    The FP32 run of every frame is kept whole (``keep``, the default, when it fits
    ``max_bytes``), so a schedule recomputes only what it changes.
    """

    def __init__(self, graph, feeds_list, params=DEFAULTS, max_bytes=3 << 30):
        self.graph, self.feeds, self.params = graph, list(feeds_list), params
        self.head = graph.meta.get('head') or {'type': 'none'}
        self.keys = {node_key(n) for n in graph.nodes}
        self.envs, self.truth, self.raw, size = [], [], [], 0
        for feeds in self.feeds:
            env = execute(graph, feeds, keep_all=True)
            size += sum(np.asarray(v).nbytes for v in env.values())
            self.truth.append(self.results({n: env[n] for n in graph.outputs}))
            self.raw.append({n: np.asarray(env[n], np.float64) for n in graph.outputs})
            self.envs.append(env if size <= max_bytes else None)

    def results(self, outputs):
        """Decoded results of one frame: [[x1, y1, x2, y2, score, class]] (a classifier: its
        top-1 class id; a model without a head: its raw outputs)."""
        head_type = self.head.get('type')
        if head_type == 'classifier':
            scores = heads.classifier_scores(outputs, self.head)
            return int(np.argmax(scores))
        if head_type in (None, 'none'):
            return [np.asarray(outputs[n]) for n in self.graph.outputs]
        p = self.params
        boxes, scores, ids = heads.decode(outputs, self.head, p.conf_threshold,
                                          p.iou_threshold, p.max_detections, p.classes)
        return np.column_stack([boxes, scores, ids]) if len(scores) else np.zeros((0, 6))

    def metric(self, results) -> float:
        """Agreement of ``results`` (one per frame) with the FP32 ones."""
        head_type = self.head.get('type')
        if head_type == 'classifier':
            return float(np.mean([a == b for a, b in zip(results, self.truth)]))
        if head_type in (None, 'none'):       # no head: 1 - worst relative output error
            errs = [max(float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))
                        for a, b in zip(r, t)) for r, t in zip(results, self.truth)]
            return 1.0 - min(1.0, max(errs))
        return map50(list(results), list(self.truth))

    def outputs(self, schedule):
        """The INT8 outputs of every frame under ``schedule`` (a generator)."""
        graph, _ = build_quantized(self.graph, schedule)
        for feeds, env in zip(self.feeds, self.envs):
            if env is None:
                yield execute(graph, feeds)
            else:
                yield execute_changed(graph, env, self.keys)

    def error(self, outputs) -> float:
        """Mean over the frames of the relative L2 error of ``outputs`` (raw, one {name:
        array} a frame) against the FP32 ones."""
        errors = []
        for out, ref in zip(outputs, self.raw):
            diff = sum(float(np.sum((np.asarray(out[n], np.float64) - r) ** 2))
                       for n, r in ref.items())
            norm = sum(float(np.sum(r * r)) for r in ref.values())
            errors.append(np.sqrt(diff / max(norm, 1e-30)))
        return float(np.mean(errors))

    def measure(self, schedule) -> tuple:
        """(agreement, output error) of ``schedule`` ({name: LayerQuant}) on these frames."""
        if not any(lq.int8 for lq in schedule.values()):
            return 1.0, 0.0
        outs = [{n: out[n] for n in self.graph.outputs} for out in self.outputs(schedule)]
        return self.metric([self.results(out) for out in outs]), self.error(outs)

    def agreement(self, schedule) -> float:
        """The metric of ``schedule`` ({name: LayerQuant}) on these frames."""
        return self.measure(schedule)[0]


def layer_gains(graph, names, timings=None) -> tuple:
    """({layer: gain}, source): the ms saved per layer from ``timings`` ({layer: ms saved};
    a layer it lacks gains 0), else FLOPs (source 'flops')."""
    if timings is not None:
        return {n: float(timings.get(n, 0.0)) for n in names}, 'measured'
    flops = graph_flops(graph)
    return {n: float(flops[n]) for n in names}, 'flops'


def ratio(gain, loss) -> float:
    return gain / max(loss, TINY_LOSS)


def sensitivities(evaluator, schedule, show=None) -> dict:
    """{layer: (loss, output error) with that layer alone in INT8}."""
    names = list(schedule)
    items = show(names, 'sensitivity', len(names)) if show else names
    measured = {n: evaluator.measure({n: schedule[n]}) for n in items}
    return {n: (1.0 - agreement, error) for n, (agreement, error) in measured.items()}


def greedy(candidates, gains, losses, budget, decisions) -> list:
    """Layers by gain per loss, best first, each taken while the summed loss fits."""
    order = sorted(candidates, key=lambda n: (-ratio(gains[n], losses[n]), -gains[n], n))
    chosen, total = [], 0.0
    for name in order:
        if gains[name] <= 0:
            why = 'no speed gain'
        elif total + losses[name] > budget:
            why = (f'loss {losses[name]:.4f} would take the estimate to '
                   f'{total + losses[name]:.4f} > budget {budget}')
        else:
            total += losses[name]
            chosen.append(name)
            why = f'gain/loss {ratio(gains[name], losses[name]):.3g}, estimate {total:.4f}'
        decisions.append({'layer': name, 'step': 'greedy',
                          'int8': name in chosen, 'why': why})
        log.info('%s: %s (%s)', name, 'int8' if name in chosen else 'float', why)
    return chosen


def best_per_layer(evaluator, schedules, show=None) -> tuple:
    """Per layer, the calibration method whose scale loses least alone in INT8, then changes
    the outputs least: ({layer: LayerQuant}, {layer: loss}, {layer: output error}, {layer:
    method}); ``schedules``: {method: full schedule}, earlier methods win exact ties."""
    best, scores, methods = {}, {}, {}
    for method, schedule in schedules.items():
        for name, score in sensitivities(evaluator, schedule, show).items():
            if name not in scores or score < scores[name]:
                best[name], scores[name], methods[name] = schedule[name], score, method
    losses = {n: loss for n, (loss, _) in scores.items()}
    errors = {n: error for n, (_, error) in scores.items()}
    return best, losses, errors, methods


def longest_prefix(held, full, order, budget, decisions) -> tuple:
    """The longest prefix of ``order`` (the greedy's choice, best first) whose loss on the
    ``held`` frames is within ``budget``, and that loss: bisection between the empty prefix
    (loss 0) and the whole one (over the budget), each step verified and logged."""
    good, good_loss, bad = 0, 0.0, len(order)
    while bad - good > 1:
        mid = (good + bad) // 2
        loss = 1.0 - held.agreement({n: full[n] for n in order[:mid]})
        log.info('back-off: the first %d of %d layers: held-out loss %.4f', mid, len(order),
                 loss)
        if loss <= budget:
            good, good_loss = mid, loss
        else:
            bad = mid
    for name in order[good:]:
        why = (f'held-out loss over budget {budget} with it; the first {good} layers of the '
               f'greedy order keep {good_loss:.4f}')
        decisions.append({'layer': name, 'step': 'back-off', 'int8': False, 'why': why})
        log.info('%s: back to float (%s)', name, why)
    return order[:good], good_loss


def choose_schedule(graph, thresholds, calib_feeds, held_out_feeds, budget=DEFAULT_BUDGET,
                    timings=None, params=DEFAULTS, show=None) -> tuple:
    """The mixed schedule (module doc). ``thresholds``: {method: {tensor: threshold}} (each
    layer takes the method that loses least) or one {tensor: threshold}. Returns (schedule,
    report) where ``report`` has the per-layer table (``layers``), ``decisions``,
    ``gain_source`` and the held-out agreement."""
    if thresholds and all(isinstance(v, dict) for v in thresholds.values()):
        schedules = {m: full_schedule(graph, th) for m, th in thresholds.items()}
    else:
        schedules = {'given': full_schedule(graph, thresholds)}
    full, losses, errors, methods = best_per_layer(Evaluator(graph, calib_feeds, params),
                                                   schedules, show)
    gains, source = layer_gains(graph, list(full), timings)
    decisions = []
    chosen = greedy(list(full), gains, losses, budget, decisions)
    held = Evaluator(graph, held_out_feeds, params)
    measured = 1.0 - held.agreement({n: full[n] for n in chosen})
    if measured > budget:
        chosen, measured = longest_prefix(held, full, chosen, budget, decisions)
    schedule = {n: full[n] for n in chosen}
    layers = [{'layer': n, 'method': methods[n], 'x_scale': full[n].x_scale,
               'sensitivity': losses[n], 'output_error': errors[n], 'gain': gains[n],
               'int8': n in schedule} for n in full]
    report = {'budget': budget, 'gain_source': source, 'held_out_loss': measured,
              'held_out_agreement': 1.0 - measured, 'frames': {
                  'calibration': len(calib_feeds), 'held_out': len(held_out_feeds)},
              'layers': layers, 'decisions': decisions}
    return schedule, report
