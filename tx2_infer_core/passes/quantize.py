"""Rewrite the FusedConv nodes an INT8 schedule chooses into FusedConvInt8 (notes/int8.md).

Pattern and rewrite (``s`` = the schedule's ``x_scale`` of the conv)::

    x (float32) -> FusedConv(w, b) -> y
        becomes
    x -> QuantizeLinear(s, zero point int8 0) -> x_q (int8) -> FusedConvInt8(w_q, b_q) -> y

    int8 conv P -> y -> int8 convs C1, C2 (every reader of y, each reading it as its input x,
                                            all with one x_scale s)
        becomes
    FusedConvInt8 P (out_scale = s) -> y (int8) -> FusedConvInt8 C1, C2 (x_scale = s)

Otherwise an int8 conv writes float32 (``out_scale`` 0: the dequantisation is its epilogue), so
every float reader is unchanged and no DequantizeLinear is needed; residuals stay float. One
QuantizeLinear serves every int8 reader of a float value with the same scale. ``w_q`` (int8,
per-output-channel scales) and ``b_q`` (int32) are new weights (``int8/quant_math.py``).

Safety: the node is a FusedConv (ConvTranspose is not quantised) over a float32 activation, with
constant 4-D float weights and a constant bias, ``w_scales`` (if given) has one scale per
output channel, and its activation is not PRelu (the int8 epilogue has no slope input).
Anything else is declined, with the reason, in ``graph.meta['int8']``.
"""
import logging

import numpy as np

from tx2_infer_core.int8 import quant_math
from tx2_infer_core.int8.schedule import schedule_to_json
from tx2_infer_core.ir import Node, Value
from tx2_infer_core.passes.graph_edit import add_weight, constant, rewrite_nodes, unique_name

log = logging.getLogger('tx2_infer.passes')

INT8_CONV, QUANTIZE = 'FusedConvInt8', 'QuantizeLinear'


def decline_reason(graph, node, lq) -> str:
    """Why ``node`` cannot run as an int8 conv with ``lq`` ('' when it can)."""
    if node.op != 'FusedConv':
        return f'{node.op} is not quantised (FusedConv only)'
    w = constant(graph, node.inputs[1])
    b_name = node.inputs[2] if len(node.inputs) > 2 else ''
    x = graph.values.get(node.inputs[0])
    if w is None or w.dtype.kind != 'f':
        return 'the weights are not a constant float tensor'
    if w.ndim != 4:
        return f'not a 2-D convolution (weight shape {tuple(w.shape)})'
    if b_name and constant(graph, b_name) is None:
        return 'the bias is not constant'
    if x is None or node.inputs[0] in graph.weights:
        return 'the input is a constant or has no recorded shape'
    if x.dtype != 'float32':
        return f'the input is {x.dtype}, not float32'
    if lq.w_scales is not None and len(lq.w_scales) != w.shape[0]:
        return f'{len(lq.w_scales)} weight scales for {w.shape[0]} output channels'
    if node.attrs.get('activation') == 'PRelu':
        return 'a PRelu activation (its slope per channel) is not quantised'
    return ''


def choose(graph, schedule) -> tuple:
    """``({node name: (node, LayerQuant)} to quantise, {name: why declined})``."""
    nodes = {n.name: n for n in graph.nodes}
    chosen, declined = {}, {}
    for name, lq in schedule.items():
        if not lq.int8:
            continue
        node = nodes.get(name)
        why = 'no node of that name' if node is None else decline_reason(graph, node, lq)
        if why:
            declined[name] = why
        else:
            chosen[name] = (node, lq)
    return chosen, declined


def x_scale_of(lq) -> float:
    """The input scale as the float32 number every part uses."""
    return float(np.float32(lq.x_scale))


def int8_links(graph, chosen) -> dict:
    """{value: scale} of the int8 conv outputs that stay int8: every reader is a chosen conv
    reading it as its input x (only), all with one x_scale, and it is no graph output."""
    consumers, links = graph.consumers(), {}
    for node, _ in chosen.values():
        y = node.outputs[0]
        readers = consumers.get(y, [])
        if y in graph.outputs or not readers:
            continue
        if any(r.name not in chosen or r.inputs[0] != y or y in r.inputs[1:] for r in readers):
            continue
        scales = {x_scale_of(chosen[r.name][1]) for r in readers}
        if len(scales) == 1:
            links[y] = scales.pop()
    return links


def int8_conv(graph, node, lq, x_name, out_scale) -> Node:
    """The FusedConvInt8 replacing FusedConv ``node`` (its int8 weights added to ``graph``)."""
    w = np.asarray(graph.weights[node.inputs[1]], np.float32)
    w_scales = (quant_math.weight_scales(w) if lq.w_scales is None
                else np.asarray(lq.w_scales, np.float32))
    x_scale = x_scale_of(lq)
    inputs = [x_name, add_weight(graph, f'{node.name}_w_int8',
                                 quant_math.quantize_weights(w, w_scales))]
    b_name = node.inputs[2] if len(node.inputs) > 2 else ''
    inputs.append(add_weight(graph, f'{node.name}_b_int32', quant_math.quantize_bias(
        graph.weights[b_name], x_scale, w_scales)) if b_name else '')
    inputs += node.inputs[3:]
    attrs = dict(node.attrs, x_scale=x_scale, w_scales=[float(s) for s in w_scales],
                 out_scale=float(out_scale))
    return Node(INT8_CONV, node.name, inputs, list(node.outputs), attrs)


def quantize_node(graph, x, scale) -> Node:
    """A QuantizeLinear of float ``x`` to a new int8 value (its Value recorded)."""
    x_q = unique_name(graph, f'{x}_int8')
    src = graph.values[x]
    graph.values[x_q] = Value(x_q, tuple(src.shape), 'int8', src.layout)
    s = add_weight(graph, f'{x_q}_scale', np.array(scale, np.float32))
    zp = add_weight(graph, f'{x_q}_zero_point', np.array(0, np.int8))
    return Node(QUANTIZE, unique_name(graph, f'{x_q}_quantize'), [x, s, zp], [x_q])


def rewrite(graph, chosen, links) -> int:
    """Replace every chosen conv (and insert its QuantizeLinear) in one pass over the nodes."""
    replace, quantized = {}, {}
    # graph order: a QuantizeLinear shared by several convs goes before the first of them
    for node, lq in (chosen[n.name] for n in graph.nodes if n.name in chosen):
        x, scale, before = node.inputs[0], x_scale_of(lq), []
        if x not in links:
            if (x, scale) not in quantized:
                q = quantize_node(graph, x, scale)
                quantized[(x, scale)] = q.outputs[0]
                before.append(q)
            x = quantized[(x, scale)]
        y = node.outputs[0]
        replace[id(node)] = before + [int8_conv(graph, node, lq, x, links.get(y, 0.0))]
        if y in links:
            graph.values[y].dtype = 'int8'
    return rewrite_nodes(graph, replace)


def quantize_graph(graph, schedule):
    """A copy of ``graph`` with the FusedConv nodes of ``schedule`` ({node name: LayerQuant})
    running in INT8 (see the module doc). Declined layers stay float, each logged with its
    reason and recorded in ``meta['int8']['declined']``; ``meta['int8']['schedule']`` holds
    the schedule. Old float weights no longer read are dropped."""
    graph = graph.copy()
    chosen, declined = choose(graph, schedule)
    links = int8_links(graph, chosen)
    rewrite(graph, chosen, links)
    graph.prune()
    for name, why in declined.items():
        log.info('quantize: %s stays float: %s', name, why)
    log.info('quantize: %d FusedConv -> FusedConvInt8 (%d int8 links), %d declined',
             len(chosen), len(links), len(declined))
    info = dict(graph.meta.get('int8') or {})
    info.update(schedule=schedule_to_json(schedule), declined=declined)
    graph.meta['int8'] = info
    return graph


def _int8_scale(graph, producer):
    """The scale an int8 value was written with by ``producer`` (None: not a valid writer)."""
    if producer is None:
        return None
    if producer.op == QUANTIZE and len(producer.inputs) > 2:
        zp, s = constant(graph, producer.inputs[2]), constant(graph, producer.inputs[1])
        ok = zp is not None and zp.dtype == np.int8 and not zp.any() and s is not None
        return float(np.float32(s)) if ok and s.size == 1 else None
    if producer.op == INT8_CONV and producer.attrs.get('out_scale', 0) > 0:
        return float(np.float32(producer.attrs['out_scale']))
    return None


def boundary_problems(graph) -> list:
    """What breaks notes/int8.md's bookkeeping (empty when nothing does): every int8 value is
    written by a QuantizeLinear (int8 zero point 0) or a FusedConvInt8 with ``out_scale`` > 0,
    an int8 conv reads its input at the scale it was written with, and every other reader (and
    the graph's outputs) reads float."""
    producers, problems = graph.producers(), []

    def int8(name):
        return name not in graph.weights and graph.values[name].dtype == 'int8'

    scales = {n: _int8_scale(graph, producers.get(n)) for n in graph.values if int8(n)}
    problems += [f'{n} is int8 but not written by a quantizing node'
                 for n, s in scales.items() if s is None]
    for node in graph.nodes:
        reads = [n for n in node.inputs if n and n not in graph.weights]
        if node.op == INT8_CONV:
            x = node.inputs[0]
            if not int8(x) or scales.get(x) != float(np.float32(node.attrs['x_scale'])):
                problems.append(f'{node.name} reads {x} not as int8 at its x_scale')
            wants_float = node.attrs.get('out_scale', 0) == 0
            if wants_float != (graph.values[node.outputs[0]].dtype == 'float32'):
                problems.append(f'{node.name}: out_scale and output dtype disagree')
            reads = reads[1:]
        elif node.op == 'DequantizeLinear':
            reads = reads[1:]
        problems += [f'{node.name} ({node.op}) reads int8 {n}' for n in reads if int8(n)]
    problems += [f'graph output {n} is int8' for n in graph.outputs if int8(n)]
    return problems
