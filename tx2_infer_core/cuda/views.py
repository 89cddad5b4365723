"""Copies that need no launch: values stored as strided views of another value's storage.

A value's place in the arena is (root value, element offset, element strides per logical dim).
After ``placement.channel_views`` (NHWC channel Concat/Split), one pass in graph order makes

- the output of a copy (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, a Cast that
  keeps the FP16 values: between floats, integers and bools but a float truncated to an integer
  or a number made a bool), a Transpose, a constant Slice with positive steps, a Gather of a
  rising run of constant indices (``gather_index``), or a Split along any axis a view of its
  input, where the input's strides allow it (a Reshape of a strided view may not), and
- the output of a scatter (ScatterND, ScatterElements) a view of its data, which the scatter
  then updates in place (the data's copy launches nothing), where the data's storage is no graph
  input or output and no value stored there is read after the scatter but as its data (the
  updates never alias the output), and
- each input of a Concat along any axis a view of the Concat's output: its producer writes
  straight into its slice, and
- (first, walking back from the graph outputs) the input of a copy or Transpose whose output is
  a graph output a view of that output: its producer writes the output's bytes::

      conv ──▶ Reshape ──▶ Transpose        NHWC [1,C,H,W] -> [1,C,HW] (strided view)
                                            -> [1,HW,C]: the conv output's own bytes
      Concat[a, b] ──▶ Split ──┬─▶ box      YOLOv8's head: a and b write into the Concat,
                               └─▶ cls      box and cls are slices of it
      conv ──▶ Transpose ──▶ output         MTCNN: the conv writes the output's bytes
      buf ──▶ ScatterElements ──▶ buf'      slanet's decoder: each step writes its row over
                                            the buffer of the step before

A view whose strides and offset are those the value would have on its own (its *natural*
storage: NHWC for an image, else row-major; an offset that keeps the arena alignment) is an
alias that any kernel may read or write. Any other view is made only where every consumer (and,
for a Concat input, the producer) is an op whose kernel reads and writes any strided view
(``GENERIC_OPS``: the elementwise ops, the copies, FusedPointwise). Graph inputs and outputs are
never views; a value that other values are views of is never moved into a Concat. The copy
lowerings (``lower_ops.py``) launch nothing when source and destination are the same elements.
Values of every dtype the arena holds as FP16 (``stored_as_half``) may be views, the int32
index values (``int32_values.py``) views of int32 values only; 1-byte integers may not.
"""
from dataclasses import dataclass

import numpy as np

from tx2_infer_core.cuda import placement
from tx2_infer_core.cuda.codegen_pointwise import cast_keeps_values
from tx2_infer_core.cuda.gather_index import gather_args, gather_problem, index_run, run_strides
from tx2_infer_core.cuda.launch import Ref, Slot, nhwc_strides, row_major
from tx2_infer_core.cuda.params import MAX_DIMS
from tx2_infer_core.ops import traits

GENERIC_FAMILIES = ('unary', 'copy', 'cast', 'binary', 'pointwise', 'transpose', 'concat',
                    'split', 'slice', 'gather', 'logic', 'trilu', 'expand', 'tile',
                    'depth_to_space', 'space_to_depth', 'cast_like', 'eye_like',
                    'scatter_nd', 'scatter_elements', 'one_hot')
GENERIC_OPS = frozenset(op for op, family in traits.cuda_ops().items()
                        if family in GENERIC_FAMILIES)
COPY_OPS = frozenset(traits.names(kind=traits.COPY))
SCATTER_OPS = frozenset(op for op, family in traits.cuda_ops().items()
                        if family in ('scatter_nd', 'scatter_elements'))
HALF = 2  # bytes per arena element


def stored_as_half(dtype) -> bool:
    """True for the dtypes the arena holds as one FP16 each: floats, bools (0/1) and
    integers wider than a byte (``layout.fp16_graph``)."""
    dtype = np.dtype(dtype)
    return dtype.kind in 'fb' or (dtype.kind in 'iu' and dtype.itemsize > 1)


@dataclass(frozen=True)
class View:
    """Where a value lives inside ``root``: element ``offset`` and ``strides`` per dim."""

    root: str
    offset: int
    strides: tuple


def same_strides(shape, a, b) -> bool:
    """Strides ``a`` and ``b`` address the same elements of ``shape`` (size-1 dims aside)."""
    return all(int(x) == int(y) for n, x, y in zip(shape, a, b) if n != 1)


def reshape_strides(shape, strides, new_shape):
    """Strides of ``new_shape`` over the elements of a ``shape``/``strides`` view in row-major
    order (what Reshape reads), or None when they are not one stride per dim."""
    if 0 in shape or int(np.prod(shape)) != int(np.prod(new_shape)):
        return None
    old = [(int(n), int(s)) for n, s in zip(shape, strides) if n != 1]
    dims = [d for d, n in enumerate(new_shape) if n != 1]
    out = list(row_major(new_shape))
    oi = ni = 0
    while ni < len(dims):
        oj, nj = oi, ni
        old_size, new_size = old[oi][0], new_shape[dims[ni]]
        while old_size != new_size:
            if old_size < new_size:
                oj += 1
                old_size *= old[oj][0]
            else:
                nj += 1
                new_size *= new_shape[dims[nj]]
        if any(old[k][1] != old[k + 1][1] * old[k + 1][0] for k in range(oi, oj)):
            return None
        step = old[oj][1]
        for k in range(nj, ni - 1, -1):
            out[dims[k]] = step
            step *= new_shape[dims[k]]
        oi, ni = oj + 1, nj + 1
    return tuple(out)


def slice_view(shape, strides, starts, axes, steps) -> tuple:
    """(element offset, strides) of an ONNX Slice of a ``shape``/``strides`` view (starts
    clamped as ONNX does)."""
    rank, strides, offset = len(shape), list(strides), 0
    for s, ax, st in zip(starts, axes, steps):
        ax = ax + rank if ax < 0 else ax
        dim = shape[ax]
        s = s + dim if s < 0 else s
        s = min(max(s, 0), dim - 1 if st < 0 else dim)
        offset += s * strides[ax]
        strides[ax] = strides[ax] * st
    return offset, tuple(strides)


def slice_args(graph, node):
    """(starts, axes, steps) of a Slice with constant inputs (or opset-1 attributes), or None."""
    names = (list(node.inputs[1:5]) + [''] * 4)[:4]
    if any(n and n not in graph.weights for n in names):
        return None
    got = [np.asarray(graph.weights[n]).astype(np.int64).tolist() if n else None for n in names]
    starts = got[0] if got[0] is not None else node.attrs.get('starts')
    if starts is None:
        return None
    axes = got[2] if got[2] is not None else node.attrs.get('axes', list(range(len(starts))))
    steps = got[3] if got[3] is not None else [1] * len(starts)
    return list(starts), list(axes), list(steps)


def natural_strides(graph, name, nhwc) -> tuple:
    """The strides ``name`` has in its own storage: NHWC for an image, else row-major."""
    shape = tuple(int(d) for d in graph.values[name].shape)
    return nhwc_strides(shape) if name in nhwc else row_major(shape)


def is_natural(graph, name, view, nhwc, alignment, itemsize=HALF) -> bool:
    """True when ``view`` stores ``name`` as it would be stored on its own, at an offset that
    keeps the arena alignment (an alias any kernel may use); ``itemsize``: bytes an element."""
    return (same_strides(graph.values[name].shape, view.strides,
                         natural_strides(graph, name, nhwc))
            and (itemsize * view.offset) % alignment == 0)


class _Viewer:
    """The state of one pass over the graph (see ``copy_views``)."""

    def __init__(self, graph, nhwc, channel, alignment, int32):
        self.graph, self.nhwc, self.channel, self.alignment = graph, nhwc, channel, alignment
        self.int32 = int32  # the int32 activations (``int32_values``): views of their own kind
        self.views = {}
        self.fixed = set(graph.inputs) | set(graph.outputs)
        self.producers, self.consumers = graph.producers(), graph.consumers()
        self.parents = {placement.resolve(channel, n)[0] for n in channel}
        self.channel_roots = set(self.parents)
        self.members = {}  # root -> the values made views of it
        self.last_read = {n: i for i, node in enumerate(graph.nodes) for n in node.inputs}

    def shape(self, name) -> tuple:
        if name in self.graph.weights:
            return tuple(np.shape(self.graph.weights[name]))
        return tuple(int(d) for d in self.graph.values[name].shape)

    def activation(self, name) -> bool:
        return name in self.graph.values and name not in self.graph.weights

    def place(self, name) -> View:
        """Where ``name`` lives now: a view, a channel view, or its own natural storage."""
        if name in self.views:
            return self.views[name]
        if name in self.channel:
            root, first = placement.resolve(self.channel, name)
            n, _, h, w = self.shape(name)
            pix = int(self.graph.values[root].shape[1])
            return View(root, first, (h * w * pix, 1, w * pix, pix))
        return View(name, 0, natural_strides(self.graph, name, self.nhwc))

    def movable(self, name) -> bool:
        """``name`` may become a view: an fp16 activation in the arena, not yet placed."""
        v = self.graph.values.get(name)
        return (v is not None and name not in self.fixed and name not in self.channel
                and name not in self.views and name not in self.parents
                and stored_as_half(v.dtype) and 0 < len(v.shape) <= MAX_DIMS
                and 0 not in v.shape)

    def offer(self, name, view, writer=None) -> bool:
        """Store ``name`` as ``view`` when every kernel touching it can (see the module doc);
        ``writer``: the op that will write it there (a Concat input's producer)."""
        if not self.movable(name) or (name in self.int32) != (view.root in self.int32):
            return False
        if not is_natural(self.graph, name, view, self.nhwc, self.alignment,
                          itemsize_of(name, self.int32)):
            users = [c.op for c in self.consumers.get(name, [])] + ([writer] if writer else [])
            if not all(op in GENERIC_OPS for op in users):
                return False
        self.views[name] = view
        self.parents.add(view.root)
        self.members.setdefault(view.root, set()).add(name)
        return True

    def keeps_values(self, node) -> bool:
        """Copy ``node`` stores its input's values unchanged (a Cast may not; nor a copy
        between an int32 value and an FP16 one)."""
        x = node.inputs[0]
        if not self.activation(x) or not stored_as_half(self.graph.values[x].dtype) or \
                (x in self.int32) != (node.outputs[0] in self.int32):
            return False
        source = np.dtype(self.graph.values[x].dtype).kind
        return node.op != 'Cast' or cast_keeps_values(node.attrs.get('to', 1), source)

    def copy(self, node):
        x, y = node.inputs[0], node.outputs[0]
        if not self.keeps_values(node):
            return
        xv = self.place(x)
        strides = reshape_strides(self.shape(x), xv.strides, self.shape(y))
        if strides is not None:
            self.offer(y, View(xv.root, xv.offset, strides))

    def reverse(self, node):
        """Store the input of a copy or Transpose whose output is a graph output (or such an
        input) inside that output: its producer writes the output's bytes directly."""
        x, y = node.inputs[0], node.outputs[0]
        producer = self.producers.get(x)
        if producer is None or not self.activation(x) or \
                (y not in self.graph.outputs and y not in self.views) or \
                (node.op != 'Transpose' and not self.keeps_values(node)):
            return
        yv = self.place(y)
        if node.op == 'Transpose':
            perm = transpose_perm(node, len(yv.strides))
            strides = [0] * len(perm)
            for i, p in enumerate(perm):
                strides[p] = yv.strides[i]
        else:
            strides = reshape_strides(self.shape(y), yv.strides, self.shape(x))
        if strides is not None:
            self.offer(x, View(yv.root, yv.offset, tuple(strides)), producer.op)

    def transpose(self, node):
        x, y = node.inputs[0], node.outputs[0]
        if not self.activation(x):
            return
        xv = self.place(x)
        perm = transpose_perm(node, len(xv.strides))
        self.offer(y, View(xv.root, xv.offset, tuple(xv.strides[p] for p in perm)))

    def slice(self, node):
        args = slice_args(self.graph, node)
        if args is None or min(args[2]) <= 0 or not self.activation(node.inputs[0]):
            return
        xv = self.place(node.inputs[0])
        offset, strides = slice_view(self.shape(node.inputs[0]), xv.strides, *args)
        self.offer(node.outputs[0], View(xv.root, xv.offset + offset, strides))

    def gather(self, node):
        if gather_problem(self.graph, node) or not self.activation(node.inputs[0]):
            return
        axis, idx = gather_args(self.graph, node)
        run = index_run(idx)
        if run is None or run[1] <= 0:
            return
        xv = self.place(node.inputs[0])
        offset, strides = run_strides(xv.strides, axis, idx.shape, *run)
        self.offer(node.outputs[0], View(xv.root, xv.offset + offset, strides))

    def split(self, node):
        if not self.activation(node.inputs[0]):
            return
        xv = self.place(node.inputs[0])
        axis = int(node.attrs.get('axis', 0)) % len(xv.strides)
        start = 0
        for y in node.outputs:
            if y:
                self.offer(y, View(xv.root, xv.offset + start * xv.strides[axis], xv.strides))
                start += self.shape(y)[axis]

    def scatter(self, node, step):
        """Store a scatter's output in its data's storage (the data's copy launches nothing,
        the scatter writes in place) when that storage is no graph input or output, and
        nothing but the scatter's data input reads it from the scatter on."""
        data, y = node.inputs[0], node.outputs[0]
        if not self.activation(data) or data in self.channel:
            return
        dv = self.place(data)
        family = self.members.get(dv.root, set()) | {dv.root}
        if dv.root in self.fixed or dv.root in self.channel_roots or \
                any(n in family for n in node.inputs[1:]) or \
                any(self.last_read.get(n, -1) > step for n in family):
            return
        self.offer(y, dv, node.op)

    def concat(self, node):
        zv = self.place(node.outputs[0])
        axis = int(node.attrs.get('axis', 0)) % len(zv.strides)
        start = 0
        for x in node.inputs:
            producer = self.producers.get(x)
            if producer is not None and node.inputs.count(x) == 1:
                self.offer(x, View(zv.root, zv.offset + start * zv.strides[axis], zv.strides),
                           producer.op)
            start += self.shape(x)[axis]


def transpose_perm(node, rank) -> list:
    """The permutation of Transpose ``node`` over ``rank`` axes (reversed by default)."""
    return [int(p) for p in node.attrs.get('perm') or reversed(range(rank))]


def itemsize_of(name, int32) -> int:
    """Bytes per arena element of value ``name``: 4 for one of the ``int32`` values, else 2."""
    return 4 if name in int32 else HALF


def copy_views(graph, nhwc: set, channel: dict, alignment: int, int32=frozenset()) -> dict:
    """{value: View} of the values stored inside another value (see the module doc) beyond the
    channel views ``channel`` (``placement.channel_views``); a value of ``int32`` (stored
    int32) is a view of another such value only."""
    viewer = _Viewer(graph, nhwc, channel, alignment, int32)
    for node in reversed(graph.nodes):
        if (node.op in COPY_OPS or node.op == 'Transpose') and node.outputs[:1] != ['']:
            viewer.reverse(node)
    for step, node in enumerate(graph.nodes):
        if node.op in COPY_OPS and node.outputs and node.outputs[0]:
            viewer.copy(node)
        elif node.op in SCATTER_OPS:
            viewer.scatter(node, step)
        elif node.op in ('Transpose', 'Slice', 'Gather', 'Split', 'Concat'):
            getattr(viewer, node.op.lower())(node)
    return viewer.views


def view_slot(graph, name, view, base: int, nhwc, alignment, int32=frozenset()) -> Slot:
    """The Slot of view ``name`` whose root starts at arena byte ``base``: an alias gets its
    natural strides and the offset in its address, any other view its strides and offset."""
    shape = tuple(int(d) for d in graph.values[name].shape)
    size = itemsize_of(name, int32)
    if is_natural(graph, name, view, nhwc, alignment, size):
        return Slot(Ref('arena', base + size * view.offset), shape,
                    natural_strides(graph, name, nhwc), name in nhwc, 0, size)
    return Slot(Ref('arena', base), shape, tuple(view.strides), False, view.offset, size)
