"""Lowering of the INT8 ops (notes/int8.md) to ``kernels/conv_int8.cu`` and
``kernels/conv_int8_mma.cu``.

``FusedConvInt8`` runs on one of two paths, chosen per graph by ``int8_path``:

- 'dp4a': SIMT ``__dp4a`` kernels (sm_61+; what a Jetson TX2, sm_62, and in this version a
  Xavier, sm_72, run), ``conv_dp4a_w`` (4-byte loads) or ``conv_dp4a`` (byte gathers);
- 'mma': integer tensor cores ``conv_i8_mma_<BM>x<BN>`` (mma.sync m16n8k32 s8, sm_80+), tile
  and split-K from ``lower_conv.mma_config``; a layer whose channels are not 16-byte rows
  (Cg, pixel stride or channel offset not a multiple of 16) takes the dp4a kernel instead.

'auto' is 'mma' from sm_80, else 'dp4a'; 'dp4a' may be forced on any GPU (the TX2 path measured
on an H200). Int8 activations are NHWC with the pixel stride padded to a multiple of 4 channels
(``cuda/layout.py``); the weights are laid out here as [K][R][S][Cw * 4] int8, input channels
of a group zero-padded to Cw words, so the padding bytes of an activation meet zero weights.
``QuantizeLinear`` / ``DequantizeLinear`` (per tensor, zero point 0, int8) lower to pointwise
kernels over NHWC images.
"""
import numpy as np

from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.launch import BLOCK, NULL, Launch, grid_1d
from tx2_infer_core.cuda.lower_conv import conv_geometry, mma_config, tile_launches
from tx2_infer_core.cuda.lower_epilogue import epilogue_act
from tx2_infer_core.errors import Tx2InferError
from tx2_infer_core.int8.quant_math import requant_multipliers

INT8_PATHS = ('auto', 'dp4a', 'mma')
DP4A_MIN_ARCH = 61
MMA_MIN_ARCH = 80
I8_MMA_BK = 64  # int8 channels per k tile of conv_i8_mma (I8_MMA_BK)
MMA_ROW = 16  # bytes per cp.async: Cg, pixel stride and channel offset multiples of it
DP4A_TILE = 64  # I8_BM = I8_BN
# conv_i8_mma's argument list: ConvI8Params, then the split-K workspace and factor.
CONV_I8_MMA = np.dtype([(n, params.CONV_I8.fields[n][0]) for n in params.CONV_I8.names]
                       + [('ws', params.PTR), ('splits', 'i4')], align=True)
INT8 = np.dtype(np.int8)


def resolve_int8_path(arch: int, int8_path: str = 'auto') -> str:
    """'mma' or 'dp4a' for ``int8_path`` 'auto', 'dp4a' or 'mma' on ``arch``."""
    if int8_path not in INT8_PATHS:
        raise Tx2InferError(f"int8_path must be one of {', '.join(INT8_PATHS)}, not "
                            f"'{int8_path}'")
    if int8_path == 'mma' and arch < MMA_MIN_ARCH:
        raise Tx2InferError(f"int8_path 'mma' needs sm_{MMA_MIN_ARCH}+ (integer mma.sync); "
                            f"this GPU is sm_{arch}: use 'dp4a' or 'auto'")
    if int8_path == 'auto':
        return 'mma' if arch >= MMA_MIN_ARCH else 'dp4a'
    return int8_path


def int8_weights(w) -> np.ndarray:
    """int8 [K, Cg, R, S] -> [K, R, S, Cw * 4] (OHWI), channels zero-padded to 4-byte words."""
    k, cg, r, s = w.shape
    out = np.zeros((k, r, s, -(-cg // 4) * 4), np.int8)
    out[..., :cg] = w.transpose(0, 2, 3, 1)
    return out


def _is_int8(lc, name) -> bool:
    return np.dtype(lc.dtype_of(name)) == INT8


def _image_slot(lc, node, name, want_int8):
    """The NHWC slot of image ``name``, refused unless it is int8 (or float) as wanted."""
    slot = lc.slot(name)
    if not slot.nhwc:
        lc.unsupported(node, f"'{name}' is not an NCHW image (NHWC in the arena)")
    if _is_int8(lc, name) != want_int8:
        lc.unsupported(node, f"'{name}' is {lc.dtype_of(name)}; the kernel wants "
                             f"{'int8' if want_int8 else 'a float'}")
    return slot


def _epilogue_fields(lc, node, k_total) -> dict:
    """Bias, dequant multipliers, residual, requantisation and activation fields."""
    a = node.attrs
    if a.get('activation') == 'PRelu':
        lc.unsupported(node, 'activation PRelu (the int8 epilogue has no per-channel slope)')
    w_scales = np.asarray(a['w_scales'], np.float32).reshape(-1)
    if w_scales.size != k_total:
        lc.unsupported(node, f'{w_scales.size} w_scales for {k_total} output channels')
    dq, inv_out = requant_multipliers(a['x_scale'], w_scales, a.get('out_scale', 0.0))
    out_int8 = _is_int8(lc, node.outputs[0])
    if out_int8 != (inv_out > 0):
        lc.unsupported(node, f"out_scale {a.get('out_scale', 0.0)} with a "
                             f'{lc.dtype_of(node.outputs[0])} output')
    bias = node.inputs[2] if len(node.inputs) > 2 else ''
    fields = dict(dq=lc.add_weight(dq), out_inv=float(inv_out), res=NULL, res_after=0,
                  res_int8=0, res_scale=0.0, r_pix=0, r_off=0,
                  bias=lc.add_weight(lc.const(bias).astype(np.int32).reshape(-1))
                  if bias else NULL,
                  act=epilogue_act(a))
    res = node.inputs[3] if len(node.inputs) > 3 else ''
    if res:
        res_int8 = _is_int8(lc, res)
        rs = _image_slot(lc, node, res, res_int8)
        fields.update(res=rs.ref, r_pix=rs.pix, r_off=rs.channel_off, res_int8=int(res_int8),
                      res_after=int(a.get('residual_after_act', 0)),
                      res_scale=float(np.float32(a.get('residual_scale', 0.0))))
    return fields


def lower_conv_int8(lc, node):
    """FusedConvInt8 over NHWC int8 input; int8 (out_scale > 0) or fp16 output."""
    if lc.arch < DP4A_MIN_ARCH:
        lc.unsupported(node, f'int8 convolutions need dp4a (sm_{DP4A_MIN_ARCH}+); this GPU '
                             f'is sm_{lc.arch}')
    a = node.attrs
    x = _image_slot(lc, node, node.inputs[0], True)
    y = lc.slot(node.outputs[0])
    if not y.nhwc:
        lc.unsupported(node, 'the output is not an NCHW image')
    w = lc.const(node.inputs[1])
    if w.dtype != INT8 or w.ndim != 4:
        lc.unsupported(node, f'weights must be int8 [K, C/group, R, S], not {w.dtype} '
                             f'{list(w.shape)}')
    k, cg = w.shape[:2]
    geo = conv_geometry(a, x.shape, y.shape, w.shape)
    geo['Cw'] = -(-cg // 4)   # 4-byte words of int8 channels per pixel
    fields = dict(geo, x=x.ref, x_pix=x.pix, x_off=x.channel_off, y=y.ref, y_pix=y.pix,
                  y_off=y.channel_off, w=lc.add_weight(int8_weights(w)),
                  **_epilogue_fields(lc, node, k))
    if lc.int8_path == 'mma' and all(v % MMA_ROW == 0 for v in (cg, x.pix, x.channel_off)):
        return mma_launches(lc, node.name, fields, geo)
    return [dp4a_launch(node.name, fields, geo)]


def dp4a_kernel(geo, x_pix, x_off) -> str:
    """'conv_dp4a_w' where every 4-channel word of a pixel is one aligned 4-byte load (the
    padding of a single group's last word lies inside the pixel), else 'conv_dp4a'."""
    cg, cw = geo['Cg'], geo['Cw']
    words = x_pix % 4 == 0 and x_off % 4 == 0 and (
        cg % 4 == 0 or (geo['groups'] == 1 and x_off + cw * 4 <= x_pix))
    return 'conv_dp4a_w' if words else 'conv_dp4a'


def dp4a_launch(name, fields, geo) -> Launch:
    """The conv_dp4a launch: 64x64 output tiles, one grid z per group."""
    m = geo['N'] * geo['P'] * geo['Q']
    grid = (-(-m // DP4A_TILE), -(-geo['Kg'] // DP4A_TILE), geo['groups'])
    return Launch('conv_int8', dp4a_kernel(geo, fields['x_pix'], fields['x_off']), grid,
                  (256, 1, 1), params.CONV_I8, fields, name)


def mma_launches(lc, name, fields, geo) -> list:
    """The conv_i8_mma launch (and its split-K reduction) of one convolution."""
    m = geo['N'] * geo['P'] * geo['Q']
    ktiles = geo['R'] * geo['S'] * -(-geo['Cg'] // I8_MMA_BK)
    bm, bn, threads, splits = mma_config(m, geo['Kg'], ktiles, geo['groups'], lc.sm_count)
    return tile_launches(lc, name, ('conv_int8_mma', f'conv_i8_mma_{bm}x{bn}',
                                    'CONV_I8_MMA_CLUSTER', 'conv_i8_splitk_reduce'),
                         CONV_I8_MMA, fields, geo, (bm, bn, threads, splits))


def _boundary_scale(lc, node) -> float:
    """The per-tensor scale of a QuantizeLinear/DequantizeLinear (zero point 0, int8)."""
    a = node.attrs
    if a.get('block_size', 0) or a.get('output_dtype', 0) not in (0, 3) or a.get(
            'precision', 0):
        lc.unsupported(node, 'block_size, precision or an output_dtype other than INT8')
    scale_name = node.inputs[1]
    zp = node.inputs[2] if len(node.inputs) > 2 else ''
    if not lc.is_const(scale_name) or lc.const(scale_name).size != 1:
        lc.unsupported(node, 'only a constant per-tensor scale')
    if zp and (not lc.is_const(zp) or lc.const(zp).dtype != INT8 or lc.const(zp).any()):
        lc.unsupported(node, 'only int8 with zero point 0 (symmetric)')
    scale = float(lc.const(scale_name).reshape(()))
    if not (np.isfinite(scale) and scale > 0):
        lc.unsupported(node, f'scale {scale} is not a finite number > 0')
    return scale


def _boundary_launch(lc, node, kernel, x, y, cpad) -> Launch:
    n, c, h, w = x.shape
    fields = dict(x=x.ref, y=y.ref, pixels=n * h * w, C=c, cpad=cpad, x_pix=x.pix,
                  x_off=x.channel_off, y_pix=y.pix, y_off=y.channel_off,
                  scale=float(np.float32(_boundary_scale(lc, node))))
    return Launch('conv_int8', kernel, grid_1d(n * h * w * cpad), (BLOCK, 1, 1), params.QUANT,
                  fields, node.name)


def lower_quantize(lc, node):
    """QuantizeLinear: fp16 NHWC image -> int8 NHWC, the pixel's padding channels set to 0."""
    if node.outputs[0] in lc.graph.outputs:
        lc.unsupported(node, 'an int8 graph output (the I/O staging is float)')
    x = _image_slot(lc, node, node.inputs[0], False)
    y = _image_slot(lc, node, node.outputs[0], True)
    cpad = y.pix if y.channel_off == 0 else y.shape[1]
    return [_boundary_launch(lc, node, 'quantize_nhwc', x, y, cpad)]


def lower_dequantize(lc, node):
    """DequantizeLinear: int8 NHWC image -> fp16 NHWC."""
    if node.inputs[0] in lc.graph.inputs:
        lc.unsupported(node, 'an int8 graph input (the I/O staging is float)')
    x = _image_slot(lc, node, node.inputs[0], True)
    y = _image_slot(lc, node, node.outputs[0], False)
    return [_boundary_launch(lc, node, 'dequantize_nhwc', x, y, x.shape[1])]
