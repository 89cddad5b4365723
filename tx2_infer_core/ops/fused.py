"""Internal fused ops produced by the fusion passes (one per future CUDA kernel)."""
import numpy as np

from tx2_infer_core.ops import elementwise, traits
from tx2_infer_core.ops.common import unsupported
from tx2_infer_core.ops.conv import Conv, ConvTranspose


def apply_activation(x, name, alpha=0.01, beta=0.5, clip_min=-np.inf, clip_max=np.inf):
    """Apply a FusedConv ``activation`` by name ('' is the identity): any op of kind
    'activation' in ``ops/traits.py``, its attributes taken from ``alpha`` and ``beta``."""
    if name == '':
        return x
    if name == 'Clip':
        return elementwise.Clip(x, np.float32(clip_min), np.float32(clip_max))
    if name not in traits.names(kind=traits.ACTIVATION):
        unsupported(f"activation='{name}'")
    return getattr(elementwise, name)(x, **traits.activation_params(name, alpha, beta))


def activation_inplace(y, scratch, name, alpha=0.01, beta=0.5, clip_min=-np.inf,
                       clip_max=np.inf):
    """``apply_activation`` written back into float ``y``, with ``scratch`` (same shape) as the
    temporary; the common activations take the same steps as the reference, so bit-equal."""
    if name == '':
        return
    if name == 'Relu':
        np.maximum(y, 0, out=y)
    elif name == 'LeakyRelu' and 0 <= alpha <= 1:
        np.multiply(y, y.dtype.type(alpha), out=scratch)
        np.maximum(y, scratch, out=y)
    elif name in ('Sigmoid', 'SiLU'):
        np.negative(y, out=scratch)
        with np.errstate(over='ignore'):
            np.exp(scratch, out=scratch)
        scratch += 1
        if name == 'Sigmoid':
            np.reciprocal(scratch, out=y)
        else:
            np.divide(y, scratch, out=y)
    else:
        y[...] = apply_activation(y, name, alpha, beta, clip_min, clip_max)


def FusedConv(x, w, b=None, residual=None, *, auto_pad='NOTSET', dilations=None, group=1,
              kernel_shape=None, pads=None, strides=None, activation='', alpha=0.01, beta=0.5,
              clip_min=-np.inf, clip_max=np.inf, residual_after_act=0):
    """act(conv(x, w) + b + residual), or act(conv(x, w) + b) + residual_after_act."""
    y = Conv(x, w, b, auto_pad=auto_pad, dilations=dilations, group=group,
             kernel_shape=kernel_shape, pads=pads, strides=strides)
    act = dict(name=activation, alpha=alpha, beta=beta, clip_min=clip_min, clip_max=clip_max)
    if residual is not None and not residual_after_act:
        y += residual
    y = apply_activation(y, **act)
    if residual is not None and residual_after_act:
        y = y + residual
    return y.astype(x.dtype, copy=False)


def FusedConvTranspose(x, w, b=None, residual=None, *, auto_pad='NOTSET', dilations=None,
                       group=1, kernel_shape=None, output_padding=None, output_shape=None,
                       pads=None, strides=None, activation='', alpha=0.01, beta=0.5,
                       clip_min=-np.inf, clip_max=np.inf, residual_after_act=0):
    """FusedConv's epilogue after an ONNX ConvTranspose: act(convT(x, w) + b + residual), or
    act(convT(x, w) + b) + residual with ``residual_after_act=1``."""
    y = ConvTranspose(x, w, b, auto_pad=auto_pad, dilations=dilations, group=group,
                      kernel_shape=kernel_shape, output_padding=output_padding,
                      output_shape=output_shape, pads=pads, strides=strides)
    if residual is not None and not residual_after_act:
        y = y + residual
    y = apply_activation(y, activation, alpha, beta, clip_min, clip_max)
    if residual is not None and residual_after_act:
        y = y + residual
    return y.astype(x.dtype, copy=False)
