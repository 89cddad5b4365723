"""Fill in unknown ``Value.layout`` of 4-D image activations (never changes a known layout).

Convolutions, pools and resizes read and write NCHW (kind 'image' in ``ops/traits.py``);
elementwise ops, channel concats and the other ``keeps_layout`` ops keep their input's
layout; a Transpose by (0,2,3,1) / (0,3,1,2) turns NCHW into NHWC and back.
Facts flow forwards and backwards until nothing changes; whatever 4-D value is still unknown
is taken as NCHW (the ONNX convention).
"""
from tx2_infer_core.ops import traits

NCHW_OPS = frozenset(traits.names(kind=traits.IMAGE))
KEEP_OPS = frozenset(traits.names(keeps_layout=True))
TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def _edges(node):
    """``(input, output, layout map)`` facts one node gives, as pairs of value names."""
    if node.op in KEEP_OPS:
        return [(i, o, {'NCHW': 'NCHW', 'NHWC': 'NHWC'})
                for i in node.inputs[:1] for o in node.outputs]
    if node.op == 'Transpose':
        perm = list(node.attrs.get('perm') or [])
        if perm == TO_NHWC:
            return [(node.inputs[0], node.outputs[0], {'NCHW': 'NHWC'})]
        if perm == TO_NCHW:
            return [(node.inputs[0], node.outputs[0], {'NHWC': 'NCHW'})]
    return []


def _set(graph, name, layout):
    value = graph.values.get(name)
    if value is None or len(value.shape) != 4 or value.layout:
        return False
    value.layout = layout
    return True


def infer_layouts(graph) -> int:
    """Set the layout of 4-D activations whose layout is ''. Returns how many were set."""
    changed = 0
    for node in graph.nodes:
        if node.op in NCHW_OPS:
            changed += sum(_set(graph, n, 'NCHW') for n in node.inputs[:1] + node.outputs[:1])
    edges = [e for node in graph.nodes for e in _edges(node)]
    while True:
        step = 0
        for src, dst, mapping in edges:
            a, b = graph.values.get(src), graph.values.get(dst)
            if a is None or b is None:
                continue
            if a.layout in mapping:
                step += _set(graph, dst, mapping[a.layout])
            back = {v: k for k, v in mapping.items()}
            if b.layout in back:
                step += _set(graph, src, back[b.layout])
        changed += step
        if not step:
            return changed + sum(_set(graph, name, 'NCHW') for name in list(graph.values))
