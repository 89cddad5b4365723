"""Lowering of pooling, reductions, layernorm and activation-activation products."""
import numpy as np

from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.launch import BLOCK, NULL, Launch, Ref, Slot, grid_1d, row_major
from tx2_infer_core.cuda.lower_conv import conv_pads, linear_launch
from tx2_infer_core.cuda.lower_epilogue import fused_epilogue
from tx2_infer_core.cuda.lower_ops import copy_launch, same_storage, slot_view
from tx2_infer_core.cuda.rows import float_data


ANY_DTYPE_REDUCE_OPS = ('ReduceMean', 'ReduceSum', 'ReduceMax', 'ReduceMin')  # the others: float
COPY_REDUCE_OPS = ANY_DTYPE_REDUCE_OPS + ('ReduceProd',)  # of one element: that element
# global pools as reductions over the pixels: (op, LpPool's p or 0) -> params.REDUCE_OPS
EXCITE = 'excite'  # a GlobalAveragePool's squeeze-and-excite convs (cuda/squeeze_excite.py)
GLOBAL_REDUCE_POOLS = {('GlobalAveragePool', 0): 'ReduceMean', ('GlobalLpPool', 1): 'ReduceL1',
                       ('GlobalLpPool', 2): 'ReduceL2'}
GAP_ROWS = 16  # pixel rows of a global_reduce block (at most GAP_MAX_ROWS, kernels/pool.cu)
GAP_BLOCKS_PER_SM = 4  # resident global_reduce blocks of 32 x GAP_ROWS threads an SM holds
MIN_SPLIT_PIXELS = 4 * GAP_ROWS  # pixels of a split: GAP_ROWS threads a channel share them
SPLIT_CELLS = 1024  # ticket counters of the reduce workspace: (image, channel block) cells
SPLIT_PARTIAL_BYTES = 256 << 10  # its FP32 totals: 32 a (cell, split)
REDUCE_WORKSPACE_BYTES = 4 * SPLIT_CELLS + SPLIT_PARTIAL_BYTES


def reduce_splits(n, hw, c, op, sm_count) -> int:
    """Splits of the pixels of a global_reduce of N images of HW pixels, C channels: enough
    blocks (with the N x C/32 of one split) to fill ``sm_count`` SMs, each split of at least
    MIN_SPLIT_PIXELS, the splits' totals inside the workspace; 1 for LogSumExp (its peak is
    over the whole image) and whenever the channel blocks alone fill the GPU."""
    cells = n * -(-c // 32)
    if op == params.REDUCE_OPS['ReduceLogSumExp'] or cells > SPLIT_CELLS:
        return 1
    want = -(-GAP_BLOCKS_PER_SM * sm_count // cells)
    splits = min(want, hw // MIN_SPLIT_PIXELS, SPLIT_PARTIAL_BYTES // (4 * 32 * cells))
    if splits < 2:
        return 1
    return -(-hw // -(-hw // splits))  # no empty split: ceil(hw / per) of per pixels each


def global_reduce_launch(lc, name, fields) -> Launch:
    """The reduction (``fields['op']``: ``params.REDUCE_OPS``, 0 the mean) of ``fields`` (N
    images of HW pixels, C channels) over the pixels: a block per 32 channels of one image
    and split of the pixels (``reduce_splits``), GAP_ROWS threads per channel sharing the
    split's pixels; split, the blocks combine their totals in the reduce workspace."""
    splits = reduce_splits(fields['N'], fields['HW'], fields['C'], fields['op'], lc.sm_count)
    ws = tickets = NULL
    if splits > 1:
        tickets = lc.reduce_workspace()
        ws = Ref(tickets.base, tickets.offset + 4 * SPLIT_CELLS)
    grid = (-(-fields['C'] // 32), fields['N'], splits)
    return Launch('pool', 'global_reduce', grid, (32, GAP_ROWS, 1), params.GLOBAL_REDUCE,
                  dict(fields, ws=ws, tickets=tickets), name)


def excite_launch(lc, node) -> Launch:
    """The one ``squeeze_excite`` launch of a GlobalAveragePool carrying its block's two
    convolutions (``cuda/squeeze_excite.py``): global_reduce's grid and workspace, weights
    [C1][C] and [C][C1] FP16, FP32 biases, both epilogue activations."""
    first, second = node.attrs[EXCITE]
    x, y = nhwc_pair(lc, node)
    n, c, h, w = x.shape
    hidden = lc.const(first.inputs[1]).shape[0]
    tickets = lc.reduce_workspace()
    b1, _, act1, _, _ = fused_epilogue(lc, first)  # (no residual, no PRelu: excite_pair)
    b2, _, act2, _, _ = fused_epilogue(lc, second)
    fields = dict(x=x.ref, y=y.ref, N=n, HW=h * w, C=c, x_pix=x.pix, x_off=x.channel_off,
                  y_pix=y.pix, y_off=y.channel_off, op=params.REDUCE_OPS['ReduceMean'],
                  ws=Ref(tickets.base, tickets.offset + 4 * SPLIT_CELLS), tickets=tickets,
                  w1=lc.add_weight(lc.const(first.inputs[1]).reshape(hidden, c), np.float16),
                  b1=b1, act1=act1, C1=hidden, b2=b2, act2=act2,
                  w2=lc.add_weight(lc.const(second.inputs[1]).reshape(c, hidden), np.float16))
    grid = (-(-c // 32), n, reduce_splits(n, h * w, c, fields['op'], lc.sm_count))
    return Launch('pool', 'squeeze_excite', grid, (32, GAP_ROWS, 1), params.SQUEEZE_EXCITE,
                  fields, node.name)


def nhwc_pair(lc, node) -> tuple:
    """The slots of the node's first input and output, refused unless both are NHWC images."""
    x, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    if not (x.nhwc and y.nhwc):
        lc.unsupported(node, 'only NCHW image tensors (stored NHWC)')
    return x, y


def _lp_order(lc, node) -> int:
    """The ``p`` of an LpPool or GlobalLpPool (refused below 1); 0 for the other pools."""
    if node.op not in ('LpPool', 'GlobalLpPool'):
        return 0
    p = int(node.attrs.get('p', 2))
    if p < 1:
        lc.unsupported(node, f'p={p}: 1 or more')
    return p


def lower_pool(lc, node):
    """MaxPool, AveragePool, LpPool and the global pools over 2-D images (a squeeze-and-excite
    block's GlobalAveragePool: ``excite_launch``)."""
    if EXCITE in node.attrs:
        return [excite_launch(lc, node)]
    if len(node.outputs) > 1 and node.outputs[1]:
        lc.unsupported(node, 'the Indices output')
    rank = len(lc.slot(node.inputs[0]).shape)
    if rank != 4:
        lc.unsupported(node, f'{rank - 2}-D pooling: only 1-D and 2-D (NCHW) images')
    x, y = nhwc_pair(lc, node)
    n, c, h, w = x.shape
    p, q = y.shape[2:]
    io = dict(x=x.ref, y=y.ref, x_pix=x.pix, x_off=x.channel_off, y_pix=y.pix,
              y_off=y.channel_off)
    a, lp = node.attrs, _lp_order(lc, node)
    if (node.op, lp) in GLOBAL_REDUCE_POOLS:
        reduce_op = params.REDUCE_OPS[GLOBAL_REDUCE_POOLS[node.op, lp]]
        fields = dict(io, N=n, HW=h * w, C=c, op=reduce_op)
        return [global_reduce_launch(lc, node.name, fields)]
    if node.op in ('GlobalMaxPool', 'GlobalLpPool'):
        k, st, dil, pads = (h, w), (1, 1), (1, 1), (0, 0)
    else:
        k = list(a['kernel_shape'])
        st = list(a.get('strides') or [1, 1])
        dil = list(a.get('dilations') or [1, 1])
        pads = conv_pads(a, (h, w), (p, q), k, st, dil)
        explicit = list(a.get('pads') or [])
        if a.get('count_include_pad', 0) and explicit and explicit[:2] != explicit[2:]:
            lc.unsupported(node, f'count_include_pad=1 with asymmetric pads {explicit}')
    fields = dict(io, N=n, H=h, W=w, C=c, P=p, Q=q, R=k[0], S=k[1], sh=st[0], sw=st[1],
                  ph=pads[0], pw=pads[1], dh=dil[0], dw=dil[1],
                  is_avg=int(node.op == 'AveragePool'),
                  count_include_pad=int(a.get('count_include_pad', 0)), lp=lp)
    return [Launch('pool', 'pool2d', grid_1d(n * p * q * c), (BLOCK, 1, 1), params.POOL,
                   fields, node.name)]


def _reduce_axes(lc, node, rank):
    """The sorted axes a reduction reduces, or None for a no-op (empty axes with
    ``noop_with_empty_axes=1``)."""
    axes = node.attrs.get('axes')
    if len(node.inputs) > 1 and node.inputs[1]:
        axes = lc.const(node.inputs[1]).astype(np.int64).tolist()
    if axes is None or len(axes) == 0:
        if node.attrs.get('noop_with_empty_axes', 0):
            return None
        axes = range(rank)
    return sorted(int(a) + rank if a < 0 else int(a) for a in axes)


def reduce_geometry(x, axes):
    """(outer dims, inner dims, x_pix, x_off): ``x`` read as [outer, reduced ``axes``, inner]
    in its storage order (NHWC or row-major), the reduced axes a run of it; or None."""
    if x.nhwc and axes == [2, 3]:  # over the pixels, of a channel view too
        return [0], [1], x.pix, x.channel_off
    order = [0, 2, 3, 1] if x.nhwc else list(range(len(x.shape)))
    at = sorted(order.index(a) for a in axes)
    if not x.dense() or at != list(range(at[0], at[-1] + 1)):
        return None
    inner = order[at[-1] + 1:]
    return order[:at[0]], inner, _size(x.shape, inner), 0


def _size(shape, dims) -> int:
    return int(np.prod([shape[d] for d in dims], dtype=np.int64))


def flat_stride(sizes, strides):
    """s when ``strides`` are s times the row-major strides of ``sizes`` (size-1 dims aside;
    1 when there is no other), else None."""
    inner, found = 1, None
    for n, stride in zip(reversed(sizes), reversed(strides)):
        if n > 1:
            if stride % inner or (found is not None and stride != found * inner):
                return None
            found = stride // inner
        inner *= n
    return 1 if found is None else found


def output_geometry(y, rank, axes, outer, inner):
    """(y_pix, y_off): where slot ``y`` holds output (outer o, inner c) of a reduction of a
    rank ``rank`` input over ``axes`` (``o * y_pix + y_off + c``: row-major, NHWC, a channel
    slice, any keepdims); None when it does not."""
    kept = [d for d in range(rank) if d not in axes]
    at = (lambda d: d) if len(y.shape) == rank else kept.index
    strides = {d: int(y.strides[at(d)]) for d in kept}
    if flat_stride([y.shape[at(d)] for d in inner], [strides[d] for d in inner]) != 1:
        return None
    y_pix = flat_stride([y.shape[at(d)] for d in outer], [strides[d] for d in outer])
    return None if y_pix is None else (y_pix, y.channel_off)


def lower_reduce(lc, node):
    """The ONNX Reduce ops (``params.REDUCE_OPS``) over a run of axes of the input's storage
    order (all of them: a scalar), any keepdims, with the global reduction kernel."""
    x, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    if node.op not in ANY_DTYPE_REDUCE_OPS:
        float_data(lc, node)
    axes = _reduce_axes(lc, node, len(x.shape))
    if not axes and node.op in COPY_REDUCE_OPS:  # a no-op, or a scalar's reduction: a copy
        return [copy_launch(node.name, x, slot_view(x), y, slot_view(y), np.prod(y.shape))]
    if not axes:
        return _each_element(lc, node, x, y)
    if 0 in x.shape:
        lc.unsupported(node, f'an empty input {x.shape}')
    geo = reduce_geometry(x, axes)
    out = geo and output_geometry(y, len(x.shape), axes, geo[0], geo[1])
    if not out:
        lc.unsupported(node, f'axes {axes}: a run of adjacent axes of the stored order, kept '
                             'in order in the output')
    (outer, inner, x_pix, x_off), (y_pix, y_off) = geo, out
    fields = dict(x=x.ref, y=y.ref, N=_size(x.shape, outer), HW=_size(x.shape, axes),
                  C=_size(x.shape, inner), x_pix=x_pix, x_off=x_off, y_pix=y_pix, y_off=y_off,
                  op=params.REDUCE_OPS[node.op])
    return [global_reduce_launch(lc, node.name, fields)]


def _each_element(lc, node, x, y):
    """A reduction of no axes (or of a rank-0 input) that is not a copy (|x|, log x, ...):
    every element its own reduction of one pixel, in place in y after a copy when x is stored
    apart."""
    n = int(np.prod(y.shape, dtype=np.int64))
    launches = []
    if not same_storage(x, y):
        launches.append(copy_launch(node.name, x, slot_view(x), y, slot_view(y), n))
        x = y
    fields = dict(x=x.ref, y=y.ref, N=1, HW=1, C=n, x_pix=1, x_off=x.channel_off, y_pix=0,
                  y_off=y.channel_off, op=params.REDUCE_OPS[node.op])
    return launches + [global_reduce_launch(lc, node.name, fields)]


def lower_layernorm(lc, node):
    """LayerNormalization over the axes from ``axis`` on (row-major), with the optional Mean
    and InvStdDev outputs."""
    x, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    rank = len(x.shape)
    axis = int(node.attrs.get('axis', -1))
    axis = axis + rank if axis < 0 else axis
    stats = [lc.slot(o) if o else None for o in (list(node.outputs[1:3]) + ['', ''])[:2]]
    if not (0 <= axis < rank and x.contiguous() and y.contiguous()
            and all(s is None or s.contiguous() for s in stats)):
        lc.unsupported(node, 'row-major tensors only')
    norm = tuple(x.shape[axis:])
    n = int(np.prod(norm, dtype=np.int64))

    def per_channel(name):
        return lc.add_weight(np.broadcast_to(lc.const(name).astype(np.float32), norm)
                             .reshape(n).copy())

    gamma = per_channel(node.inputs[1])
    beta = per_channel(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else NULL
    rows = int(np.prod(x.shape[:axis], dtype=np.int64))
    return [layernorm_launch(node.name, x.ref, y.ref, (gamma, beta), rows, n,
                             float(node.attrs.get('epsilon', 1e-5)),
                             [s.ref if s else NULL for s in stats])]


def layernorm_launch(name, x, y, affine, rows, n, eps, stats=(NULL, NULL)) -> Launch:
    """The ``kernels/layernorm.cu`` launch normalising ``rows`` contiguous rows of ``n`` at Ref
    ``x`` into ``y`` (may be ``x``): ``affine`` the (gamma, beta or NULL) FP32 weight Refs,
    ``stats`` the Mean and InvStdDev outputs' Refs or NULL."""
    fields = dict(x=x, gamma=affine[0], beta=affine[1], y=y, rows=rows, n=n, eps=eps,
                  mean_out=stats[0], rstd_out=stats[1])
    return Launch('layernorm', 'layernorm', grid_1d(rows * 32), (BLOCK, 1, 1),
                  params.LAYERNORM, fields, name)


def _batch(slot, out_batch):
    """Strides of the two (padded) batch dims of an operand of a batched product."""
    shape, strides = list(slot.shape[:-2]), list(slot.strides[:-2])
    while len(shape) < 2:
        shape.insert(0, 1)
        strides.insert(0, 0)
    return [0 if shape[i] == 1 and out_batch[i] != 1 else strides[i] for i in range(2)]


def _matrices(a, b, y) -> tuple:
    """Slots of a MatMul with 1-D operands seen as matrices, as numpy does: A (K,) as (1, K),
    B (K,) as (K, 1), the output with those unit dims put back (same bytes)."""
    shape = list(y.shape)
    if len(a.shape) == 1:
        shape.insert(len(shape) - (len(b.shape) > 1), 1)
        a = Slot(a.ref, (1, a.shape[0]), (0, a.strides[0]))
    if len(b.shape) == 1:
        shape.append(1)
        b = Slot(b.ref, (b.shape[0], 1), (b.strides[0], 0))
    if len(shape) != len(y.shape):
        if not y.contiguous():
            return a, b, y  # refused by the caller
        y = Slot(y.ref, tuple(shape), row_major(shape))
    return a, b, y


def lower_matmul(lc, node):
    """MatMul: constant B -> 1x1 convolution (tensor cores); else the batched SIMT kernel.
    FusedLinear: that 1x1 convolution with its bias, activation and residual in the epilogue."""
    if lc.is_const(node.inputs[1]) and lc.const(node.inputs[1]).ndim == 2:
        b = lc.const(node.inputs[1]).astype(np.float32)
        return [linear_launch(lc, node, lc.slot(node.inputs[0]), lc.slot(node.outputs[0]),
                              b.T, epilogue=fused_epilogue(lc, node))]
    if node.op != 'MatMul':
        lc.unsupported(node, 'a product by anything but a constant matrix')
    a, b, y = _matrices(lc.slot(node.inputs[0]), lc.slot(node.inputs[1]),
                        lc.slot(node.outputs[0]))
    if len(y.shape) > 4 or min(len(a.shape), len(b.shape)) < 2 or not y.contiguous():
        lc.unsupported(node, 'batched MatMul of rank 2 to 4 operands')
    out_batch = ([1, 1] + list(y.shape[:-2]))[-2:]
    ab, bb = _batch(a, out_batch), _batch(b, out_batch)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    fields = dict(a=a.ref, b=b.ref, bias=NULL, y=y.ref, M=m, N=n, K=k, B1=out_batch[0],
                  B2=out_batch[1], a_b1=ab[0], a_b2=ab[1], a_m=a.strides[-2],
                  a_k=a.strides[-1], b_b1=bb[0], b_b2=bb[1], b_k=b.strides[-2],
                  b_n=b.strides[-1], alpha=1.0, act=params.act_record())
    grid = (-(-m // 64), -(-n // 64), out_batch[0] * out_batch[1])
    return [Launch('gemm', 'matmul', grid, (BLOCK, 1, 1), params.GEMM, fields, node.name)]
