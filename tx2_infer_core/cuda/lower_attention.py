"""Lowering of ``FusedAttention`` (``ops/attention.py``) to ``kernels/attention.cu``: one launch.

``attention_mma`` (tensor cores, sm_80+ on the 'tc' path): one CTA per (batch * head, 16 query
rows a warp, up to ``MMA_WARPS`` warps); ``attention_simt`` (older GPUs, the TX2, or
``conv_path='simt'``): one CTA per (batch * head, ``SIMT_ROWS`` query rows). Both take keys a
shared-memory tile at a time, so any sequence length runs. The operands' views become element
strides of their slots (the view offset goes into the address).

Refused, naming the node: head sizes over ``MAX_HEAD``, an operand or output not stored
row-major (an NHWC image), a view reaching outside its tensor or past 2^31 elements.
"""
import numpy as np

from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.launch import NULL, Launch, row_major
from tx2_infer_core.cuda.launch_knobs import attention_warps
from tx2_infer_core.cuda.lower_conv import MMA_MIN_ARCH

MAX_HEAD = 128       # ATT_MAX_D
SMALL_HEAD = 64      # -DATT_MMA_D of attention_mma's build for small heads
MMA_WARPS = 4        # warps of an attention_mma CTA at most (16 query rows each): the
#                      kernel's row mapping and staging loops take any count up to it
SIMT_ROWS = 16       # query rows of an attention_simt CTA (ATT_SIMT_WARPS * ATT_SIMT_ROWS)
SIMT_THREADS = 128
VEC = 8              # halves of a 16-byte load
ATTN = np.dtype([(n, params.PTR) for n in ('q', 'k', 'v', 'mask', 'y')]
                + [(n, 'i4') for n in ('B', 'H', 'Sq', 'Sk', 'D', 'Dv')]
                + [(f'{t}_{s}', 'i4') for t, axes in (('q', 'bhsd'), ('k', 'bhsd'),
                                                      ('v', 'bhsd'), ('m', 'bhsk'),
                                                      ('y', 'bhsd'))
                   for s in axes]
                + [('vec', 'i4'), ('scale', 'f4')], align=True)
INT_MAX = 2 ** 31 - 1


def _reach(view, shape) -> tuple:
    """(lowest, highest) element index a ``[offset, *strides]`` view touches over ``shape``."""
    low = view[0] + sum((n - 1) * min(s, 0) for n, s in zip(shape, view[1:]))
    high = view[0] + sum((n - 1) * max(s, 0) for n, s in zip(shape, view[1:]))
    return low, high


def strided(lc, node, name, view, shape) -> tuple:
    """(address of the view's first element, its 4 strides) of operand ``name``, refused
    unless its slot is row-major and the view stays inside it."""
    slot = lc.slot(name)
    size = int(np.prod(slot.shape, dtype=np.int64))
    low, high = _reach(view, shape)
    if not slot.contiguous():
        lc.unsupported(node, f"'{name}' is not stored row-major (an NHWC image)")
    if low < 0 or high >= size or size > INT_MAX:
        lc.unsupported(node, f"view {list(view)} of '{name}' reaches outside its {size} "
                       'elements (or past 2^31)')
    return slot.ref + 2 * int(view[0]), [int(s) for s in view[1:]]


def mask_strides(lc, node, name, dims) -> tuple:
    """(address, strides of batch, head, row, key) of the mask broadcast to the scores."""
    if not name:
        return NULL, [0, 0, 0, 0]
    slot = lc.slot(name)
    shape = (1,) * (4 - len(slot.shape)) + tuple(slot.shape)
    if not slot.contiguous() or len(slot.shape) > 4:
        lc.unsupported(node, f"mask '{name}' is not a row-major tensor of rank <= 4")
    full = (dims[0], dims[1], dims[2], dims[3])
    if any(n not in (1, f) for n, f in zip(shape, full)):
        lc.unsupported(node, f'mask of shape {slot.shape} does not broadcast to {full}')
    return slot.ref, [0 if n == 1 else s for n, s in zip(shape, row_major(shape))]


def vectorised(views, dims) -> bool:
    """Whether K and V rows are 16-byte aligned runs of halves (``vec`` loads)."""
    k, v = views
    d, dv = dims[4], dims[5]
    return (d % VEC == 0 and dv % VEC == 0 and k[4] == 1 and v[4] == 1
            and all(x % VEC == 0 for view in (k, v) for x in view[:4]))


def launch_shape(lc, dims) -> tuple:
    """(module, kernel, grid, block) for this target: blockIdx.x = batch * head, y = query
    tile; an attention_mma CTA has ``attention_warps`` warps at most ($TX2_INFER_ATTN_WARPS),
    and heads of ``SMALL_HEAD`` or less take its build for them (half the registers and
    code, double-buffered keys)."""
    heads, sq = dims[0] * dims[1], dims[2]
    if lc.arch >= MMA_MIN_ARCH and lc.conv_path == 'tc':
        warps = min(attention_warps(lc.arch), -(-sq // 16))
        small = max(dims[4], dims[5]) <= SMALL_HEAD
        module = f'attention@ATT_MMA_D={SMALL_HEAD}' if small else 'attention'
        return (module, 'attention_mma', (heads, -(-sq // (16 * warps)), 1),
                (32 * warps, 1, 1))
    return 'attention', 'attention_simt', (heads, -(-sq // SIMT_ROWS), 1), (SIMT_THREADS, 1, 1)


def lower_attention(lc, node):
    """FusedAttention -> one attention_mma or attention_simt launch."""
    a = node.attrs
    dims = [int(d) for d in a['dims']]
    b, h, sq, sk, d, dv = dims
    if max(d, dv) > MAX_HEAD:
        lc.unsupported(node, f'head size {max(d, dv)} over {MAX_HEAD}')
    shapes = ((b, h, sq, d), (b, h, sk, d), (b, h, sk, dv))
    names = node.inputs[:3]
    ops = [strided(lc, node, n, a[f'{t}_view'], s)
           for n, t, s in zip(names, 'qkv', shapes)]
    y = strided(lc, node, node.outputs[0], a['out_view'], (b, h, sq, dv))
    mask = mask_strides(lc, node, node.inputs[3] if len(node.inputs) > 3 else '', dims)
    fields = dict(q=ops[0][0], k=ops[1][0], v=ops[2][0], mask=mask[0], y=y[0],
                  B=b, H=h, Sq=sq, Sk=sk, D=d, Dv=dv, scale=float(a['scale']),
                  vec=int(vectorised([a['k_view'], a['v_view']], dims)))
    for t, (_, strides) in zip(('q', 'k', 'v', 'm', 'y'), ops + [mask, y]):
        axes = 'bhsk' if t == 'm' else 'bhsd'
        fields.update({f'{t}_{s}': v for s, v in zip(axes, strides)})
    module, kernel, grid, block = launch_shape(lc, dims)
    return [Launch(module, kernel, grid, block, ATTN, fields, node.name)]
