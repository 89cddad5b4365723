"""Lowering of ``ConvTranspose`` and ``FusedConvTranspose`` (ConvTranspose, then FusedConv's
bias, activation and residual epilogue) to ``kernels/conv_transpose.cu``.

The kernel gathers: output pixel (oh, ow) of channel k sums ``x[ih][iw][c] * w[k][r][s][c]``
over the taps with ``oh + ph - r*dh == ih*sh`` (likewise for columns), where ``ph``/``pw`` are
the begin pads ONNX means (``transpose_begin_pads``: ``pads``, ``auto_pad``, ``output_shape``)
and the output size is the graph's. The ONNX weights ``[C_in, C_out/group, R, S]`` are
repacked to ``[C_out][R][S][C_in/group]`` (``repack_weights``), the layout of Conv's weights,
so the ConvParams record and the epilogue are FusedConv's. The output pixels are split in
``sh * sw`` phases (``oh % sh``, ``ow % sw``): one phase per CTA, so no tap is computed for
nothing. SIMT on any arch (sm_62 included), WMMA tensor cores on sm_70+.
"""
import numpy as np

from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.launch import Launch
from tx2_infer_core.cuda.lower_conv import TC_MIN_ARCH, conv_fields
from tx2_infer_core.cuda.lower_epilogue import fused_epilogue

TILE = 64  # CONVT_BM == CONVT_BN: output pixels and channels of a CTA
MAX_GRID_Z = 65535


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def full_sizes(in_hw, kernel, strides, dilations, output_padding) -> list:
    """The uncropped output size per spatial axis: ``s*(i-1) + (k-1)*d + 1 + output_padding``."""
    return [s * (i - 1) + (k - 1) * d + 1 + p
            for i, k, s, d, p in zip(in_hw, kernel, strides, dilations, output_padding)]


def transpose_begin_pads(attrs, in_hw, kernel, out_hw) -> list:
    """[top, left] begin pads of a 2-D ConvTranspose of input ``in_hw`` with a ``kernel``
    producing ``out_hw``, by the rules of the reference (``ops/conv.py``): explicit ``pads``
    (``auto_pad`` NOTSET) give their begins; with ``output_shape`` or SAME_* the total
    ``full - out`` is split, ``total // 2`` first for SAME_UPPER and ``total - total // 2``
    otherwise; VALID (or NOTSET with neither) pads nothing. May be negative (an output
    larger than the full one)."""
    auto = _text(attrs.get('auto_pad', 'NOTSET'))
    pads = list(attrs.get('pads') or [])
    if pads and auto == 'NOTSET':
        return pads[:2]
    if not attrs.get('output_shape') and auto not in ('SAME_UPPER', 'SAME_LOWER'):
        return [0, 0]
    full = full_sizes(in_hw, kernel, list(attrs.get('strides') or [1, 1]),
                      list(attrs.get('dilations') or [1, 1]),
                      list(attrs.get('output_padding') or [0, 0]))
    totals = [f - o for f, o in zip(full, out_hw)]
    return [t // 2 if auto == 'SAME_UPPER' else t - t // 2 for t in totals]


def repack_weights(w, group) -> np.ndarray:
    """ONNX ConvTranspose weights ``[C_in, C_out/group, R, S]`` as ``[C_out][R][S][C_in/group]``:
    row ``g * C_out/group + j`` holds the weights of output channel j of group g."""
    c_in, per_group, r, s = w.shape
    grouped = np.asarray(w).reshape(group, c_in // group, per_group, r, s)
    return np.ascontiguousarray(grouped.transpose(0, 2, 3, 4, 1)).reshape(
        group * per_group, r, s, c_in // group)


def geometry(node, x_shape, w_shape, y_shape) -> dict:
    """The ConvParams geometry of a 2-D ConvTranspose: input H, W; output P, Q; Cg input and
    Kg output channels a group; kernel, strides, begin pads and dilations."""
    a = node.attrs
    n, _, h, wd = x_shape
    c_in, per_group, r, s = w_shape
    groups = int(a.get('group', 1))
    st = list(a.get('strides') or [1, 1])
    dil = list(a.get('dilations') or [1, 1])
    p, q = y_shape[2:]
    ph, pw = transpose_begin_pads(a, (h, wd), (r, s), (p, q))
    return dict(N=n, H=h, W=wd, P=p, Q=q, Cg=c_in // groups, Kg=per_group, groups=groups, R=r,
                S=s, sh=st[0], sw=st[1], ph=ph, pw=pw, dh=dil[0], dw=dil[1])


def pick_kernel(arch: int, path: str, aligned) -> tuple:
    """(kernel name, threads): WMMA on the tensor-core path (sm_70+), else SIMT; the vector
    form where ``aligned(n)`` says n-half loads of the input channels fit."""
    if path == 'tc' and arch >= TC_MIN_ARCH:
        return ('convt_wmma_v8' if aligned(8) else 'convt_wmma'), 128
    return ('convt_simt_v4' if aligned(4) else 'convt_simt'), 256


def grid(geo) -> tuple:
    """One CTA per 64 pixels of the largest phase, 64 channels, and (group, phase)."""
    rows, cols = -(-geo['P'] // geo['sh']), -(-geo['Q'] // geo['sw'])
    return (-(-geo['N'] * rows * cols // TILE), -(-geo['Kg'] // TILE),
            geo['groups'] * geo['sh'] * geo['sw'])


def lower_conv_transpose(lc, node):
    """ConvTranspose or FusedConvTranspose over NHWC slots (2-D, constant weights)."""
    x, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    w = lc.const(node.inputs[1])
    if w.ndim != 4 or not (x.nhwc and y.nhwc):
        lc.unsupported(node, 'only 1-D and 2-D transposed convolutions of NCHW image tensors')
    geo = geometry(node, x.shape, w.shape, y.shape)
    if min(geo['sh'], geo['sw'], geo['dh'], geo['dw']) < 1:
        lc.unsupported(node, 'strides and dilations below 1')
    launch_grid = grid(geo)
    if launch_grid[2] > MAX_GRID_Z:
        lc.unsupported(node, f'groups * strides = {launch_grid[2]} CTAs along z')
    w_ref = lc.add_weight(repack_weights(w, geo['groups']).astype(np.float16))
    fields = conv_fields((x.ref, x.pix, x.channel_off), (y.ref, y.pix, y.channel_off), geo,
                         w_ref, *fused_epilogue(lc, node))

    def aligned(n):
        return all(v % n == 0 for v in (geo['Cg'], x.pix, x.channel_off))

    kernel, threads = pick_kernel(lc.arch, lc.conv_path, aligned)
    return [Launch('conv_transpose', kernel, launch_grid, (threads, 1, 1), params.CONV, fields,
                   node.name)]
