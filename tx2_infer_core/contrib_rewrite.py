"""Import-time rewrite of ONNX Runtime's ``com.microsoft`` ops into standard ONNX ops, so shape
inference (our reference ops), the passes and every backend see only ops they know::

    QLinearAdd/Mul(a, as, az, b, bs, bz, ys, yz)   -> DQ(a), DQ(b) -> Add/Mul -> Q(ys, yz)
    QLinearSigmoid/LeakyRelu/GlobalAveragePool/AveragePool/Softmax(x, xs, xz, ys, yz)
                                                    -> DQ(x) -> float op -> Q(ys, yz)
    QLinearConcat(ys, yz, x0, s0, z0, x1, ...)      -> DQ(xk) ... -> Concat -> Q(ys, yz)
    FastGelu(x, bias)   -> Gelu(x + bias, approximate='tanh')
    BiasGelu(a, b)      -> Gelu(a + b);  Gelu(x) -> Gelu(x)
    QuickGelu(x)        -> x * Sigmoid(alpha * x)
    SkipLayerNormalization(x, skip, gamma, beta, bias)
                        -> s = x + skip (+ bias) -> LayerNormalization(s, gamma, beta)
    BiasAdd(x, bias, skip) -> x + bias + skip
    FusedConv(x, w, b, z)  -> Conv(x, w, b) (+ z) -> its activation
    FusedMatMul(a, b)      -> MatMul, or Einsum for a transposed activation, * alpha

It runs on the node list before shape inference, so it needs no shapes: the ONNX Runtime
QLinear ops take one scale and zero point per tensor. The QLinear forms differ from ONNX
Runtime's integer kernels by at most one quantum, rarely (test_contrib_ops.py). Any other
``com.microsoft`` op is refused by name, its domain in the message.
"""
import numpy as np

from tx2_infer_core.ir import Node
from tx2_infer_core.qoperator_rewrite import Replacement

DOMAIN = 'com.microsoft'
SKIP_LN_EPSILON = 1e-12     # ONNX Runtime's default epsilon of SkipLayerNormalization
POOL_ATTRS = ('auto_pad', 'ceil_mode', 'count_include_pad', 'kernel_shape', 'pads', 'strides')


class _Emit(Replacement):
    """The standard nodes that replace one contrib ``node``, named after it."""

    refuse_prefix = f"domain '{DOMAIN}': "

    def __init__(self, node, weights):
        super().__init__(node)
        self.weights = weights

    def __call__(self, op, inputs, attrs=None):
        """Append ``op`` with one new output; its name."""
        name = f'{self.node.name}/{len(self.nodes)}_{op}'
        self.nodes.append(Node(op, name, list(inputs), [name], dict(attrs or {})))
        return name

    def weight(self, part, array) -> str:
        name = f'{self.node.name}/{part}'
        self.weights[name] = np.asarray(array)
        return name


def _dq(emit, q, scale, zero_point):
    return emit('DequantizeLinear', [q, scale] + ([zero_point] if zero_point else []))


def _q_last(emit, y, scale, zero_point):
    if not zero_point:
        emit.refuse('an output without a zero point (its type unknown)')
    emit.last('QuantizeLinear', [y, scale, zero_point])


def _qlinear_binary(op):
    def rewrite(emit, a, as_, az, b, bs, bz, ys, yz=''):
        _q_last(emit, emit(op, [_dq(emit, a, as_, az), _dq(emit, b, bs, bz)]), ys, yz)
    rewrite.__doc__ = f'QLinear{op} -> DQ(a), DQ(b), {op}, Q.'
    return rewrite


def _qlinear_unary(op, keep=()):
    def rewrite(emit, x, xs, xz, ys, yz='', channels_last=0, **attrs):
        if channels_last:
            emit.refuse(f'channels_last={channels_last} (NCHW only)')
        attrs = {k: v for k, v in attrs.items() if k in keep}
        _q_last(emit, emit(op, [_dq(emit, x, xs, xz)], attrs), ys, yz)
    rewrite.__doc__ = f'QLinear{op} -> DQ(x), {op}, Q.'
    return rewrite


def qlinear_softmax(emit, x, xs, xz, ys, yz='', axis=-1, opset=13):
    """QLinearSoftmax -> DQ(x), Softmax(axis), Q; before opset 13 the Softmax is over ``x``
    flattened to 2-D at ``axis``: Flatten -> Softmax(-1) -> Reshape back."""
    xf = _dq(emit, x, xs, xz)
    if opset >= 13:
        y = emit('Softmax', [xf], {'axis': axis})
    else:
        soft = emit('Softmax', [emit('Flatten', [xf], {'axis': axis})], {'axis': -1})
        y = emit('Reshape', [soft, emit('Shape', [xf])])
    _q_last(emit, y, ys, yz)


def qlinear_concat(emit, ys, yz, *triples, axis):
    """QLinearConcat -> DQ of every (x, scale, zero point), Concat(axis), Q."""
    if len(triples) % 3:
        emit.refuse(f'{len(triples)} inputs after the output scale: not (x, scale, zp) triples')
    parts = [_dq(emit, *triples[k:k + 3]) for k in range(0, len(triples), 3)]
    _q_last(emit, emit('Concat', parts, {'axis': axis}), ys, yz)


def fast_gelu(emit, x, bias=''):
    """FastGelu -> Gelu(x + bias, approximate='tanh')."""
    emit.last('Gelu', [emit('Add', [x, bias]) if bias else x], {'approximate': 'tanh'})


def bias_gelu(emit, a, b):
    """BiasGelu -> Gelu(a + b)."""
    emit.last('Gelu', [emit('Add', [a, b])])


def gelu(emit, x):
    """com.microsoft Gelu -> Gelu (the erf form)."""
    emit.last('Gelu', [x])


def quick_gelu(emit, x, alpha=1.702):
    """QuickGelu -> x * Sigmoid(alpha * x)."""
    scaled = emit('Mul', [x, emit.weight('alpha', np.float32(alpha))])
    emit.last('Mul', [x, emit('Sigmoid', [scaled])])


def bias_add(emit, x, bias, skip):
    """BiasAdd -> (x + bias) + skip."""
    emit.last('Add', [emit('Add', [x, bias]), skip])


def skip_layer_normalization(emit, x, skip, gamma, beta='', bias='', epsilon=SKIP_LN_EPSILON):
    """SkipLayerNormalization -> LayerNormalization(x + skip (+ bias), gamma, beta); its
    fourth output is that sum, its mean and inverse std outputs are refused."""
    outputs = emit.node.outputs + [''] * 4
    if any(outputs[1:3]):
        emit.refuse(f'the mean / inv_std_var outputs {outputs[1:3]} (only output and '
                    'input_skip_bias_sum)')
    total = emit('Add', [x, skip])
    if bias:
        total = emit('Add', [total, bias])
    if outputs[3]:
        emit.nodes.append(Node('Identity', f'{emit.node.name}/sum', [total], [outputs[3]]))
        total = outputs[3]
    emit.last('LayerNormalization', [total, gamma] + ([beta] if beta else []),
              {'axis': -1, 'epsilon': epsilon})


ACTIVATIONS = {'Relu': (), 'Tanh': (), 'Sigmoid': (), 'LeakyRelu': ('alpha',),
               'HardSigmoid': ('alpha', 'beta'), 'Clip': ()}


def fused_conv(emit, x, w, b='', z='', activation='', activation_params=(), **attrs):
    """com.microsoft FusedConv -> Conv(x, w, b) (+ z), then its activation."""
    if activation and activation not in ACTIVATIONS:
        emit.refuse(f"activation '{activation}' ({', '.join(ACTIVATIONS)} only)")
    y = emit('Conv', [x, w] + ([b] if b else []), attrs)
    if z:
        y = emit('Add', [y, z])
    if not activation:
        emit.last('Identity', [y])
    elif activation == 'Clip':
        low, high = (list(activation_params) + [-np.inf, np.inf])[:2]
        emit.last('Clip', [y, emit.weight('min', np.float32(low)),
                           emit.weight('max', np.float32(high))])
    else:
        emit.last(activation, [y], dict(zip(ACTIVATIONS[activation], activation_params)))


def _transposed(emit, x, trans, part):
    """``x`` transposed in its last two dims if ``trans`` and ``x`` is a constant: (name,
    trans still to do)."""
    if trans and x in emit.weights and np.ndim(emit.weights[x]) >= 2:
        return emit.weight(part, np.swapaxes(emit.weights[x], -1, -2)), 0
    return x, trans


def fused_matmul(emit, a, b, alpha=1.0, transA=0, transB=0, transBatchA=0, transBatchB=0):
    """FusedMatMul -> alpha * (op(a) @ op(b)): a transposed constant is stored transposed; a
    transposed activation makes it an Einsum (batch dims as '...', a 2-D constant without)."""
    if transBatchA or transBatchB:
        emit.refuse(f'transBatchA={transBatchA}, transBatchB={transBatchB} (0 only)')
    a, transA = _transposed(emit, a, transA, 'a_t')
    b, transB = _transposed(emit, b, transB, 'b_t')
    if transA or transB:
        def spec(x, letters):
            flat = x in emit.weights and np.ndim(emit.weights[x]) == 2
            return letters if flat else '...' + letters
        left, right = spec(a, 'ji' if transA else 'ij'), spec(b, 'kj' if transB else 'jk')
        batch = '...' if '...' in left + right else ''
        y = emit('Einsum', [a, b], {'equation': f'{left},{right}->{batch}ik'})
    else:
        y = emit('MatMul', [a, b])
    emit.last('Mul', [y, emit.weight('alpha', np.float32(alpha))])


REWRITES = {
    'QLinearAdd': _qlinear_binary('Add'), 'QLinearMul': _qlinear_binary('Mul'),
    'QLinearSigmoid': _qlinear_unary('Sigmoid'),
    'QLinearLeakyRelu': _qlinear_unary('LeakyRelu', ('alpha',)),
    'QLinearGlobalAveragePool': _qlinear_unary('GlobalAveragePool'),
    'QLinearAveragePool': _qlinear_unary('AveragePool', POOL_ATTRS),
    'QLinearSoftmax': qlinear_softmax, 'QLinearConcat': qlinear_concat,
    'FastGelu': fast_gelu, 'BiasGelu': bias_gelu, 'Gelu': gelu, 'QuickGelu': quick_gelu,
    'SkipLayerNormalization': skip_layer_normalization, 'BiasAdd': bias_add,
    'FusedConv': fused_conv, 'FusedMatMul': fused_matmul,
}


def rewrite_contrib(nodes, weights) -> list:
    """``nodes`` with every ``com.microsoft`` node written as standard ONNX ops (new constants
    added to ``weights``); any other node of that domain is refused by name."""
    out = []
    for node in nodes:
        domain, _, op_type = node.op.rpartition('::')
        if domain != DOMAIN:
            out.append(node)
            continue
        emit = _Emit(node, weights)
        if op_type not in REWRITES:
            emit.refuse(f"'{op_type}' has no rewrite into standard ONNX ops (known: "
                        f"{', '.join(sorted(REWRITES))})")
        REWRITES[op_type](emit, *node.inputs, **node.attrs)
        out.extend(emit.nodes)
    return out
