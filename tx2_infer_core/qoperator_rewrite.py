"""Import-time rewrite of ONNX's QOperator ops into QDQ form, so the passes (constant folding
of the weight DequantizeLinear, conv fusion) and every backend see float ops::

    QLinearConv(x, xs, xz, w, ws, wz, ys, yz, B)
        -> Conv(DQ(x, 1, xz), DQ(w, 1, wz), Cast(B))    (the exact integer sum, in float32)
        -> Cast int32 -> DQ(m) -> QuantizeLinear(1, yz)     m = float32(xs * ws / ys)
    QLinearMatMul(a, as, az, b, bs, bz, ys, yz)
        -> MatMul(DQ(a, 1, az), DQ(b, 1, bz)) -> Cast int32 -> DQ(m) -> QuantizeLinear(1, yz)
    MatMulInteger(a, b, az, bz) / ConvInteger(x, w, xz, wz)
        -> DQ(scale 1, zero point) (or Cast) -> MatMul / Conv in float -> Cast int32

QLinear: ``rint(float32(acc) * m) + yz``, ONNX Runtime's requantisation bit for bit
(``ops/qoperator.py``). The multiplier is a DequantizeLinear of the int32 sum, not a Mul: no
scale fold (ours, ``fold_batchnorm.fold_scale_shift``, nor ONNX Runtime's ConvMulFusion) can
move it into the weights, where each product would round before the sum and an output next to
a rounding tie could land one quantum off. Where that form cannot be exact (a sum that may
reach 2**24, a scale that is not a float32 constant, per-row or per-channel input or output
scales) the node is written as before, ``Q(Conv(DQ(x), DQ(w), DQ(B, xs * ws)), ys, yz)``,
logged by name: the FP32 sum may then differ from ORT by one quantum, rarely. Level 3 (CUDA,
FP16) writes the multiplier back as a Mul folded into the weights (``passes/requantize.py``).
Integer: exact while every partial sum stays below 2**24, which is checked from the constant
operand (else its dtype's range) and refused by name otherwise.
Runs after shape inference: each new value takes its shape from the value it stands for.
"""
import logging

import numpy as np

from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Node, Value
from tx2_infer_core.ops import OPS
from tx2_infer_core.ops.qoperator import multiplier
from tx2_infer_core.passes.graph_edit import add_weight, dtype_of, shape_of, unique_name

EXACT_SUM = 2 ** 24         # float32 holds every integer below it
INT32 = 6                   # ONNX TensorProto INT32 / FLOAT
FLOAT = 1
QUANT_RANGE = 255           # the widest |q - zero point| of an 8-bit operand

log = logging.getLogger('tx2_infer.onnx')


class Replacement:
    """The nodes that replace one ``node`` of an import-time rewrite (this module's and
    contrib_rewrite's), named after it: subclasses make the new nodes' outputs."""

    refuse_prefix = ''

    def __init__(self, node):
        self.node, self.nodes = node, []

    def last(self, op, inputs, attrs=None):
        """Append ``op`` writing the replaced node's output."""
        self.nodes.append(Node(op, self.node.name, list(inputs), list(self.node.outputs[:1]),
                               dict(attrs or {})))

    def refuse(self, detail):
        raise UnsupportedOpError(self.node.op, self.node.name, OPS,
                                 self.refuse_prefix + detail)


class _Emit(Replacement):
    """The nodes (and their values) that replace ``node``, named after it."""

    def __init__(self, graph, node):
        super().__init__(node)
        self.graph = graph

    def __call__(self, op, inputs, like, dtype, attrs=None, shape=None):
        """Append ``op`` with one new output shaped as ``like`` (or ``shape``); its name."""
        name = unique_name(self.graph, f'{self.node.name}/{op}')
        old = self.graph.values.get(like)
        shape = shape_of(self.graph, like) if shape is None else shape
        self.graph.values[name] = Value(name, tuple(shape), dtype, old.layout if old else '')
        self.nodes.append(Node(op, name, list(inputs), [name], dict(attrs or {})))
        return name

    def weight(self, part, array) -> str:
        return add_weight(self.graph, f'{self.node.name}/{part}', array)


def _size(graph, name) -> int:
    return int(np.prod(shape_of(graph, name)))


def dequantize(emit, q, scale, zero_point, axis):
    """Float ``DequantizeLinear(q, scale, zero_point)``; a 1-D scale runs along ``axis`` (a
    constant one-value zero point is widened to the scale's shape, as ONNX asks)."""
    g = emit.graph
    attrs = {'axis': axis} if _size(g, scale) > 1 else {}
    if zero_point and _size(g, zero_point) != _size(g, scale):
        if zero_point not in g.weights or _size(g, zero_point) != 1:
            emit.refuse(f"zero point '{zero_point}' and scale '{scale}' differ in shape")
        zero_point = emit.weight('zero_point', np.full(
            shape_of(g, scale), g.weights[zero_point].reshape(-1)[0]))
    inputs = [q, scale] + ([zero_point] if zero_point else [])
    return emit('DequantizeLinear', inputs, q, dtype_of(g, scale), attrs)


def centred(emit, q, zero_point, axis):
    """``q - zero_point`` as float32 integers: DequantizeLinear with scale 1 (or a Cast)."""
    if not zero_point:
        return emit('Cast', [q], q, 'float32', {'to': FLOAT})
    ones = emit.weight('one', np.ones(shape_of(emit.graph, zero_point), np.float32))
    return dequantize(emit, q, ones, zero_point, axis)


def float_qlinear_conv(emit, x, xs, xz, w, ws, wz, ys, yz, b='', **attrs):
    """QLinearConv -> DQ(x), Conv over DQ(w) with bias DQ(B, xs * ws), Q(ys, yz)."""
    inputs = [dequantize(emit, x, xs, xz, 1), dequantize(emit, w, ws, wz, 0)]
    if b:
        g = emit.graph
        shape = np.broadcast_shapes(shape_of(g, xs), shape_of(g, ws))
        bias_scale = emit('Mul', [xs, ws], ws, dtype_of(g, ws), shape=shape)
        inputs.append(dequantize(emit, b, bias_scale, '', 0))
    y = emit('Conv', inputs, emit.node.outputs[0], dtype_of(emit.graph, xs), attrs)
    emit.last('QuantizeLinear', [y, ys, yz] if yz else [y, ys])


def float_qlinear_matmul(emit, a, as_, az, b, bs, bz, ys, yz):
    """QLinearMatMul -> DQ(a) (per row), DQ(b) (per column), MatMul, Q(ys, yz)."""
    af, bf = dequantize(emit, a, as_, az, -2), dequantize(emit, b, bs, bz, -1)
    y = emit('MatMul', [af, bf], emit.node.outputs[0], dtype_of(emit.graph, as_))
    emit.last('QuantizeLinear', [y, ys, yz] if yz else [y, ys])


def exact_multiplier(emit, in_scale, w_scale, out_scale, bound):
    """ONNX Runtime's float32 ``in_scale * w_scale / out_scale`` (one value, or one per output
    channel) when the exact form applies: float32 constant scales, per tensor but ``w_scale``,
    every partial sum (at most ``bound``) below 2**24. Else None, logged by name."""
    scales = [emit.graph.weights.get(s) for s in (in_scale, w_scale, out_scale)]
    if any(s is None or s.dtype != np.float32 for s in scales):
        why = 'a scale that is not a float32 constant'
    elif scales[0].size != 1 or scales[2].size != 1:
        why = 'per-row or per-channel input or output scales'
    elif bound >= EXACT_SUM:
        why = f'integer sums that may reach {bound:.3g} >= 2**24'
    else:
        return multiplier(*scales, (-1,))
    log.info("%s '%s': %s; requantised after a float32 sum of scaled operands (may differ "
             'from ONNX Runtime by one quantum next to a rounding tie)', emit.node.op,
             emit.node.name, why)
    return None


def requantized(emit, acc, m, ys, yz, axis):
    """``QuantizeLinear(float32(acc) * m, 1, yz)`` for ``acc`` the exact integer sum in float32:
    ``acc`` cast to int32 and dequantized by ``m`` (per ``axis`` when 1-D), one rounding."""
    acc_int = emit('Cast', [acc], acc, 'int32', {'to': INT32})
    scaled = emit('DequantizeLinear', [acc_int, emit.weight('multiplier', m)], acc, 'float32',
                  {'axis': axis} if m.size > 1 else {})
    one = emit.weight('one', np.ones(shape_of(emit.graph, ys), np.float32))
    emit.last('QuantizeLinear', [scaled, one, yz] if yz else [scaled, one])


def qlinear_conv(emit, x, xs, xz, w, ws, wz, ys, yz, b='', **attrs):
    """QLinearConv -> Conv of ``x - xz``, ``w - wz`` and B as float32 integers, requantised
    (``requantized``); the float form when that cannot be exact."""
    g = emit.graph
    rank = len(shape_of(g, w))
    bound = largest_sum(g, x, xz, w, wz, 0, tuple(range(1, rank))) + _largest(g, b)
    m = exact_multiplier(emit, xs, ws, ys, bound)
    if m is None:
        float_qlinear_conv(emit, x, xs, xz, w, ws, wz, ys, yz, b, **attrs)
        return
    inputs = [centred(emit, x, xz, 1), centred(emit, w, wz, 0)]
    if b:
        inputs.append(centred(emit, b, '', 0))
    acc = emit('Conv', inputs, emit.node.outputs[0], 'float32', attrs)
    requantized(emit, acc, m, ys, yz, 1)


def qlinear_matmul(emit, a, as_, az, b, bs, bz, ys, yz):
    """QLinearMatMul -> MatMul of ``a - az`` (per row) and ``b - bz`` (per column) as float32
    integers, requantised per column; the float form when that cannot be exact."""
    bound = largest_sum(emit.graph, a, az, b, bz, -1, -2)
    m = exact_multiplier(emit, as_, bs, ys, bound)
    if m is None:
        float_qlinear_matmul(emit, a, as_, az, b, bs, bz, ys, yz)
        return
    acc = emit('MatMul', [centred(emit, a, az, -2), centred(emit, b, bz, -1)],
               emit.node.outputs[0], 'float32')
    requantized(emit, acc, m, ys, yz, -1)


def _largest(graph, b) -> float:
    """The largest |B| of a constant bias (0 without one, infinite when not a constant)."""
    if not b:
        return 0.0
    if b not in graph.weights:
        return np.inf
    return float(np.abs(graph.weights[b].astype(np.float64)).max(initial=0))


def largest_sum(graph, x, xz, w, wz, w_axis, sum_axes) -> float:
    """A bound on every partial sum of products of ``x - xz`` and ``w - wz`` (one output):
    sum |w - wz| over ``sum_axes`` (255 each when ``w`` is not a constant) times the largest
    |x - xz| (255 when not constant)."""
    def centred_constant(q, zp, axis):
        if q not in graph.weights or (zp and zp not in graph.weights):
            return None
        return OPS['DequantizeLinear'](graph.weights[q], np.ones_like(
            graph.weights[zp], np.float64) if zp else np.float64(1), graph.weights.get(zp),
            axis=axis)
    xc, wc = centred_constant(x, xz, -2), centred_constant(w, wz, w_axis)
    x_max = float(np.abs(xc).max(initial=0)) if xc is not None else QUANT_RANGE
    wc = np.full(shape_of(graph, w), QUANT_RANGE) if wc is None else np.abs(wc)
    return float(wc.sum(axis=sum_axes).max(initial=0)) * x_max


def _check_exact(emit, bound):
    if bound >= EXACT_SUM:
        emit.refuse(f'its integer sums may reach {bound:.3g} >= 2**24, beyond what the float32 '
                    'rewrite computes exactly')


def matmul_integer(emit, a, b, az='', bz=''):
    """MatMulInteger -> (a - az), (b - bz) as float32 integers, MatMul, Cast int32."""
    _check_exact(emit, largest_sum(emit.graph, a, az, b, bz, -1, -2))
    y = emit('MatMul', [centred(emit, a, az, -2), centred(emit, b, bz, -1)],
             emit.node.outputs[0], 'float32')
    emit.last('Cast', [y], {'to': INT32})


def conv_integer(emit, x, w, xz='', wz='', **attrs):
    """ConvInteger -> (x - xz), (w - wz) as float32 integers, Conv, Cast int32."""
    rank = len(shape_of(emit.graph, w))
    _check_exact(emit, largest_sum(emit.graph, x, xz, w, wz, 0, tuple(range(1, rank))))
    y = emit('Conv', [centred(emit, x, xz, 1), centred(emit, w, wz, 0)],
             emit.node.outputs[0], 'float32', attrs)
    emit.last('Cast', [y], {'to': INT32})


REWRITES = {'QLinearConv': qlinear_conv, 'QLinearMatMul': qlinear_matmul,
            'MatMulInteger': matmul_integer, 'ConvInteger': conv_integer}


def rewrite_qoperators(graph) -> int:
    """Write every QOperator node of ``graph`` (static shapes known) in QDQ form (see the
    module doc), in place; returns how many were rewritten."""
    nodes, count = [], 0
    for node in graph.nodes:
        rewrite = REWRITES.get(node.op)
        if rewrite is None:
            nodes.append(node)
            continue
        emit = _Emit(graph, node)
        rewrite(emit, *node.inputs, **node.attrs)
        nodes.extend(emit.nodes)
        count += 1
    graph.nodes = nodes
    return count
