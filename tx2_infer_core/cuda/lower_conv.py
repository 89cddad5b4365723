"""Lowering of convolutions and products with a constant operand to ``kernels/conv.cu`` and
``kernels/conv_mma.cu``.

``Conv``/``FusedConv`` map directly; ``MatMul`` and ``Gemm`` with a constant B run as a 1x1
convolution over ``rows`` pixels, which gives them the same SIMT and tensor-core paths.
Depthwise convolutions (one input channel a group) run on ``kernels/depthwise.cu`` on every
arch (channel-vectorised half2, no GEMM tile to fill), and so does a standalone
``BatchNormalization`` over an image (a 1x1 depthwise per-channel scale and shift).
On sm_80+ the tensor-core path is ``conv_mma_<BM>x<BN>`` (mma.sync, cp.async pipeline); the tile
and a split-K factor are chosen per layer from M (pixels), N (channels) and K so that small
late layers still fill the GPU (``mma_config``). A split layer is a second launch that sums the
FP32 partials (``conv_splitk_reduce``), or on sm_90 one launch whose splits form a thread-block
cluster and sum through distributed shared memory (``cuda/cluster.py``).
"""
from dataclasses import replace

import numpy as np

from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.cluster import cluster_of
from tx2_infer_core.cuda.launch import BLOCK, NULL, Launch, grid_1d
from tx2_infer_core.cuda.launch_knobs import linear_splits
from tx2_infer_core.cuda.lower_epilogue import fused_epilogue
from tx2_infer_core.cuda.lower_ops import binary_launch
from tx2_infer_core.cuda.splitk_table import split_pays
from tx2_infer_core.errors import Tx2InferError
from tx2_infer_core.passes.weights import batchnorm_scale_shift

TC_MIN_ARCH = 70
MMA_MIN_ARCH = 80
MMA_BK = 32
# (BM, BN, threads), largest first; one warp per 32x32 outputs.
MMA_TILES = ((128, 128, 512), (128, 64, 256), (64, 128, 256), (64, 64, 128))
MAX_SPLITS = 16
MIN_TILES_PER_SPLIT = 2
WORKSPACE_BYTES = 8 << 20  # FP32 split-K partials, one buffer a lowering shares by every layer
# The kernel files whose launches apply the ConvParams epilogue (``with_act_masks``).
ACT_MODULES = ('conv', 'conv_mma', 'depthwise', 'conv_transpose', 'conv_int8', 'conv_int8_mma')
# conv_mma's argument list: ConvParams, then the split-K workspace and factor.
CONV_MMA = np.dtype([(n, params.CONV.fields[n][0]) for n in params.CONV.names]
                    + [('ws', params.PTR), ('splits', 'i4')], align=True)
# conv_mma*_pool_*'s: then the PoolOut record (the pooled map z, its pixel stride and channel
# offset, keep: also write y).
CONV_MMA_POOL = np.dtype([(n, CONV_MMA.fields[n][0]) for n in CONV_MMA.names]
                         + [('z', params.PTR), ('z_pix', 'i4'), ('z_off', 'i4'),
                            ('keep', 'i4')], align=True)
POOL_TILE = (128, 64, 256)  # a pooled launch's tile where mma_config picks 128x128 (no stage)
POOL_ATTR = 'fused_maxpool'  # on a conv node: the MaxPool it applies (cuda/pool_epilogue.py)


def conv_pads(attrs, in_hw, out_hw, kernel, strides, dil) -> list:
    """[pad top, pad left] of a 2-D Conv or pool from its ``auto_pad`` or ``pads``."""
    auto = attrs.get('auto_pad', 'NOTSET')
    if isinstance(auto, bytes):
        auto = auto.decode()
    if auto in ('SAME_UPPER', 'SAME_LOWER'):
        pads = []
        for i, o, k, s, d in zip(in_hw, out_hw, kernel, strides, dil):
            total = max((o - 1) * s + (k - 1) * d + 1 - i, 0)
            pads.append(total // 2 if auto == 'SAME_UPPER' else total - total // 2)
        return pads
    if auto == 'VALID':
        return [0, 0]
    return list(attrs.get('pads') or [0, 0, 0, 0])[:2]


def is_depthwise(cg: int, groups: int) -> bool:
    """True for a convolution with one input channel a group (``kernels/depthwise.cu``)."""
    return groups > 1 and cg == 1


def pick_kernel(arch: int, path: str, cg: int, kg: int, groups: int, aligned) -> tuple:
    """(kernel name, threads) for one convolution; ``aligned(n)`` says n-half vectors fit.
    'conv_mma' and 'conv_mma_gather' (channels not in 16-byte rows) are families whose tile
    ``mma_config`` picks. The SIMT path multiplies in half2 (HFMA2, ``conv_simt_h2*``: FP16
    chunks of 16 products a lane flushed into FP32); 'simt_fp32' keeps the FP32-FMA kernels
    (``conv_simt*``). Depthwise layers (``is_depthwise``) never come here: their weights are
    laid out for ``depthwise_launch``."""
    if groups > 1 and min(cg, kg) < 8:
        return 'conv_direct', 256
    if path == 'tc' and arch >= MMA_MIN_ARCH:
        return ('conv_mma' if aligned(8) else 'conv_mma_gather'), 0
    if path == 'tc' and arch >= TC_MIN_ARCH:
        return ('conv_wmma_v8' if aligned(8) else 'conv_wmma'), 128
    if path == 'simt_fp32':
        return ('conv_simt_v4' if aligned(4) else 'conv_simt'), 256
    return ('conv_simt_h2_v8' if aligned(8) else 'conv_simt_h2'), 256


def mma_config(m: int, n: int, ktiles: int, groups: int, sms: int, split_ok=True,
               arch=None) -> tuple:
    """(BM, BN, threads, splits) for a conv_mma launch of an M x N x (ktiles * 32) GEMM.

    The largest tile that still gives two CTAs per SM (one for 64x64); where even 64x64 tiles
    leave SMs idle, split K (groups == 1) until about two CTAs per SM, keeping at least
    ``MIN_TILES_PER_SPLIT`` k tiles per split and the partials inside the workspace, unless the
    nearest layer measured on ``arch`` ran faster in one pass (``splitk_table``).
    """
    def ctas(bm, bn):
        return -(-m // bm) * -(-n // bn) * groups

    for bm, bn, threads in MMA_TILES[:-1]:
        if bn <= max(n, 64) and ctas(bm, bn) >= 2 * sms:
            return bm, bn, threads, 1
    bm, bn, threads = MMA_TILES[-1]
    base = ctas(bm, bn)
    if not split_ok or groups > 1 or base >= sms:
        return bm, bn, threads, 1
    splits = min(2 * sms // base, ktiles // MIN_TILES_PER_SPLIT, MAX_SPLITS,
                 WORKSPACE_BYTES // (4 * m * n))
    if splits < 2 or (arch is not None and not split_pays(arch, m, n, ktiles)):
        return bm, bn, threads, 1
    per = -(-ktiles // splits)
    return bm, bn, threads, -(-ktiles // per)


def mma_module(bm: int, bn: int, gather: bool) -> str:
    """The kernel module of a conv_mma launch: kernels/conv_mma.cu built with one tile and one
    loader (16-byte rows or gather), so a cold build compiles only what the graph launches,
    one nvcc a module, side by side. ``with_act_masks`` adds the activations."""
    return f'conv_mma@CONV_MMA_TILE={bm * 1000 + bn}@CONV_MMA_GATHER={int(gather)}'


def with_act_masks(launches) -> list:
    """``launches`` with every convolution-class module (``ACT_MODULES``) built for only the
    activations its launches apply (``-DTX2_ACTS``, bit ``1 << kind``: kernels/common.cuh):
    the epilogue is inlined at every store, and the unused activations were most of such a
    module's compile time."""
    masks = {}
    for k in launches:
        if k.module.split('@')[0] in ACT_MODULES:
            kind = int(k.fields['act']['kind']) if 'act' in k.fields else 0  # (a Quantize)
            masks[k.module] = masks.get(k.module, 0) | (1 << kind if kind else 0)
    return [replace(k, module=f'{k.module}@TX2_ACTS={masks[k.module]}')
            if k.module in masks else k for k in launches]


def mma_launches(lc, name, family, fields, geo, split_ok=True, pool=None) -> list:
    """The conv_mma launch (and its split-K reduction) of one convolution; with ``pool``
    ((z Ref, pixel stride, channel offset), keep) the one launch of its pooled kernel."""
    m = geo['N'] * geo['P'] * geo['Q']
    if family == 'conv_mma_gather':
        ktiles = -(-geo['R'] * geo['S'] * geo['Cg'] // MMA_BK)
    else:
        ktiles = geo['R'] * geo['S'] * -(-geo['Cg'] // MMA_BK)
    bm, bn, threads, splits = mma_config(m, geo['Kg'], ktiles, geo['groups'], lc.sm_count,
                                         split_ok, lc.arch)
    module = mma_module(bm, bn, family == 'conv_mma_gather')
    if pool is not None:
        return [pooled_launch(lc, name, family, fields, geo, (bm, bn, threads, splits), pool)]
    return tile_launches(lc, name, (module, f'{family}_{bm}x{bn}', 'CONV_MMA_CLUSTER',
                                    'conv_splitk_reduce'), CONV_MMA, fields, geo,
                         (bm, bn, threads, splits))


def pooled_launch(lc, name, family, fields, geo, tile, pool) -> Launch:
    """The one ``conv_mma[_gather]_pool_<BM>x<BN>`` launch of a conv with a fused 2x2 MaxPool
    (``cuda/pool_epilogue.py``) on ``tile`` (BM, BN, threads, splits): a tile whose epilogue
    stages in shared memory; split K only where the splits sum in a cluster (``_cl``, sm_90),
    else one pass."""
    bm, bn, threads, splits = tile
    if (bm, bn) == (128, 128):
        bm, bn, threads = POOL_TILE
    size = cluster_of(lc.arch, bm, bn, splits)
    (z, z_pix, z_off), keep = pool
    module = mma_module(bm, bn, family == 'conv_mma_gather') + '@CONV_MMA_POOL=1'
    kernel = f'{family}_pool_{bm}x{bn}'
    if size:
        module, kernel = f'{module}@CONV_MMA_CLUSTER={size}', kernel + '_cl'
    m = geo['N'] * geo['P'] * geo['Q']
    return Launch(module, kernel, (-(-m // bm), -(-geo['Kg'] // bn), size or geo['groups']),
                  (threads, 1, 1), CONV_MMA_POOL,
                  dict(fields, ws=NULL, splits=size or 1, z=z, z_pix=z_pix, z_off=z_off,
                       keep=int(keep)), name)


def tile_launches(lc, name, kernels, record, fields, geo, tile) -> list:
    """The launches of one tensor-core conv on ``tile`` (BM, BN, threads, splits), its
    ``kernels`` (module, kernel, cluster define, split-K reduction): one launch, or on sm_90
    one launch of its ``_cl`` kernel whose splits sum in a cluster (``cuda/cluster.py``), or
    the split launch over the workspace and the reduction."""
    module, kernel, cluster_define, reduce_kernel = kernels
    bm, bn, threads, splits = tile
    m, kg = geo['N'] * geo['P'] * geo['Q'], geo['Kg']
    size = cluster_of(lc.arch, bm, bn, splits)
    if size:
        return [Launch(f'{module}@{cluster_define}={size}', f'{kernel}_cl',
                       (-(-m // bm), -(-kg // bn), size), (threads, 1, 1), record,
                       dict(fields, ws=NULL, splits=size), name)]
    fields = dict(fields, ws=lc.conv_workspace() if splits > 1 else NULL, splits=splits)
    out = [Launch(module, kernel, (-(-m // bm), -(-kg // bn), geo['groups'] * splits),
                  (threads, 1, 1), record, fields, name)]
    if splits > 1:
        out.append(Launch(module, reduce_kernel, grid_1d(m * -(-kg // 2)), (BLOCK, 1, 1),
                          record, fields, name))
    return out


def conv_fields(x, y, geo, w_ref, bias_ref, res=None, act=None, res_after=0,
                slope=NULL) -> dict:
    """The ConvParams fields of one fused convolution-class launch (see ``conv_launches``)."""
    fields = dict(geo, x=x[0], x_pix=x[1], x_off=x[2], y=y[0], y_pix=y[1], y_off=y[2],
                  w=w_ref, bias=bias_ref, res_after=int(res_after), slope=slope,
                  act=act if act is not None else params.act_record())
    if res is not None:
        fields.update(res=res[0], r_pix=res[1], r_off=res[2])
    else:
        fields.update(res=NULL)
    return fields


def depthwise_launch(name, x, y, geo, w_ref, bias_ref, res=None, act=None, res_after=0,
                     slope=NULL) -> Launch:
    """The ``kernels/depthwise.cu`` launch of a convolution with Cg == 1 (weights ``w_ref``
    laid out [R][S][K]); where Kg == 1 and K and the input's pixel stride and channel offset
    are multiples of 8, eight channels a thread (16-byte loads); of 2, two (half2)."""
    fields = conv_fields(x, y, geo, w_ref, bias_ref, res, act, res_after, slope)
    k = geo['Kg'] * geo['groups']
    vec = next((n for n in (8, 2)
                if geo['Kg'] == 1 and all(v % n == 0 for v in (k, x[1], x[2]))), 1)
    kernel = {8: 'depthwise_v8', 2: 'depthwise_h2', 1: 'depthwise'}[vec]
    total = geo['N'] * geo['P'] * geo['Q'] * k // vec
    return Launch('depthwise', kernel, grid_1d(total), (BLOCK, 1, 1), params.CONV, fields,
                  name)


def conv_launches(lc, name, x, y, geo, w_ref, bias_ref, res=None, act=None, res_after=0,
                  slope=NULL, split_ok=True, pool=None) -> list:
    """The Launches of one fused convolution. ``x``/``y``/``res`` are (Ref, pix, channel
    offset); ``geo`` holds N, H, W, P, Q, Cg, Kg, groups, R, S, sh, sw, ph, pw, dh, dw;
    ``slope`` PRelu's FP32 slope per output channel; ``pool`` a fused 2x2 MaxPool
    (``mma_launches``), on the tensor-core kernels only."""
    fields = conv_fields(x, y, geo, w_ref, bias_ref, res, act, res_after, slope)

    def aligned(n):
        return all(v % n == 0 for v in (geo['Cg'], x[1], x[2]))

    kernel, threads = pick_kernel(lc.arch, lc.conv_path, geo['Cg'], geo['Kg'], geo['groups'],
                                  aligned)
    if kernel.startswith('conv_mma'):
        return mma_launches(lc, name, kernel, fields, geo, split_ok, pool)
    if pool is not None:
        raise Tx2InferError(f"conv '{name}': a fused MaxPool needs the conv_mma kernels, not "
                            f'{kernel}')
    if kernel == 'conv_direct':
        total = geo['N'] * geo['P'] * geo['Q'] * geo['Kg'] * geo['groups']
        grid = grid_1d(total)
    else:
        m = geo['N'] * geo['P'] * geo['Q']
        grid = (-(-m // 64), -(-geo['Kg'] // 64), geo['groups'])
    return [Launch('conv', kernel, grid, (threads, 1, 1), params.CONV, fields, name)]


def conv_geometry(attrs, x_shape, y_shape, w_shape) -> dict:
    """The implicit-GEMM geometry of a 2-D conv (NCHW shapes, [K, C/group, R, S] weights):
    sizes, groups, strides, pads and dilations as the kernels' parameter records name them."""
    k, cg, r, s = w_shape
    groups = int(attrs.get('group', 1))
    st = list(attrs.get('strides') or [1, 1])
    dil = list(attrs.get('dilations') or [1, 1])
    n, _, h, wd = x_shape
    p, q = y_shape[2:]
    ph, pw = conv_pads(attrs, (h, wd), (p, q), (r, s), st, dil)
    return dict(N=n, H=h, W=wd, P=p, Q=q, Cg=cg, Kg=k // groups, groups=groups, R=r, S=s,
                sh=st[0], sw=st[1], ph=ph, pw=pw, dh=dil[0], dw=dil[1])


def lower_conv(lc, node):
    """Conv or FusedConv over NHWC slots."""
    a = node.attrs
    x, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    w = lc.const(node.inputs[1])
    if w.ndim != 4 or not (x.nhwc and y.nhwc):
        lc.unsupported(node, 'only 1-D and 2-D convolutions of NCHW image tensors')
    geo = conv_geometry(a, x.shape, y.shape, w.shape)
    x_t, y_t = (x.ref, x.pix, x.channel_off), (y.ref, y.pix, y.channel_off)
    if is_depthwise(geo['Cg'], geo['groups']):
        w_ref = lc.add_weight(w.transpose(2, 3, 1, 0), np.float16)
        return [depthwise_launch(node.name, x_t, y_t, geo, w_ref, *fused_epilogue(lc, node))]
    w_ref = lc.add_weight(w.transpose(0, 2, 3, 1), np.float16)
    return conv_launches(lc, node.name, x_t, y_t, geo, w_ref, *fused_epilogue(lc, node),
                         pool=fused_pool(lc, node))


def fused_pool(lc, node):
    """((z Ref, pixel stride, channel offset), keep) of the MaxPool fused into ``node``
    (``cuda/pool_epilogue.py``; keep: the conv's own output is read too), else None."""
    if POOL_ATTR not in node.attrs:
        return None
    z, y = lc.slot(node.outputs[1]), node.outputs[0]
    if not z.nhwc:
        lc.unsupported(node, 'a fused MaxPool writes an NHWC image')
    keep = bool(lc.readers(y)) or y in lc.graph.outputs
    return (z.ref, z.pix, z.channel_off), keep


def lower_batchnorm(lc, node):
    """Inference BatchNormalization, ``y = x * k + (bias - mean * k)`` with
    ``k = scale / sqrt(var + epsilon)`` per channel: one depthwise 1x1 launch over an NCHW
    image (NHWC slots, any channel view), a Mul and an Add launch over other ranks."""
    a = node.attrs
    if a.get('training_mode', 0) or any(node.outputs[1:]) or not a.get('spatial', 1):
        lc.unsupported(node, 'only inference mode (one output, spatial=1)')
    x, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    scale, shift = batchnorm_scale_shift(*(lc.const(n) for n in node.inputs[1:5]),
                                         float(a.get('epsilon', 1e-5)))
    if x.nhwc and y.nhwc:
        n, c, h, w = x.shape
        geo = dict(N=n, H=h, W=w, P=h, Q=w, Cg=1, Kg=1, groups=c, R=1, S=1, sh=1, sw=1, ph=0,
                   pw=0, dh=1, dw=1)
        return [depthwise_launch(node.name, (x.ref, x.pix, x.channel_off),
                                 (y.ref, y.pix, y.channel_off), geo,
                                 lc.add_weight(scale.astype(np.float16)),
                                 lc.add_weight(shift.astype(np.float32)))]
    per_channel = (1, -1) + (1,) * (len(x.shape) - 2)
    k_slot = lc.const_slot(scale.reshape(per_channel).astype(np.float16))
    b_slot = lc.const_slot(shift.reshape(per_channel).astype(np.float16))
    return [binary_launch(node.name, x, k_slot, y, params.BINARY['Mul']),
            binary_launch(node.name, y, b_slot, y, params.BINARY['Add'])]


def linear_geometry(a_slot, k: int, n: int) -> dict:
    """The 1x1-convolution geometry of a product of row-major ``a`` [rows, k] by [k, n]."""
    rows = int(np.prod(a_slot.shape[:-1], dtype=np.int64))
    return dict(N=1, H=1, W=rows, P=1, Q=rows, Cg=k, Kg=n, groups=1, R=1, S=1, sh=1, sw=1,
                ph=0, pw=0, dh=1, dw=1)


def linear_launch(lc, node, a_slot, y_slot, b_nk, bias=None, epilogue=None, norm_ctas=None):
    """``y = a @ b_nk.T + bias`` as a 1x1 convolution, one launch: no split-K, or where
    $TX2_INFER_LINEAR_SPLITK allows (``launch_knobs.linear_splits``; ``norm_ctas``: the
    product of a FusedLinearNorm whose one launch would have that many CTAs) splits summed in
    a cluster; ``a`` row-major [rows, K]. ``epilogue``
    (``fused_epilogue``'s bias Ref, residual, ActParams, residual_after_act, slope) replaces
    ``bias`` where given."""
    if not (a_slot.contiguous() and y_slot.contiguous()):
        lc.unsupported(node, 'MatMul/Gemm need row-major activations')
    n_out, k = b_nk.shape
    geo = linear_geometry(a_slot, k, n_out)
    w_ref = lc.add_weight(b_nk, np.float16)
    if epilogue is None:
        bias_ref = lc.add_weight(bias.astype(np.float32)) if bias is not None else NULL
        epilogue = (bias_ref, None, None, 0)
    launches = conv_launches(lc, node.name, (a_slot.ref, k, 0), (y_slot.ref, n_out, 0), geo,
                             w_ref, *epilogue, split_ok=linear_splits(lc.arch, k, norm_ctas))
    return launches[0]


def _gemm_a_transposed(lc, node, x, y, b_kn, alpha, bias_ref):
    """``alpha * A^T @ B + bias`` with the SIMT matmul kernel reading A ([K, M]) transposed."""
    k, m = x.shape
    n = b_kn.shape[1]
    if not y.contiguous():
        lc.unsupported(node, 'transA=1 into a strided output')
    fields = dict(a=x.ref, b=lc.const_slot(b_kn.astype(np.float16)).ref, bias=bias_ref,
                  y=y.ref, M=m, N=n, K=k, B1=1, B2=1, a_m=x.strides[1], a_k=x.strides[0],
                  b_k=n, b_n=1, alpha=alpha, act=params.act_record())
    return Launch('gemm', 'matmul', (-(-m // 64), -(-n // 64), 1), (256, 1, 1), params.GEMM,
                  fields, node.name)


def lower_gemm(lc, node):
    """Gemm(A, B const, C const): B (transB, alpha) becomes 1x1-convolution weights; a
    scalar or per-column C (times beta) is the bias; any other C shape is added by a
    broadcasting Add launch after the product. transA=1 runs on the SIMT matmul kernel."""
    a = node.attrs
    x, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    b = lc.const(node.inputs[1]).astype(np.float32)
    b_kn = b.T if a.get('transB', 0) else b
    alpha, n = float(a.get('alpha', 1.0)), b_kn.shape[1]
    c = None
    if len(node.inputs) > 2 and node.inputs[2]:
        c = lc.const(node.inputs[2]).astype(np.float32) * float(a.get('beta', 1.0))
    per_column = c is not None and (c.ndim < 2 or c.shape[-2] == 1) and c.shape[-1:] in (
        (), (1,), (n,))
    bias = np.broadcast_to(c.reshape(-1), (n,)).copy() if per_column else None
    if a.get('transA', 0):
        bias_ref = lc.add_weight(bias) if bias is not None else NULL
        launches = [_gemm_a_transposed(lc, node, x, y, b_kn, alpha, bias_ref)]
    else:
        launches = [linear_launch(lc, node, x, y, (b_kn * alpha).T, bias)]
    if c is not None and not per_column:
        launches.append(binary_launch(node.name, y, lc.const_slot(c.astype(np.float16)), y,
                                      params.BINARY['Add']))
    return launches
