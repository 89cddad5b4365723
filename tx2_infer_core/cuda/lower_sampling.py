"""Lowering of the spatial sampling ops to ``kernels/sampling.cu``: GridSample (``grid_sample``),
AffineGrid (``affine_grid``) and RoiAlign (``roi_align``), as ``ops/sampling.py`` computes them.

The image input and output are NHWC FP16 (channel slices too); the grid, theta, the regions
and their batch indices are activations or constants read through their slots' strides (a
constant as FP16 in the weight buffer). A thread owns an output pixel and 8 channels
(``*_v8``, 16-byte loads per neighbour) where the channel counts, pixel strides and channel
offsets are multiples of 8, else one channel. Refused by name: volumetric (5-D) GridSample and
3-D AffineGrid, unknown modes, RoiAlign's unknown coordinate transformations.
"""
import numpy as np

from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.launch import BLOCK, Launch, grid_1d
from tx2_infer_core.cuda.lower_nn import nhwc_pair
from tx2_infer_core.cuda.rows import address

GRID_MODES = {'linear': 0, 'bilinear': 0, 'nearest': 1, 'cubic': 2, 'bicubic': 2}  # GS_<MODE>
GRID_PADDING = {'zeros': 0, 'border': 1, 'reflection': 2}  # GS_<PADDING>
ROI_MODES = {'avg': 0, 'max': 1}                       # the kernel's is_max
ROI_COORD = {'output_half_pixel': 0, 'half_pixel': 1}  # the kernel's half_pixel
VEC = 8  # channels per thread of the *_v8 kernels (16 bytes of FP16)
_I8 = 'i8'

GRID = np.dtype([(n, params.PTR) for n in ('x', 'grid', 'y')]
                + [(n, 'i4') for n in ('N', 'C', 'H', 'W', 'P', 'Q')]
                + [(n, _I8) for n in ('g_n', 'g_p', 'g_q', 'g_c')]
                + [(n, 'i4') for n in ('x_pix', 'x_off', 'y_pix', 'y_off', 'mode', 'padding',
                                       'align_corners')], align=True)
AFFINE = np.dtype([('theta', params.PTR), ('y', params.PTR)]
                  + [(n, 'i4') for n in ('N', 'H', 'W')]
                  + [(n, _I8) for n in ('t_n', 't_r', 't_c', 'y_n', 'y_h', 'y_w', 'y_c')]
                  + [('align_corners', 'i4')], align=True)
ROI = np.dtype([(n, params.PTR) for n in ('x', 'rois', 'index', 'y')]
               + [(n, 'i4') for n in ('N', 'C', 'H', 'W', 'R', 'P', 'Q')]
               + [(n, _I8) for n in ('r_r', 'r_c', 'i_r')]
               + [(n, 'i4') for n in ('x_pix', 'x_off', 'y_pix', 'y_off', 'ratio', 'is_max',
                                      'half_pixel')]
               + [('scale', 'f4')], align=True)


def _code(lc, node, name, default, codes) -> int:
    """The kernel's code of ``node``'s text attribute ``name`` (``default`` when absent); a
    value ``codes`` lacks is refused by name."""
    value = node.attrs.get(name)
    value = default if value is None else value
    value = value.decode() if isinstance(value, bytes) else str(value)
    if value not in codes:
        lc.unsupported(node, f'{name}={value}')
    return codes[value]


def vector_width(x, y) -> int:
    """8 where both NHWC images allow 16-byte channel vectors, else 1."""
    c = x.shape[1]
    aligned = all(v % VEC == 0 for v in (c, x.pix, x.channel_off, y.pix, y.channel_off,
                                         x.ref.offset // 2, y.ref.offset // 2))
    return VEC if aligned else 1


def _image_launch(kernel, x, y, record, fields, pixels, node):
    """The launch of ``kernel`` (its ``_v8`` form where ``vector_width`` allows) over
    ``pixels`` output pixels of ``y``."""
    vec = vector_width(x, y)
    fields.update(x=x.ref, y=y.ref, x_pix=x.pix, x_off=x.channel_off, y_pix=y.pix,
                  y_off=y.channel_off)
    name = f'{kernel}_v8' if vec == VEC else kernel
    return [Launch('sampling', name, grid_1d(pixels * x.shape[1] // vec), (BLOCK, 1, 1),
                   record, fields, node.name)]


def _image_rank(lc, node):
    name = node.inputs[0]
    rank = len(lc.graph.values[name].shape if name in lc.graph.values else
               lc.graph.weights[name].shape)
    if rank != 4:
        lc.unsupported(node, f'{rank - 2}-D (volumetric) sampling: only 2-D NCHW images')


def lower_grid_sample(lc, node):
    """GridSample of an NCHW image (NHWC in the arena) at a (N, Ho, Wo, 2) grid."""
    _image_rank(lc, node)
    a = node.attrs
    mode = _code(lc, node, 'mode', 'linear', GRID_MODES)
    padding = _code(lc, node, 'padding_mode', 'zeros', GRID_PADDING)
    x, y = nhwc_pair(lc, node)
    g = lc.slot(node.inputs[1])
    n, c, h, w = x.shape
    p, q = y.shape[2:]
    fields = dict(grid=address(g), N=n, C=c, H=h, W=w, P=p, Q=q, g_n=g.strides[0],
                  g_p=g.strides[1], g_q=g.strides[2], g_c=g.strides[3],
                  mode=mode, padding=padding,
                  align_corners=int(bool(a.get('align_corners', 0))))
    return _image_launch('grid_sample', x, y, GRID, fields, n * p * q, node)


def lower_affine_grid(lc, node):
    """AffineGrid of (N, 2, 3) theta over a 2-D size: the (N, H, W, 2) grid, one thread a
    point."""
    size = [int(v) for v in lc.const(node.inputs[1]).reshape(-1)]
    if len(size) != 4:
        lc.unsupported(node, f'size {size}: only 2-D grids (N, C, H, W)')
    theta, y = lc.slot(node.inputs[0]), lc.slot(node.outputs[0])
    n, _, h, w = size
    fields = dict(theta=address(theta), y=address(y), N=n, H=h, W=w, t_n=theta.strides[0],
                  t_r=theta.strides[1], t_c=theta.strides[2], y_n=y.strides[0],
                  y_h=y.strides[1], y_w=y.strides[2], y_c=y.strides[3],
                  align_corners=int(bool(node.attrs.get('align_corners', 0))))
    return [Launch('sampling', 'affine_grid', grid_1d(n * h * w), (BLOCK, 1, 1), AFFINE,
                   fields, node.name)]


def lower_roi_align(lc, node):
    """RoiAlign: each region's bins averaged (or the maximum) over bilinear samples."""
    a = node.attrs
    is_max = _code(lc, node, 'mode', 'avg', ROI_MODES)
    half_pixel = _code(lc, node, 'coordinate_transformation_mode', 'half_pixel', ROI_COORD)
    x, y = nhwc_pair(lc, node)
    rois, index = lc.slot(node.inputs[1]), lc.slot(node.inputs[2])
    n, c, h, w = x.shape
    r, _, p, q = y.shape
    fields = dict(rois=address(rois), index=address(index), N=n, C=c, H=h, W=w, R=r, P=p,
                  Q=q, r_r=rois.strides[0], r_c=rois.strides[1], i_r=index.strides[0],
                  ratio=int(a.get('sampling_ratio', 0)), is_max=is_max,
                  half_pixel=half_pixel,
                  scale=float(a.get('spatial_scale', 1.0)))
    return _image_launch('roi_align', x, y, ROI, fields, r * p * q, node)
