"""Lowering of Resize and Upsample to ``kernels/resize.cu`` (nearest or bilinear over H and W).

What the kernel does not do is refused by name: cubic mode, antialiasing, tf_crop_and_resize
(roi, extrapolation), and resizing the batch or channel axes.
"""
import numpy as np

from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.launch import BLOCK, Launch, grid_1d
from tx2_infer_core.cuda.lower_nn import nhwc_pair


def _text(v, default):
    v = default if v is None else v
    return v.decode() if isinstance(v, bytes) else v


def _const_input(lc, node, i):
    """The constant input ``i`` as a float64 vector, or None when it is absent or empty."""
    if len(node.inputs) <= i or not node.inputs[i]:
        return None
    arr = lc.const(node.inputs[i]).astype(np.float64).reshape(-1)
    return arr if arr.size else None


def _full(values, axes, fill) -> list:
    """Per-axis values of a rank-4 tensor from values given for ``axes``."""
    out = list(fill)
    for v, axis in zip(values, axes):
        out[axis] = float(v)
    return out


def resize_scales(lc, node, in_shape, out_shape) -> list:
    """The ONNX scale of each of the 4 axes (output / input, as the coordinates use it):
    the ``scales`` input, else the requested ``sizes`` / input size (one common scale under
    keep_aspect_ratio_policy, which then sets the output shape), following ``axes``."""
    a = node.attrs
    if node.op == 'Upsample':
        scales = _const_input(lc, node, 1)
        return list(scales) if scales is not None else list(a.get('scales'))
    axes = [int(d) + 4 if d < 0 else int(d) for d in (a.get('axes') or range(4))]
    scales = _const_input(lc, node, 1 if len(node.inputs) == 2 else 2)  # Resize-10: (X, scales)
    if scales is not None:
        return _full(scales, axes, [1.0] * 4)
    sizes = _const_input(lc, node, 3)
    sizes = _full(sizes, axes, in_shape) if sizes is not None else out_shape
    ratios = [o / i for o, i in zip(sizes, in_shape)]
    policy = _text(a.get('keep_aspect_ratio_policy'), 'stretch')
    if policy == 'stretch':
        return ratios
    common = (min if policy == 'not_larger' else max)(ratios[d] for d in axes)
    return _full([common] * len(axes), axes, [1.0] * 4)


def _check(lc, node, mode, coord, scales, x, y):
    a = node.attrs
    if mode not in ('nearest', 'linear'):
        lc.unsupported(node, f'mode={mode}: only nearest and linear')
    if coord not in params.RESIZE_COORD:
        lc.unsupported(node, f'coordinate_transformation_mode={coord}')
    if mode == 'linear' and int(a.get('antialias', 0)):
        lc.unsupported(node, 'antialias=1')
    if scales[0] != 1 or scales[1] != 1 or tuple(x.shape[:2]) != tuple(y.shape[:2]):
        lc.unsupported(node, f'scales {scales}: only H and W are resized')


def lower_resize(lc, node):
    """Resize / Upsample, nearest or linear, over H and W only."""
    x, y = nhwc_pair(lc, node)
    a = node.attrs
    n, c, h, w = x.shape
    p, q = y.shape[2:]
    if node.op == 'Upsample':
        coord, nearest = 'asymmetric', 'floor'
    else:
        coord = _text(a.get('coordinate_transformation_mode'), 'half_pixel')
        nearest = _text(a.get('nearest_mode'), 'round_prefer_floor')
    mode = _text(a.get('mode'), 'nearest')
    scales = resize_scales(lc, node, x.shape, y.shape)
    _check(lc, node, mode, coord, scales, x, y)
    fields = dict(x=x.ref, y=y.ref, N=n, H=h, W=w, C=c, P=p, Q=q, scale_h=scales[2],
                  scale_w=scales[3], len_h=h * scales[2], len_w=w * scales[3],
                  coord=params.RESIZE_COORD[coord], linear=int(mode == 'linear'),
                  nearest=params.RESIZE_NEAREST[nearest], x_pix=x.pix, x_off=x.channel_off,
                  y_pix=y.pix, y_off=y.channel_off)
    return [Launch('resize', 'resize2d', grid_1d(n * p * q * c), (BLOCK, 1, 1), params.RESIZE,
                   fields, node.name)]
