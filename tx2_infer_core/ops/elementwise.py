"""Elementwise ops: activations, arithmetic, comparisons and logic (numpy broadcasting).

Float inputs keep their dtype (float32 stays float32); comparisons give bool.
"""
import math

import numpy as np

from tx2_infer_core.ops.common import unsupported

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _same(x, y):
    """``y`` cast back to the dtype of ``x`` (numpy may promote scalars or ints)."""
    return np.asarray(y).astype(x.dtype, copy=False)


# Activations -------------------------------------------------------------------------------

def Relu(x):
    """max(x, 0)."""
    return _same(x, np.maximum(x, 0))


def LeakyRelu(x, *, alpha=0.01):
    """x if x >= 0 else alpha * x."""
    scaled = x * x.dtype.type(alpha)
    if 0 <= alpha <= 1:       # max/min are ~4x faster than np.where on large arrays
        return _same(x, np.maximum(x, scaled))
    return _same(x, np.where(x >= 0, x, scaled))


def PRelu(x, slope):
    """x if x >= 0 else slope * x (slope broadcasts)."""
    return _same(x, np.where(x >= 0, x, x * slope))


def Sigmoid(x):
    """1 / (1 + exp(-x)) (exp overflow to inf gives the correct 0)."""
    if x.dtype.kind != 'f':
        return _same(x, 1 / (1 + np.exp(-x.astype(np.float64))))
    y = np.negative(x)
    with np.errstate(over='ignore'):
        np.exp(y, out=y)
    y += 1
    return np.reciprocal(y, out=y)


def SiLU(x):
    """x * sigmoid(x) = x / (1 + exp(-x)) (internal: what Sigmoid+Mul becomes after fusion)."""
    if x.dtype.kind != 'f':
        return _same(x, x * Sigmoid(x))
    y = np.negative(x)
    with np.errstate(over='ignore'):
        np.exp(y, out=y)
    y += 1
    return np.divide(x, y, out=y)


def Tanh(x):
    """Hyperbolic tangent."""
    return np.tanh(x)


def HardSigmoid(x, *, alpha=0.2, beta=0.5):
    """clip(alpha * x + beta, 0, 1)."""
    t = x.dtype.type
    return _same(x, np.clip(x * t(alpha) + t(beta), 0, 1))


def HardSwish(x):
    """x * HardSigmoid(x, alpha=1/6, beta=0.5)."""
    return _same(x, x * HardSigmoid(x, alpha=1 / 6, beta=0.5))


def Clip(x, min=None, max=None):
    """Clamp to [min, max]; both bounds optional (inputs since opset 11, attributes before)."""
    y = x
    if min is not None:
        y = np.maximum(y, np.asarray(min, dtype=x.dtype))
    if max is not None:
        y = np.minimum(y, np.asarray(max, dtype=x.dtype))
    return _same(x, y)


def Elu(x, *, alpha=1.0):
    """x if x > 0 else alpha * (exp(x) - 1)."""
    return _same(x, np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0))))


def Softplus(x):
    """log(1 + exp(x))."""
    return _same(x, np.logaddexp(x, 0))


def Softsign(x):
    """x / (1 + |x|)."""
    return _same(x, x / (1 + np.abs(x)))


def Mish(x):
    """x * tanh(softplus(x))."""
    return _same(x, x * np.tanh(np.logaddexp(x, 0)))


def Gelu(x, *, approximate='none'):
    """x * Phi(x) (Phi: the standard normal CDF), or its tanh approximation."""
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    v = x.astype(np.float64)
    if approximate == 'tanh':
        return _same(x, 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v ** 3))))
    if approximate != 'none':
        unsupported(f"approximate='{approximate}'")
    return _same(x, 0.5 * v * (1 + _erf(v / np.sqrt(2))))


def Selu(x, *, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875):
    """gamma * (x if x > 0 else alpha * (exp(x) - 1))."""
    return _same(x, gamma * Elu(x, alpha=alpha))


def Celu(x, *, alpha=1.0):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""
    with np.errstate(over='ignore'):    # large x: min(0, inf) is the 0 wanted
        negative = np.minimum(alpha * np.expm1(x / alpha), 0)
    return _same(x, np.maximum(x, 0) + negative)


def ThresholdedRelu(x, *, alpha=1.0):
    """x if x > alpha else 0."""
    return _same(x, np.where(x > alpha, x, 0))


def Shrink(x, *, bias=0.0, lambd=0.5):
    """x + bias if x < -lambd, x - bias if x > lambd, else 0."""
    return _same(x, np.where(x < -lambd, x + bias, np.where(x > lambd, x - bias, 0)))


def Swish(x, *, alpha=1.0):
    """x * sigmoid(alpha * x)."""
    return _same(x, x * Sigmoid(x * x.dtype.type(alpha)))


# Arithmetic ------------------------------------------------------------------------------------

def Add(a, b):
    """a + b."""
    return _same(a, a + b)


def Sub(a, b):
    """a - b."""
    return _same(a, a - b)


def Mul(a, b):
    """a * b."""
    return _same(a, a * b)


def Div(a, b):
    """a / b (integer division truncates toward zero, as in C)."""
    if np.issubdtype(a.dtype, np.integer):
        return _same(a, np.trunc(a / b))
    return _same(a, a / b)


def Pow(x, y):
    """x ** y; the result has the dtype of x."""
    if np.issubdtype(x.dtype, np.integer):
        return _same(x, np.power(x.astype(np.float64), y))
    return _same(x, np.power(x, y.astype(x.dtype, copy=False)))


def Mod(a, b, *, fmod=0):
    """Remainder: fmod=1 gives C fmod (sign of a), else Python % (sign of b)."""
    if fmod:
        return _same(a, np.fmod(a, b))
    return _same(a, np.mod(a, b))


def Sqrt(x):
    """Square root."""
    return np.sqrt(x)


def Exp(x):
    """e ** x."""
    return np.exp(x)


def Log(x):
    """Natural logarithm."""
    return np.log(x)


def Erf(x):
    """Gauss error function."""
    return _same(x, _erf(x))


def Neg(x):
    """-x."""
    return np.negative(x)


def Abs(x):
    """|x|."""
    return np.abs(x)


def Floor(x):
    """Round down."""
    return np.floor(x)


def Ceil(x):
    """Round up."""
    return np.ceil(x)


def Round(x):
    """Round half to even."""
    return np.round(x)


def Reciprocal(x):
    """1 / x."""
    return _same(x, 1 / x)


def Sign(x):
    """-1, 0 or 1."""
    return np.sign(x)


def Sin(x):
    """Sine."""
    return np.sin(x)


def Cos(x):
    """Cosine."""
    return np.cos(x)


def Tan(x):
    """Tangent."""
    return np.tan(x)


def Asin(x):
    """Inverse sine."""
    return np.arcsin(x)


def Acos(x):
    """Inverse cosine."""
    return np.arccos(x)


def Atan(x):
    """Inverse tangent."""
    return np.arctan(x)


def Sinh(x):
    """Hyperbolic sine."""
    return np.sinh(x)


def Cosh(x):
    """Hyperbolic cosine."""
    return np.cosh(x)


def Asinh(x):
    """Inverse hyperbolic sine."""
    return np.arcsinh(x)


def Acosh(x):
    """Inverse hyperbolic cosine."""
    return np.arccosh(x)


def Atanh(x):
    """Inverse hyperbolic tangent."""
    return np.arctanh(x)


# Variadic --------------------------------------------------------------------------------------

def Sum(*xs):
    """Elementwise sum of all inputs."""
    return _same(xs[0], sum(xs[1:], xs[0]))


def Mean(*xs):
    """Elementwise mean of all inputs."""
    return _same(xs[0], Sum(*xs) / len(xs))


def Max(*xs):
    """Elementwise maximum of all inputs."""
    return _same(xs[0], np.maximum.reduce(np.broadcast_arrays(*xs)))


def Min(*xs):
    """Elementwise minimum of all inputs."""
    return _same(xs[0], np.minimum.reduce(np.broadcast_arrays(*xs)))


# Comparison and logic ----------------------------------------------------------------------------

def Equal(a, b):
    """a == b."""
    return np.equal(a, b)


def Less(a, b):
    """a < b."""
    return np.less(a, b)


def LessOrEqual(a, b):
    """a <= b."""
    return np.less_equal(a, b)


def Greater(a, b):
    """a > b."""
    return np.greater(a, b)


def GreaterOrEqual(a, b):
    """a >= b."""
    return np.greater_equal(a, b)


def Not(x):
    """Logical not."""
    return np.logical_not(x)


def And(a, b):
    """Logical and."""
    return np.logical_and(a, b)


def Or(a, b):
    """Logical or."""
    return np.logical_or(a, b)


def Xor(a, b):
    """Logical xor."""
    return np.logical_xor(a, b)


def Where(condition, x, y):
    """x where condition else y."""
    return np.where(condition, x, y).astype(np.result_type(x, y), copy=False)


def IsNaN(x):
    """True where x is NaN."""
    return np.isnan(x)


def IsInf(x, *, detect_negative=1, detect_positive=1):
    """True where x is +inf (detect_positive) or -inf (detect_negative)."""
    return (np.isposinf(x) & bool(detect_positive)) | (np.isneginf(x) & bool(detect_negative))


# Bitwise (integers) ------------------------------------------------------------------------------

def BitwiseAnd(a, b):
    """a & b."""
    return np.bitwise_and(a, b)


def BitwiseOr(a, b):
    """a | b."""
    return np.bitwise_or(a, b)


def BitwiseXor(a, b):
    """a ^ b."""
    return np.bitwise_xor(a, b)


def BitwiseNot(x):
    """~x."""
    return np.invert(x)


def BitShift(x, y, *, direction=''):
    """x << y (direction 'LEFT') or x >> y ('RIGHT', arithmetic for signed x). A shift below 0
    or of the bit width or more gives 0 (-1 for a right shift of a negative x)."""
    if direction not in ('LEFT', 'RIGHT'):
        unsupported(f'direction={direction!r}')
    x, y = np.broadcast_arrays(x, y)
    inside = (y >= 0) & (y < np.iinfo(x.dtype).bits)
    unsigned = np.dtype(f'u{x.dtype.itemsize}')
    amount = np.where(inside, y, 0).astype(unsigned)
    if direction == 'RIGHT':
        fill = np.negative((x < 0).astype(x.dtype))     # the sign bit alone: -1 or 0
        return np.where(inside, np.right_shift(x, amount.astype(x.dtype)), fill)
    shifted = np.left_shift(x.astype(unsigned), amount).astype(x.dtype)  # top bits dropped
    return np.where(inside, shifted, x.dtype.type(0))
