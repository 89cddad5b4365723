"""Lowering of the normalisations to ``kernels/norm.cu``: InstanceNormalization,
GroupNormalization, MeanVarianceNormalization, LpNormalization and RMSNormalization as
``norm_rows`` (per-row statistics in FP32, a team of threads a row), LRN as ``lrn``.

Each names the dims its statistics run over (the elements of a row) and the others (the rows),
with the strides of the input, the output and the scale/bias along them (``rows.py``), so
NHWC images, row-major tensors and channel slices are read and written in place. Scale and
bias must be constants (FP32 in the weight buffer). The semantics are those of ``ops/nn.py``.
"""
import numpy as np

from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.launch import BLOCK, NULL, Launch, grid_1d, row_major
from tx2_infer_core.cuda.rows import (ROW_WALK, TEAM_MAX, address, float_slots, row_walk,
                                      team_launch, team_size, walk_or_copy)
from tx2_infer_core.ops.common import AttributeNotSupported, axis_of

NORM_MODES = {'meanvar': 0, 'rms': 1, 'l1': 2, 'l2': 3}  # NORM_<MODE> of kernels/norm.cu
NORM_ARGS = np.dtype([('x', params.PTR), ('y', params.PTR), ('gamma', params.PTR),
                      ('beta', params.PTR), ('w', ROW_WALK)]
                     + [(n, 'i8') for n in ('gr1', 'gr2', 'gr3', 'gj1', 'gj2')]
                     + [('mode', 'i4'), ('eps', 'f4')], align=True)
LRN_ARGS = np.dtype([('x', params.PTR), ('y', params.PTR), ('w', ROW_WALK), ('size', 'i4'),
                     ('alpha', 'f4'), ('beta', 'f4'), ('bias', 'f4')], align=True)


def split_channels(shape, strides, groups):
    """(shape, strides) with dim 1 split into (groups, channels per group)."""
    cg = shape[1] // groups
    return ((shape[0], groups, cg) + tuple(shape[2:]),
            [[s[0], cg * s[1], s[1]] + list(s[2:]) for s in strides])


def norm_launch(lc, node, x, y, reduced, mode, eps, gamma=None, beta=None, param_strides=None,
                groups=0):
    """The ``norm_rows`` launch of ``node`` (after a copy of x into y where x's storage does
    not allow the walk): statistics over the ``reduced`` dims, ``gamma``/``beta`` FP32 arrays
    read with ``param_strides`` per dim; ``groups``: the channel dim first split into
    (groups, channels per group), ``reduced`` counting the split dims."""
    def walk_of(src, dst):
        shape, strides = src.shape, [src.strides, dst.strides]
        strides += [param_strides] if gamma is not None else []
        if groups:
            shape, strides = split_channels(shape, strides, groups)
        dims = [(n, tuple(s[d] for s in strides)) for d, n in enumerate(shape)]
        return row_walk([dims[d] for d in range(len(dims)) if d not in reduced],
                        [dims[d] for d in reduced])

    launches, src, (walk, extra) = walk_or_copy(lc, node, x, y, walk_of)
    g = extra[0] if extra else (0,) * 5
    fields = dict(x=address(src), y=address(y), w=walk, gr1=g[0], gr2=g[1], gr3=g[2],
                  gj1=g[3], gj2=g[4], mode=NORM_MODES[mode], eps=float(eps),
                  gamma=NULL if gamma is None else lc.add_weight(gamma.astype(np.float32)),
                  beta=NULL if beta is None else lc.add_weight(beta.astype(np.float32)))
    team = team_size(int(walk['n']), TEAM_MAX)
    return launches + [team_launch('norm', 'norm_rows', walk, team, NORM_ARGS, fields,
                                   node.name)]


def const_input(lc, node, k, what):
    """Input ``k`` of ``node`` as a float64 array, refused unless it is a constant."""
    name = node.inputs[k] if len(node.inputs) > k else ''
    if not name or not lc.is_const(name):
        lc.unsupported(node, f'the {what} must be a constant')
    return lc.const(name).astype(np.float64)


def channel_strides(rank):
    """Strides of a per-channel vector over the dims of an (N, C, ...) tensor."""
    return [0, 1] + [0] * (rank - 2)


def instance_norm(lc, node):
    """InstanceNormalization: per (image, channel) over the spatial dims."""
    x, y = float_slots(lc, node)
    rank = len(x.shape)
    if rank < 3:
        lc.unsupported(node, f'a rank {rank} input: (N, C, D1, ...) only')
    scale, bias = const_input(lc, node, 1, 'scale'), const_input(lc, node, 2, 'bias')
    return norm_launch(lc, node, x, y, list(range(2, rank)), 'meanvar',
                       node.attrs.get('epsilon', 1e-5), gamma=scale.reshape(-1),
                       beta=bias.reshape(-1), param_strides=channel_strides(rank))


def group_norm(lc, node):
    """GroupNormalization: per (image, group of channels) over the group and the spatial dims;
    the channel dim is split into (groups, channels per group)."""
    x, y = float_slots(lc, node)
    shape, groups = x.shape, int(node.attrs['num_groups'])
    if len(shape) < 2 or groups < 1 or shape[1] % groups:
        lc.unsupported(node, f'num_groups={groups} for {shape[1:2]} channels')
    scale, bias = const_input(lc, node, 1, 'scale'), const_input(lc, node, 2, 'bias')
    if scale.size != shape[1]:  # opset 18: one scale and bias per group
        scale, bias = (np.repeat(v.reshape(-1), shape[1] // groups) for v in (scale, bias))
    return norm_launch(lc, node, x, y, list(range(2, len(shape) + 1)), 'meanvar',
                       node.attrs.get('epsilon', 1e-5), scale.reshape(-1), bias.reshape(-1),
                       channel_strides(len(shape)), groups)


def mean_variance_norm(lc, node):
    """MeanVarianceNormalization over ``axes`` (default 0, 2, 3), epsilon 1e-9."""
    x, y = float_slots(lc, node)
    try:
        axes = sorted({axis_of(int(a), len(x.shape)) for a in node.attrs.get('axes', (0, 2, 3))})
    except AttributeNotSupported as err:
        lc.unsupported(node, str(err))
    return norm_launch(lc, node, x, y, axes, 'meanvar', 1e-9)


def lp_norm(lc, node):
    """LpNormalization: x over its L1 or L2 norm along ``axis`` (0 where the norm is 0)."""
    x, y = float_slots(lc, node)
    p = int(node.attrs.get('p', 2))
    if p not in (1, 2):
        lc.unsupported(node, f'p={p}: only 1 and 2')
    axis = _axis(lc, node, len(x.shape), -1)
    return norm_launch(lc, node, x, y, [axis], f'l{p}', 0.0)


def rms_norm(lc, node):
    """RMSNormalization over the dims from ``axis`` on, times the scale (broadcast to them)."""
    x, y = float_slots(lc, node)
    rank = len(x.shape)
    axis = _axis(lc, node, rank, -1)
    norm = tuple(x.shape[axis:])
    try:
        scale = np.broadcast_to(const_input(lc, node, 1, 'scale'), norm)
    except ValueError:
        lc.unsupported(node, f'a scale that does not broadcast to {norm}')
    return norm_launch(lc, node, x, y, list(range(axis, rank)), 'rms',
                       node.attrs.get('epsilon', 1e-5), gamma=scale.reshape(-1),
                       param_strides=[0] * axis + list(row_major(norm)))


def _axis(lc, node, rank, default):
    try:
        return axis_of(int(node.attrs.get('axis', default)), rank)
    except AttributeNotSupported as err:
        lc.unsupported(node, str(err))


def _channel_rows(src, dst):
    """The row walk of (image, pixel) rows whose elements are the channels."""
    dims = [(n, (sx, sy)) for n, sx, sy in zip(src.shape, src.strides, dst.strides)]
    return row_walk([dims[0]] + dims[2:], [dims[1]])


def lrn(lc, node):
    """LRN: rows are (image, pixel), the elements of a row its channels."""
    x, y = float_slots(lc, node)
    rank, a = len(x.shape), node.attrs
    if rank < 3:
        lc.unsupported(node, f'a rank {rank} input: (N, C, D1, ...) only')
    size = int(a['size'])
    if size < 1:
        lc.unsupported(node, f'size={size}')
    _, _, (walk, _) = walk_or_copy(lc, node, x, y, _channel_rows, in_place=False)
    fields = dict(x=address(x), y=address(y), w=walk, size=size,
                  alpha=float(a.get('alpha', 1e-4)), beta=float(a.get('beta', 0.75)),
                  bias=float(a.get('bias', 1.0)))
    total = int(walk['rows']) * int(walk['n'])
    return [Launch('norm', 'lrn', grid_1d(total), (BLOCK, 1, 1), LRN_ARGS, fields, node.name)]


NORMS = {'InstanceNormalization': instance_norm, 'GroupNormalization': group_norm,
         'MeanVarianceNormalization': mean_variance_norm, 'LpNormalization': lp_norm,
         'RMSNormalization': rms_norm, 'LRN': lrn}


def lower_norm(lc, node):
    """The normalisations of ``NORMS``, each as one launch of ``kernels/norm.cu``."""
    return NORMS[node.op](lc, node)
