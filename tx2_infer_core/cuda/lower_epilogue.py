"""The fused epilogue of a convolution-class node (FusedConv, FusedConvTranspose, FusedLinear)
as ``ConvParams`` fields: the FP32 bias, the residual rows, the ActParams of its activation and
PRelu's FP32 slope per output channel (``kernels/conv.cuh`` ``conv_epilogue``)."""
import numpy as np

from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.launch import NULL
from tx2_infer_core.passes.weights import channel_vector, column_vector


def fused_epilogue(lc, node) -> tuple:
    """(bias Ref, residual (Ref, pix, channel offset) or None, ActParams, residual_after_act,
    PRelu slope Ref) of a convolution-class node: inputs (x, w, bias, residual, slope),
    FusedConv attributes (a plain Conv or ConvTranspose has none: no activation)."""
    a = node.attrs
    bias = node.inputs[2] if len(node.inputs) > 2 else ''
    bias_ref = lc.add_weight(lc.const(bias).astype(np.float32)) if bias else NULL
    res = node.inputs[3] if len(node.inputs) > 3 else ''
    res_t = residual_rows(lc, node, res) if res else None
    act = epilogue_act(a)
    return bias_ref, res_t, act, a.get('residual_after_act', 0), prelu_slope(lc, node)


def epilogue_act(attrs):
    """The ActParams of a fused node's attributes: its activation and post-activation affine
    (``post_scale``, ``post_shift``; ops/fused.py ``post_affine``)."""
    a = attrs
    return params.act_record(a.get('activation', ''), a.get('alpha', 0.01), a.get('beta', 0.5),
                             a.get('clip_min', -np.inf), a.get('clip_max', np.inf),
                             a.get('post_scale', 1.0), a.get('post_shift', 0.0))


def prelu_slope(lc, node):
    """The weight Ref of a fused PRelu's slope, one FP32 value per output channel (the
    channels of an NHWC image output, else its last dim); NULL for another activation."""
    name = node.inputs[4] if len(node.inputs) > 4 else ''
    if node.attrs.get('activation', '') != 'PRelu':
        return NULL
    if not name or not lc.is_const(name):
        lc.unsupported(node, 'activation PRelu without a constant slope input')
    y, slope = lc.slot(node.outputs[0]), lc.const(name)
    per_channel = channel_vector if y.nhwc else column_vector
    vector = per_channel(slope, len(y.shape), y.shape[1] if y.nhwc else y.shape[-1])
    if vector is None:
        lc.unsupported(node, f'a PRelu slope of shape {list(slope.shape)}: not one value per '
                             f'channel of the output {list(y.shape)}')
    return lc.add_weight(vector.astype(np.float32))


def residual_rows(lc, node, name) -> tuple:
    """(Ref, pix, channel offset) of residual ``name``: an NHWC image beside an NHWC output, or
    a row-major tensor of a row-major output's shape (rows of its last dim)."""
    rs, y = lc.slot(name), lc.slot(node.outputs[0])
    if rs.nhwc and y.nhwc:
        return rs.ref, rs.pix, rs.channel_off
    if not (rs.nhwc or y.nhwc) and rs.contiguous() and y.contiguous() and rs.shape == y.shape:
        return rs.ref, rs.shape[-1], 0
    lc.unsupported(node, 'a residual that is not an NCHW image, nor row-major of the output '
                   'shape')
