"""The text report of ``tx2-infer inspect``: layers, fusions, FLOPs and the memory plan."""
from collections import Counter

from tx2_infer_core.flops import graph_flops


def fusion_of(node, memory_plan):
    """What a node stands for beyond its op: 'Conv+bias+Add+LeakyRelu', 'placed', 'in-place'."""
    parts = []
    if node.op in ('FusedConv', 'FusedConvTranspose'):
        inputs = list(node.inputs) + ['', '']
        conv = [node.op[len('Fused'):]] + (['bias'] if inputs[2] else [])
        residual = ['Add'] if inputs[3] else []
        activation = [node.attrs['activation']] if node.attrs.get('activation') else []
        after = node.attrs.get('residual_after_act', 0)
        parts.append('+'.join(conv + (activation + residual if after else residual + activation)))
    if node.name in memory_plan.placed_concats:
        parts.append('placed (no copy)')
    overwritten = [memory_plan.inplace[o] for o in node.outputs if o in memory_plan.inplace]
    if overwritten:
        parts.append(f'in-place over {overwritten[0]}')
    return ', '.join(parts)


def _shape_text(shape):
    return 'x'.join(str(d) for d in shape)


def _describe(values):
    return ', '.join(f'{v.name} {_shape_text(v.shape)} {v.dtype} {v.layout}'.rstrip()
                     for v in values)


def layer_lines(graph, memory_plan, flops):
    """One line per node: index, name, op, output shape, fusion, MFLOPs."""
    width = min(max((len(n.name) for n in graph.nodes), default=4), 36)
    lines = [f"{'#':>4}  {'name':<{width}}  {'op':<18} {'output':<18} {'MFLOPs':>9}  fusion"]
    for index, node in enumerate(graph.nodes):
        out = graph.values.get(node.outputs[0]) if node.outputs else None
        shape = _shape_text(out.shape) if out is not None else '-'
        lines.append(f'{index:>4}  {node.name[:width]:<{width}}  {node.op:<18} {shape:<18} '
                     f'{flops[node.name] / 1e6:9.2f}  {fusion_of(node, memory_plan)}'.rstrip())
    return lines


def precision_text(engine):
    """The plan's precision, and what this engine's backend runs when that differs."""
    planned = engine.options.get('precision', 'fp32')
    if engine.precision == planned:
        return planned
    return f'{planned} plan, run in {engine.precision} by the {engine.backend.name} backend'


def range_lines(options):
    """The values a cuda fp16 plan stores rescaled for FP16's range (``options['fp16_range']``,
    {value: exponent}), one a line."""
    scaled = options.get('fp16_range')
    if not isinstance(scaled, dict) or not scaled:
        return []
    width = min(max(len(str(name)) for name in scaled), 36)
    return ([f'fp16 range: {len(scaled)} values stored times 2^k (measured on the range '
             'inputs):'] + [f'  {str(name):<{width}}  2^{k}' for name, k in scaled.items()])


def inspect_lines(engine):
    """The whole report for an engine, as lines of text."""
    graph, plan, options = engine.graph, engine.memory_plan, engine.options
    flops = graph_flops(graph)
    head = graph.meta.get('head') or {}
    lines = [f"model: {options.get('model', graph.name)}  "
             f"(precision {precision_text(engine)}, head {head.get('type', '-')})",
             f'inputs:  {_describe(engine.input_specs)}',
             f'outputs: {_describe(engine.output_specs)}', '']
    lines += layer_lines(graph, plan, flops)
    ops = Counter(node.op for node in graph.nodes)
    lines += ['', f'{len(graph.nodes)} layers: ' +
              ', '.join(f'{op} {count}' for op, count in ops.most_common()),
              f'total: {sum(flops.values()) / 1e9:.3f} GFLOPs']
    passes = options.get('passes') or {}
    if passes:
        lines.append('passes: ' + ', '.join(f'{k} {v}' for k, v in passes.items()))
    lines += range_lines(options)
    lines.append(f'memory: {plan.report()}')
    return lines
