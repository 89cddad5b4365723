"""Internal fused ops produced by the fusion passes (one per future CUDA kernel)."""
import json

import numpy as np

from tx2_infer_core.ops import elementwise, tensor, traits
from tx2_infer_core.ops.common import unsupported
from tx2_infer_core.ops.conv import Conv, ConvTranspose
from tx2_infer_core.ops.nn import LayerNormalization


def apply_activation(x, name, alpha=0.01, beta=0.5, clip_min=-np.inf, clip_max=np.inf,
                     slope=None):
    """Apply a FusedConv ``activation`` by name ('' is the identity): any op of kind
    'activation' in ``ops/traits.py``, its attributes taken from ``alpha`` and ``beta``, or
    PRelu with ``slope`` (the node's slope input, shaped to broadcast over the channels)."""
    if name == '':
        return x
    if name == 'Clip':
        return elementwise.Clip(x, np.float32(clip_min), np.float32(clip_max))
    if name == 'PRelu':
        if slope is None:
            unsupported("activation='PRelu' without a slope input")
        return elementwise.PRelu(x, slope)
    if name not in traits.names(kind=traits.ACTIVATION):
        unsupported(f"activation='{name}'")
    return getattr(elementwise, name)(x, **traits.activation_params(name, alpha, beta))


def post_affine(y, post_scale=1.0, post_shift=0.0):
    """``y * post_scale + post_shift`` in ``y``'s dtype (two roundings; at the defaults ``y``
    itself): the learnable affine a fused epilogue applies right after its activation, before
    a residual added after the activation."""
    if post_scale != 1.0:
        y = y * y.dtype.type(post_scale)
    if post_shift != 0.0:
        y = y + y.dtype.type(post_shift)
    return y


def post_affine_inplace(y, post_scale=1.0, post_shift=0.0):
    """``post_affine`` written back into ``y`` (the same steps, so bit-equal)."""
    if post_scale != 1.0:
        y *= y.dtype.type(post_scale)
    if post_shift != 0.0:
        y += y.dtype.type(post_shift)


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


def FusedConv(x, w, b=None, residual=None, slope=None, *, auto_pad='NOTSET', dilations=None,
              group=1, kernel_shape=None, pads=None, strides=None, activation='', alpha=0.01,
              beta=0.5, clip_min=-np.inf, clip_max=np.inf, residual_after_act=0,
              post_scale=1.0, post_shift=0.0):
    """act(conv(x, w) + b + residual) * post_scale + post_shift, or with
    ``residual_after_act=1`` act(conv(x, w) + b) * post_scale + post_shift + residual;
    ``slope``: PRelu's, [C_out, 1, ...] (one per output channel)."""
    y = Conv(x, w, b, auto_pad=auto_pad, dilations=dilations, group=group,
             kernel_shape=kernel_shape, pads=pads, strides=strides)
    act = dict(name=activation, alpha=alpha, beta=beta, clip_min=clip_min, clip_max=clip_max,
               slope=slope)
    if residual is not None and not residual_after_act:
        y += residual
    y = post_affine(apply_activation(y, **act), post_scale, post_shift)
    if residual is not None and residual_after_act:
        y = y + residual
    return y.astype(x.dtype, copy=False)


def FusedConvTranspose(x, w, b=None, residual=None, slope=None, *, auto_pad='NOTSET',
                       dilations=None, group=1, kernel_shape=None, output_padding=None,
                       output_shape=None, pads=None, strides=None, activation='', alpha=0.01,
                       beta=0.5, clip_min=-np.inf, clip_max=np.inf, residual_after_act=0,
                       post_scale=1.0, post_shift=0.0):
    """FusedConv's epilogue after an ONNX ConvTranspose: act(convT(x, w) + b + residual)
    * post_scale + post_shift, the residual after that with ``residual_after_act=1``."""
    y = ConvTranspose(x, w, b, auto_pad=auto_pad, dilations=dilations, group=group,
                      kernel_shape=kernel_shape, output_padding=output_padding,
                      output_shape=output_shape, pads=pads, strides=strides)
    if residual is not None and not residual_after_act:
        y = y + residual
    y = apply_activation(y, activation, alpha, beta, clip_min, clip_max, slope)
    y = post_affine(y, post_scale, post_shift)
    if residual is not None and residual_after_act:
        y = y + residual
    return y.astype(x.dtype, copy=False)


# FusedLinear's GELU activations (epilogue only: cuda/params.py EPILOGUE_ACTIVATIONS): name ->
# the Gelu op's ``approximate``.
GELU_FORMS = {'Gelu': 'none', 'GeluTanh': 'tanh'}


def FusedLinear(x, w, b=None, residual=None, slope=None, *, activation='', alpha=0.01,
                beta=0.5, clip_min=-np.inf, clip_max=np.inf, residual_after_act=0,
                post_scale=1.0, post_shift=0.0):
    """act(x @ w + b + residual) * post_scale + post_shift, or with ``residual_after_act=1``
    act(x @ w + b) * post_scale + post_shift + residual:
    ``w`` a constant [K, N] matrix, ``b`` [N], ``residual`` of the output's shape (made by
    ``passes/fuse_linear.py``), ``slope`` PRelu's [N]; ``activation`` FusedConv's or a
    ``GELU_FORMS`` name."""
    y = np.matmul(x, w)
    if b is not None:
        y = y + b
    if residual is not None and not residual_after_act:
        y = y + residual
    if activation in GELU_FORMS:
        y = elementwise.Gelu(y, approximate=GELU_FORMS[activation])
    else:
        y = apply_activation(y, activation, alpha, beta, clip_min, clip_max, slope)
    y = post_affine(y, post_scale, post_shift)
    if residual is not None and residual_after_act:
        y = y + residual
    return y.astype(x.dtype, copy=False)


def FusedLinearNorm(x, w, b=None, residual=None, slope=None, scale=None, shift=None, *,
                    activation='', alpha=0.01, beta=0.5, clip_min=-np.inf, clip_max=np.inf,
                    residual_after_act=0, post_scale=1.0, post_shift=0.0, epsilon=1e-5):
    """``(LayerNormalization(s, scale, shift, axis=-1, epsilon), s)`` of FusedLinear's
    ``s = act(x @ w + b + residual) ...`` (same inputs and attributes): ``scale`` and ``shift``
    [N] (``shift`` may be omitted). The node's second output, when it names one, is ``s``
    (``passes/fuse_linear_norm.py``)."""
    s = FusedLinear(x, w, b, residual, slope, activation=activation, alpha=alpha, beta=beta,
                    clip_min=clip_min, clip_max=clip_max, residual_after_act=residual_after_act,
                    post_scale=post_scale, post_shift=post_shift)
    return LayerNormalization(s, scale, shift, axis=-1, epsilon=epsilon)[0], s


# FusedPointwise ---------------------------------------------------------------------------------
# A pointwise program is a JSON list of steps ``[op, args, attrs]``: ``op`` an elementwise ONNX
# op, ``args`` its inputs, each 'x<k>' (input k of the node), 't<j>' (the result of step j), a
# number (a float32 literal) or null (an omitted optional input); ``attrs`` its ONNX
# attributes. The last step's result is the output, e.g. a decomposed HardSwish::
#
#     [["Add", ["x0", 3.0], {}], ["Clip", ["t0", 0.0, 6.0], {}],
#      ["Mul", ["x0", "t1"], {}], ["Div", ["t2", 6.0], {}]]

POINTWISE_MODULES = {'elementwise': elementwise, 'tensor': tensor}


def program_steps(program) -> list:
    """The steps ``[(op, args, attrs)]`` of a program (a JSON string or an already parsed list)."""
    steps = json.loads(program) if isinstance(program, (str, bytes)) else program
    return [(str(op), list(args), dict(attrs)) for op, args, attrs in steps]


def program_text(steps) -> str:
    """The canonical JSON string of ``steps`` (what a FusedPointwise node's ``program`` holds)."""
    return json.dumps([[op, list(args), dict(attrs)] for op, args, attrs in steps],
                      separators=(',', ':'), sort_keys=True)


def program_arg(arg, inputs, results):
    """The array an argument names (see the program format above)."""
    if arg is None:
        return None
    if isinstance(arg, str):
        k = int(arg[1:])
        return inputs[k] if arg[0] == 'x' else results[k]
    return np.asarray(arg, np.float32)


def step_function(op):
    """The reference function of a program step's op."""
    return getattr(POINTWISE_MODULES[traits.TRAITS[op].module], op)


def FusedPointwise(*inputs, program):
    """The output of a chain of elementwise ops (``program``, see above), each step computed by
    its op's own reference function, so the result equals the unfused chain's."""
    results = []
    for op, args, attrs in program_steps(program):
        values = [program_arg(a, inputs, results) for a in args]
        while values and values[-1] is None:
            values.pop()
        results.append(step_function(op)(*values, **attrs))
    return results[-1]
