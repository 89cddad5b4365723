"""Which activations the CUDA backend stores NHWC, and the FP16 memory plan of its arena.

Int8 images (``FusedConvInt8``, ``QuantizeLinear``, notes/int8.md) are NHWC too, one byte a
value, with the pixel stride padded to a multiple of ``INT8_CHANNELS`` channels (4-byte dp4a
words; ``cuda/lower_int8.py``).
"""
import numpy as np

from tx2_infer_core.cuda import placement
from tx2_infer_core.cuda.launch import Ref, Slot, row_major
from tx2_infer_core.cuda.pool_epilogue import ATTR as POOL_ATTR
from tx2_infer_core.cuda.views import copy_views, stored_as_half, view_slot
from tx2_infer_core.ops import traits
from tx2_infer_core.planner import ALIGNMENT, plan_memory

# The image ops CUDA lowers: their image input and output are stored NHWC.
IMAGE_OPS = frozenset(name for name in traits.names(kind=traits.IMAGE)
                      if traits.TRAITS[name].cuda)
# Ops whose 4-D inputs and outputs share one storage order.
FOLLOW_OPS = frozenset(traits.names(keeps_layout=True))
INT8_CHANNELS = 4


def follows(graph, node) -> bool:
    """True when ``node``'s 4-D inputs and outputs share one storage order: FOLLOW_OPS, and a
    Softmax over the channels (its kernel runs rows of NHWC channels as of row-major dims)."""
    if node.op in ('Softmax', 'LogSoftmax') and node.inputs[0] in graph.values:
        return int(node.attrs.get('axis', -1)) % max(len(graph.values[node.inputs[0]].shape),
                                                     1) == 1
    return node.op in FOLLOW_OPS


def nhwc_values(graph) -> set:
    """4-D activations touched by an image op, directly or through ops that keep the storage
    order (``follows``): float, int8 images, and the bools and integers stored as FP16 (a
    comparison of an image is stored like it, so an elementwise output written over such an
    input, in place, keeps one storage order)."""
    def is_image(name):
        v = graph.values.get(name)
        if v is None or len(v.shape) != 4 or v.layout not in ('NCHW', '') or \
                name in graph.weights:
            return False
        dtype = np.dtype(v.dtype)
        return dtype.kind in 'fb' or dtype == np.int8 or (dtype.kind in 'iu'
                                                          and dtype.itemsize > 1)

    found = {n for node in graph.nodes if node.op in IMAGE_OPS  # (a fused pool's output too)
             for n in node.inputs[:1] + node.outputs[:1 + (POOL_ATTR in node.attrs)]
             if is_image(n)}
    found |= {n for node in graph.nodes
              if node.op in ('FusedConv', 'FusedConvTranspose', 'FusedConvInt8')
              for n in node.inputs[3:4] if n and is_image(n)}
    changed = True
    while changed:
        changed = False
        for node in graph.nodes:
            if not follows(graph, node):
                continue
            names = [n for n in node.inputs + node.outputs if n and is_image(n)]
            if any(n in found for n in names) and not all(n in found for n in names):
                found.update(names)
                changed = True
    return found


def padded_channels(graph, name, nhwc) -> int:
    """The pixel stride of NHWC value ``name``: its channels, padded to ``INT8_CHANNELS`` for
    an int8 image."""
    v = graph.values[name]
    c = int(v.shape[1])
    if np.dtype(v.dtype) == np.int8 and name in nhwc:
        return -(-c // INT8_CHANNELS) * INT8_CHANNELS
    return c


def fp16_graph(graph, nhwc=(), int32=frozenset()):
    """A structural copy whose float, bool and wider-than-a-byte integer activations are
    float16 (what the arena holds: a bool as 0/1, an integer as itself) but the ``int32``
    index values (int32), and whose int8 NHWC images have their padded channel count (their
    bytes in the arena)."""
    g = graph.copy()
    for name, v in g.values.items():
        dtype = np.dtype(v.dtype)
        if name in nhwc and dtype == np.int8:
            v.shape = (v.shape[0], padded_channels(graph, name, nhwc)) + tuple(v.shape[2:])
        elif name in int32:
            v.dtype = 'int32'
        elif stored_as_half(dtype):
            v.dtype = 'float16'
    return g


def make_slots(graph, offsets: dict, nhwc: set, views: dict = None, general: dict = None,
               alignment: int = ALIGNMENT, int32=frozenset()) -> dict:
    """Slot of every planned activation: arena address, shape and storage strides. A view
    (``placement.channel_views``) is a channel slice of its root: the root's pixel stride; a
    ``general`` view (``views.copy_views``) has its own strides and offset in its root; an
    ``int32`` value is row-major int32."""
    slots, views, general = {}, views or {}, general or {}
    for name, off in offsets.items():
        shape = tuple(int(d) for d in graph.values[name].shape)
        if name in general:
            slots[name] = view_slot(graph, name, general[name], int(off), nhwc, alignment,
                                    int32)
        elif name in int32:
            slots[name] = Slot(Ref('arena', int(off)), shape, row_major(shape), itemsize=4)
        elif name in views:
            root, first = placement.resolve(views, name)
            n, _, h, w = shape
            pix = int(graph.values[root].shape[1])
            slots[name] = Slot(Ref('arena', int(off)), shape, (h * w * pix, 1, w * pix, pix),
                               True, first)
        elif name in nhwc:
            n, _, h, w = shape
            pix = padded_channels(graph, name, nhwc)
            slots[name] = Slot(Ref('arena', int(off)), shape, (h * w * pix, 1, w * pix, pix),
                               True)
        else:
            slots[name] = Slot(Ref('arena', int(off)), shape, row_major(shape))
    return slots


def plan_arena(graph, alignment=ALIGNMENT, place_channels=True, int32=frozenset()) -> tuple:
    """(MemoryPlan, {value: Slot}) of the FP16 arena: NHWC image values, channel Concat inputs
    and Split outputs stored as views where ``placement`` allows, and the outputs of copies and
    Concat inputs along any axis where ``views`` allows (else they are copied); the ``int32``
    index values (``int32_values.py``) row-major int32, 4 bytes each."""
    nhwc = nhwc_values(graph) - set(int32)
    views = placement.channel_views(graph, nhwc) if place_channels else {}
    general = copy_views(graph, nhwc, views, alignment, int32) if place_channels else {}
    parents = {name: up for name, (up, _) in views.items()}
    parents.update({name: view.root for name, view in general.items()})
    plan = plan_memory(fp16_graph(graph, nhwc, int32), alignment=alignment,
                       concat_placement=False, views=parents)
    return plan, make_slots(graph, plan.offsets, nhwc, views, general, alignment, int32)
