"""Lowering of the elementwise ops and of the copies (Reshape, Transpose, Concat, Split, Slice)
to ``kernels/elementwise.cu``. Every function takes the ``LoweringContext`` (``lowering.py``:
slots, constants, weights) and a node and returns a list of ``Launch``; what a kernel cannot do
raises ``UnsupportedOpError`` naming the node. Which op is an activation, a unary or binary op
(and its kernel code) or a copy is written in ``ops/traits.py``.
"""
import numpy as np

from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.codegen_pointwise import channel_dim, input_access
from tx2_infer_core.cuda.codegen_pointwise import lower_pointwise  # also the op table's
from tx2_infer_core.cuda.launch import BLOCK, Launch, grid_1d
from tx2_infer_core.cuda.views import HALF, reshape_strides, slice_args, slice_view
from tx2_infer_core.ops import traits

VEC = 8  # halves per 16-byte access of the vec8 kernels
UNARY_VEC8 = np.dtype([('x', params.PTR), ('y', params.PTR), ('n8', 'i8'), ('op', 'i4'),
                       ('act', params.ACT)], align=True)
BINARY_VEC8 = np.dtype([('a', params.PTR), ('b', params.PTR), ('y', params.PTR), ('n8', 'i8'),
                        ('b8', 'i8'), ('swap', 'i4'), ('op', 'i4'), ('act', params.ACT)],
                       align=True)
IO_CONVERT = np.dtype([('x', params.PTR), ('y', params.PTR), ('n', 'i8'), ('HW', 'i8'),
                       ('C', 'i4')], align=True)


def slot_view(slot, shape=None, strides=None, offset=0):
    """The kernels' View record of ``slot`` (or of ``shape``/``strides`` inside it, starting
    ``offset`` elements after its first element)."""
    return params.view_record(slot.shape if shape is None else shape,
                              slot.strides if strides is None else strides,
                              slot.channel_off + offset)


def copy_launch(name, src, src_view, dst, dst_view, n, op=0, act=None):
    """y[dst_view(i)] = f(x[src_view(i)]) for the n logical elements (``copy_i32``: the copy of
    int32 slots)."""
    if src.int32 or dst.int32:
        assert src.int32 and dst.int32 and op == 0 and act is None, 'int32 is copied only'
    fields = dict(x=src.ref, xv=src_view, y=dst.ref, yv=dst_view, n=int(n), op=op,
                  act=act if act is not None else params.act_record())
    kernel = 'copy_i32' if src.int32 else 'unary'
    return Launch('elementwise', kernel, grid_1d(n), (BLOCK, 1, 1), params.UNARY_ARGS,
                  fields, name)


def _check_copy(lc, node):
    """Refuse the copies whose ONNX result is not a plain FP16 copy: a training-mode Dropout,
    a Dropout whose mask is used (which Cast is a copy: ``lower_logic.lower_cast``)."""
    if node.op == 'Dropout':
        ratio = node.inputs[1] if len(node.inputs) > 1 else ''
        training = node.inputs[2] if len(node.inputs) > 2 else ''
        if training and (not lc.is_const(training) or bool(lc.const(training))) and not (
                ratio and lc.is_const(ratio) and float(lc.const(ratio)) == 0):
            lc.unsupported(node, 'training_mode=1 with a ratio other than a constant 0')
        mask = node.outputs[1] if len(node.outputs) > 1 else ''
        if mask and (mask in lc.graph.outputs
                     or any(mask in other.inputs for other in lc.graph.nodes)):
            lc.unsupported(node, 'the mask output')


def activation_record(lc, node):
    """The ActParams of an activation node: its ``params`` attributes (``ops/traits.py``) as
    alpha and beta, Clip's bounds from its inputs (or opset-6 attributes)."""
    a, lo, hi = node.attrs, -np.inf, np.inf
    if node.op == 'Clip':
        lo, hi = a.get('min', lo), a.get('max', hi)
        if len(node.inputs) > 1 and node.inputs[1]:
            lo = float(lc.const(node.inputs[1]))
        if len(node.inputs) > 2 and node.inputs[2]:
            hi = float(lc.const(node.inputs[2]))
    return params.act_record(node.op, clip_min=lo, clip_max=hi,
                             **traits.activation_values(node.op, a))


def lower_unary(lc, node):
    """Activations, unary math functions and the copies (Reshape and friends)."""
    x, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    n = int(np.prod(y.shape, dtype=np.int64))
    kind = traits.TRAITS[node.op].kind
    op, act = 0, params.act_record()
    if kind == traits.ACTIVATION:
        if any(n and not lc.is_const(n) for n in node.inputs[1:]):
            return lower_pointwise(lc, node)  # Clip bounds computed at run time: generated
        act = activation_record(lc, node)
    elif kind == traits.UNARY:
        approximate = node.attrs.get('approximate', 'none')
        if node.op == 'Gelu' and approximate in ('tanh', b'tanh'):
            return lower_pointwise(lc, node)  # its tanh form: generated
        if node.op == 'Gelu' and approximate not in ('none', b'none'):
            lc.unsupported(node, f"approximate={approximate}: only 'none' and 'tanh'")
        op = params.UNARY[node.op]
    elif kind == traits.COPY:
        _check_copy(lc, node)
        if _reshaped_in_place(x, y):
            return []
    else:
        lc.unsupported(node, 'no elementwise kernel')
    if x.int32 or y.int32:
        return [copy_launch(node.name, x, slot_view(x), y, slot_view(y), n)]
    if n % VEC == 0 and same_storage(x, y):
        fields = dict(x=x.ref, y=y.ref, n8=n // VEC, op=op, act=act)
        return [Launch('elementwise', 'unary_vec8', grid_1d(n // VEC), (BLOCK, 1, 1),
                       UNARY_VEC8, fields, node.name)]
    return [copy_launch(node.name, x, slot_view(x), y, slot_view(y), n, op, act)]


def same_place(src, src_view, dst, dst_view, itemsize=HALF) -> bool:
    """Views ``src_view`` at address ``src`` and ``dst_view`` at ``dst`` (View records, of
    elements of ``itemsize`` bytes) are the same elements: a copy between them is a no-op
    (``cuda/views.py``)."""
    nd = int(src_view['ndim'])
    shape = tuple(src_view['shape'][:nd])
    start = src.offset + itemsize * int(src_view['offset'])
    strides = zip(shape, src_view['stride'][:nd], dst_view['stride'][:nd])
    return (src.base == dst.base and nd == int(dst_view['ndim'])
            and shape == tuple(dst_view['shape'][:nd])
            and start == dst.offset + itemsize * int(dst_view['offset'])
            and all(a == b for n, a, b in strides if n != 1))


def _reshaped_in_place(x, y) -> bool:
    """True when slot ``y`` is slot ``x`` reshaped: the same elements in row-major order."""
    strides = reshape_strides(x.shape, x.strides, y.shape)
    return strides is not None and x.itemsize == y.itemsize and same_place(
        x.ref, slot_view(x, y.shape, strides), y.ref, slot_view(y), x.itemsize)


def same_storage(x, y) -> bool:
    """Element i of ``x`` and of ``y`` are at the same place of dense storage (both row-major,
    whatever their shapes, or both dense NHWC of one shape)."""
    return (x.contiguous() and y.contiguous()) or (
        x.dense() and y.dense() and x.shape == y.shape and x.strides == y.strides)


def _vec8_operand(slot, y):
    """``(address, b8)`` of ``slot`` as binary_vec8's repeating operand for output ``y``: y's
    own storage (b8 = n8) or a per-channel vector along y's innermost dim (b8 = C/8); or None."""
    if slot.shape == y.shape and same_storage(slot, y):
        return slot.ref, int(np.prod(y.shape, dtype=np.int64)) // VEC
    k = channel_dim(y)
    access = input_access(slot, tuple(y.shape), k)
    if access.mode == 'chan' and y.shape[k] % VEC == 0 and access.off % VEC == 0:
        return slot.ref + 2 * access.off, int(y.shape[k]) // VEC
    return None


def binary_vec8_launch(name, a, b, y, op):
    """The binary_vec8 launch of y = a (op) b, or None when its layout does not allow it
    (y dense with a multiple of 8 elements; one operand stored like y, the other like y or a
    per-channel vector; the 16-byte alignment holds since every slot starts 256-aligned)."""
    n = int(np.prod(y.shape, dtype=np.int64))
    if not (y.dense() and n % VEC == 0 and n):
        return None
    for first, other, swap in ((a, b, 0), (b, a, 1)):
        rep = _vec8_operand(other, y) if first.shape == y.shape and same_storage(first, y) \
            else None
        if rep is not None:
            fields = dict(a=first.ref, b=rep[0], y=y.ref, n8=n // VEC, b8=rep[1], swap=swap,
                          op=op, act=params.act_record())
            return Launch('elementwise', 'binary_vec8', grid_1d(n // VEC), (BLOCK, 1, 1),
                          BINARY_VEC8, fields, name)
    return None


def scalar_as_channels(lc, name, y):
    """The slot of operand ``name``: a size-1 constant over an output whose innermost dim is a
    multiple of 8 becomes that many copies along it (a per-channel vector: binary_vec8 reads
    it), anything else its own slot."""
    k = channel_dim(y)
    if not (lc.is_const(name) and lc.const(name).size == 1 and y.shape
            and y.shape[k] % VEC == 0 and y.dense()):
        return lc.slot(name)
    shape = [1] * len(y.shape)
    shape[k] = int(y.shape[k])
    return lc.const_slot(np.full(shape, lc.const(name).reshape(()), np.float16))


def _broadcast_strides(slot, out_shape):
    pad = len(out_shape) - len(slot.shape)
    strides = []
    for d, n in enumerate(out_shape):
        if d < pad or slot.shape[d - pad] == 1 and n != 1:
            strides.append(0)
        else:
            strides.append(slot.strides[d - pad])
    return strides


def binary_launch(name, a, b, y, op) -> Launch:
    """y = a (op) b with ONNX broadcasting of a and b to y's shape, over any layouts."""
    fast = binary_vec8_launch(name, a, b, y, op)
    if fast is not None:
        return fast
    n = int(np.prod(y.shape, dtype=np.int64))
    act = params.act_record()
    same = (a.shape == b.shape == y.shape and a.strides == b.strides == y.strides
            and a.dense() and b.dense() and y.dense())
    if same and n % 2 == 0:
        fields = dict(a=a.ref, b=b.ref, y=y.ref, n2=n // 2, op=op, act=act)
        return Launch('elementwise', 'binary_flat2', grid_1d(n // 2), (BLOCK, 1, 1),
                      params.BINARY_FLAT2, fields, name)
    fields = dict(a=a.ref, av=slot_view(a, y.shape, _broadcast_strides(a, y.shape)),
                  b=b.ref, bv=slot_view(b, y.shape, _broadcast_strides(b, y.shape)),
                  y=y.ref, yv=slot_view(y), n=n, op=op, act=act)
    return Launch('elementwise', 'binary', grid_1d(n), (BLOCK, 1, 1), params.BINARY_ARGS,
                  fields, name)


def lower_binary(lc, node):
    """Add, Sub, Mul, Div, Pow; Max and Min of one or more inputs (a copy, or a chain of
    binary launches into the output: y = x0 op x1, then y = y op x2, ...). The planner never
    lets a Max/Min output overwrite an input (``planner.ELEMENTWISE_OPS``), so the chain reads
    every input intact."""
    names = [i for i in node.inputs if i]
    if not names or (len(names) != 2 and node.op not in ('Max', 'Min')):
        lc.unsupported(node, 'exactly two inputs')
    y = lc.slot(node.outputs[0])
    if y.int32:
        return lower_pointwise(lc, node)  # integer maths on int32 index values: generated
    if len(names) == 1:
        x = lc.slot(names[0])
        if x.shape != y.shape:
            lc.unsupported(node, 'one input of another shape than the output')
        return [copy_launch(node.name, x, slot_view(x), y, slot_view(y), np.prod(y.shape))]
    op = params.BINARY[node.op]
    a, b = (scalar_as_channels(lc, name, y) for name in names[:2])
    launches = [binary_launch(node.name, a, b, y, op)]
    for name in names[2:]:
        launches.append(binary_launch(node.name, y, lc.slot(name), y, op))
    return launches


def lower_transpose(lc, node):
    """Transpose as a strided copy."""
    x, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    perm = list(node.attrs.get('perm') or reversed(range(len(x.shape))))
    src = slot_view(x, y.shape, [x.strides[p] for p in perm])
    return _moved_copy(node.name, x, src, y, slot_view(y), np.prod(y.shape))


def _axis(node, rank):
    axis = int(node.attrs.get('axis', 0))
    return axis + rank if axis < 0 else axis


def _moved_copy(name, src, src_view, dst, dst_view, n) -> list:
    """The copy of ``n`` elements, or nothing when source and destination are one place (a
    placed Concat input or a Split output stored as a view, see ``cuda/placement.py`` and
    ``cuda/views.py``)."""
    if same_place(src.ref, src_view, dst.ref, dst_view, src.itemsize):
        return []
    return [copy_launch(name, src, src_view, dst, dst_view, n)]


def lower_concat(lc, node):
    """Concat as one copy per input into its slice of the output (none for placed inputs)."""
    y = lc.slot(node.outputs[0])
    axis, start, launches = _axis(node, len(y.shape)), 0, []
    for name in node.inputs:
        x = lc.slot(name)
        dst = slot_view(y, x.shape, y.strides, start * y.strides[axis])
        launches += _moved_copy(node.name, x, slot_view(x), y, dst, np.prod(x.shape))
        start += x.shape[axis]
    return launches


def lower_split(lc, node):
    """Split as one strided copy per output (none for outputs that are views)."""
    x = lc.slot(node.inputs[0])
    axis, start, launches = _axis(node, len(x.shape)), 0, []
    for name in node.outputs:
        y = lc.slot(name)
        src = slot_view(x, y.shape, x.strides, start * x.strides[axis])
        launches += _moved_copy(node.name, x, src, y, slot_view(y), np.prod(y.shape))
        start += y.shape[axis]
    return launches


def lower_slice(lc, node):
    """Slice (constant starts, ends, axes, steps) as a strided copy (none for a view)."""
    x, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    args = slice_args(lc.graph, node)
    if args is None:
        lc.unsupported(node, 'starts, ends, axes and steps must be constants')
    offset, strides = slice_view(x.shape, x.strides, *args)
    src = slot_view(x, y.shape, strides, offset)
    return _moved_copy(node.name, x, src, y, slot_view(y), np.prod(y.shape))


def io_launch(kernel, src, dst, slot) -> Launch:
    """A graph input's or output's conversion between FP32 in the graph's layout and the FP16
    arena slot ``slot``: ``to_arena_f16`` or ``from_arena_f32`` from ``src`` to ``dst`` (their
    ``_i32`` twins for an int32 slot)."""
    n = int(np.prod(slot.shape, dtype=np.int64))
    c = int(slot.shape[1]) if slot.nhwc else 1
    hw = int(np.prod(slot.shape[2:], dtype=np.int64)) if slot.nhwc else n
    if slot.int32:  # an int32 index value: to_arena_i32 / from_arena_i32
        kernel = kernel.replace('f16', 'i32').replace('f32', 'i32')
    return Launch('io', kernel, grid_1d(n), (BLOCK, 1, 1), IO_CONVERT,
                  dict(x=src, y=dst, n=n, HW=hw, C=c), kernel)
