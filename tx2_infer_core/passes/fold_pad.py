"""Fold a spatial Pad into the Conv or MaxPool that reads it.

Patterns::

    x -> Pad(constant 0) [-> Transpose] -> Conv | FusedConv     the Conv pads what Pad did
    x -> Pad(edge | constant -inf) -> MaxPool                   MaxPool pads with -inf

both become ``x [-> Transpose] -> Conv | MaxPool(pads + Pad's pads)``. A convolution's own
padding reads zeros, which is what the Pad wrote. MaxPool pads with -inf; an edge Pad gives the
same maxima when every window touching the pad also covers the edge row or column it repeats
(pad < kernel, dilation 1, floor mode, no pads of its own). open_nsfw's stem has both: its NHWC
input padded by 3 before a Transpose and the 7x7 Conv, and Caffe's ceil-mode pooling written as
an edge Pad before MaxPool.

Safety: the pads (and the constant value) are constants; pads are non-negative and only on the
spatial axes (as the reader sees them, through the Transpose); the Pad and Transpose outputs
have exactly one reader and are not graph outputs; the Conv has no auto_pad; float data.
"""
import numpy as np

from tx2_infer_core.ops.tensor import pads_over_all_axes
from tx2_infer_core.passes.graph_edit import (FLOAT_DTYPES, constant, dtype_of, rewrite_nodes,
                                              sole_consumer)

CONV_OPS = ('Conv', 'FusedConv')


def spatial_pads(pads, perm=None):
    """ONNX Conv/pool ``pads`` (spatial begins, then ends) of a Pad whose ``pads`` name every
    axis (begins, then ends), as a reader sees them through Transpose ``perm``; None when it
    pads batch or channels."""
    rank = len(pads) // 2
    begin, end = list(pads[:rank]), list(pads[rank:])
    if perm is not None:
        begin, end = [begin[p] for p in perm], [end[p] for p in perm]
    if any(begin[:2]) or any(end[:2]):
        return None
    return begin[2:] + end[2:]


def add_pads(own, extra) -> list:
    """A reader's pads plus the folded Pad's."""
    own = list(own) if own is not None else [0] * len(extra)
    return [int(a) + int(b) for a, b in zip(own, extra)]


def edge_matches_maxpool(pads, kernel) -> bool:
    """An edge Pad of ``pads`` before a MaxPool of ``kernel`` (dilation 1, floor mode) gives
    the maxima of -inf padding: every window touching the pad covers the edge it repeats."""
    dims = len(kernel)
    return all(p < k for p, k in zip(pads[:dims], kernel)) and \
        all(p < k for p, k in zip(pads[dims:], kernel))


def full_pads(graph, node, rank):
    """[begin per axis..., end per axis...] of Pad ``node`` over all ``rank`` axes (its
    ``axes`` input expanded), or None when they are not constant or do not match."""
    names = (list(node.inputs[1:]) + ['', '', ''])[:3]
    if len(node.inputs) > 1 and node.inputs[1]:
        pads = constant(graph, names[0])
    else:
        pads = node.attrs.get('pads')
    axes = constant(graph, names[2]) if names[2] else np.arange(rank)
    if pads is None or axes is None:
        return None
    return pads_over_all_axes(np.asarray(pads).reshape(-1), np.asarray(axes).reshape(-1), rank)


def pad_fill(graph, node):
    """(mode, constant value) of Pad ``node``, or None when the value is not a constant."""
    mode = node.attrs.get('mode', 'constant')
    mode = mode.decode() if isinstance(mode, bytes) else mode
    value = node.attrs.get('value', 0.0)
    if len(node.inputs) > 2 and node.inputs[2]:
        c = constant(graph, node.inputs[2])
        if c is None or np.size(c) != 1:
            return None
        value = float(np.asarray(c).reshape(-1)[0])
    return mode, float(value)


def folded_pads(graph, pad, reader, perm):
    """The pads ``reader`` gets when it absorbs ``pad`` (seen through ``perm``), or None."""
    shape = graph.values[pad.inputs[0]].shape
    full, fill = full_pads(graph, pad, len(shape)), pad_fill(graph, pad)
    extra = spatial_pads(full, perm) if full is not None and min(full) >= 0 else None
    if extra is None or fill is None:
        return None
    mode, value = fill
    if reader.op in CONV_OPS:
        auto = reader.attrs.get('auto_pad', 'NOTSET')
        ok = mode == 'constant' and value == 0 and auto in ('NOTSET', b'NOTSET')
        return add_pads(reader.attrs.get('pads'), extra) if ok else None
    if reader.op != 'MaxPool' or any(reader.attrs.get('pads') or [0]) or \
            any(reader.outputs[1:]):
        return None
    plain = (reader.attrs.get('auto_pad', 'NOTSET') in ('NOTSET', b'NOTSET')
             and not reader.attrs.get('ceil_mode', 0)
             and all(d == 1 for d in reader.attrs.get('dilations') or [1]))
    if mode == 'constant' and value == -np.inf:
        return extra if plain else None
    if mode == 'edge' and plain and edge_matches_maxpool(extra, reader.attrs['kernel_shape']):
        return extra
    return None


def transpose_perm(node, rank) -> list:
    """The permutation of Transpose ``node`` over ``rank`` axes (reversed by default)."""
    return [int(p) for p in node.attrs.get('perm') or reversed(range(rank))]


def _match(graph, consumers, pad):
    """(Transpose or None, reader, its new pads) for a foldable ``pad``, or None."""
    x = pad.inputs[0]
    if x not in graph.values or dtype_of(graph, x) not in FLOAT_DTYPES:
        return None
    rank = len(graph.values[x].shape)
    reader = sole_consumer(graph, consumers, pad.outputs[0])
    transpose, perm = None, None
    if reader is not None and reader.op == 'Transpose':
        transpose, perm = reader, transpose_perm(reader, rank)
        reader = sole_consumer(graph, consumers, reader.outputs[0])
        if reader is not None and reader.op not in CONV_OPS:
            return None
    source = (transpose or pad).outputs[0]
    if reader is None or reader.op not in CONV_OPS + ('MaxPool',) or reader.inputs[0] != source:
        return None
    if perm is not None and sorted(perm) != list(range(rank)):
        return None
    pads = folded_pads(graph, pad, reader, perm)
    return None if pads is None else (transpose, reader, pads)


def fold_pads(graph) -> int:
    """Fold every spatial Pad into the Conv or MaxPool reading it (see the module doc);
    returns the number of Pads folded."""
    consumers = graph.consumers()
    matches = []
    for node in graph.nodes:
        if node.op == 'Pad' and node.inputs and node.outputs:
            found = _match(graph, consumers, node)
            if found is not None:
                matches.append((node, *found))
    for pad, transpose, reader, pads in matches:
        x = pad.inputs[0]
        if transpose is not None:
            shape = graph.values[x].shape
            perm = transpose_perm(transpose, len(shape))
            transpose.inputs = [x] + transpose.inputs[1:]
            graph.values[transpose.outputs[0]].shape = tuple(shape[p] for p in perm)
        else:
            reader.inputs = [x] + reader.inputs[1:]
        reader.attrs = dict(reader.attrs, pads=pads)
    return rewrite_nodes(graph, remove=[id(pad) for pad, *_ in matches])
