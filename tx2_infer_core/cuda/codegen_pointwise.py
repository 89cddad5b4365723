"""One generated CUDA kernel per pointwise program (a ``FusedPointwise`` node, ``ops/fused.py``).

The output is walked as (pixel p, channel c) where the channel is the innermost storage dim
(NHWC images: C; other tensors: the last dim), ``V`` elements (8 halves: one 16-byte access,
2, or 1) per thread. How each input is read is settled here, at generation time, from its
strides broadcast to the output shape::

    full    in[off + p * pix + c]   same pixels and channels (any pixel stride: views too)
    chan    in[off + c]             a per-channel vector
    row     in[off + p * pix]       one value per pixel, broadcast over the channels
    scalar  in[off]                 one value (a size-1 constant is a literal instead)
    view    tx2_view_offset         anything else (6-D index, one element per thread)

so no element pays a divide chain unless an input is a ``view``. A dense output whose inputs are
all ``full`` with its own layout or ``scalar`` is walked flat (no pixel/channel split). Shapes,
strides and offsets are kernel arguments, so one source serves every shape of a chain. The
source is registered with ``compile.py`` under ``pw_<hash of the source>`` and compiled (disk
cached) like a file of ``kernels/``.

The arena holds every value as FP16, bools (0/1) and integers too: an integer is exact up to
2048 (``lower_logic.EXACT_INT``), past that it is rounded to FP16's grid (4096 + 2k, ...) and
past 65504 saturated; but the index values of ``int32_values.py`` are int32: read as FP32
(exact below 2**24), written truncated toward zero and saturated to int32 (so an integer Div
truncates, as ONNX's), one element a thread. A ``Cast`` step (``cast_kind``) from float to an
integer type truncates toward zero (ONNX) and saturates at +-65504, to bool is ``x != 0``; any
other Cast (to a float, from an integer or bool) is the value itself. 1-byte integers (the int8
path's bytes), float8, 4-bit and string types are no arena value: ``cast_kind`` is '' and the
lowerings refuse them.
"""
import hashlib
import inspect
from dataclasses import dataclass

import numpy as np

from tx2_infer_core.cuda import compile as cc, params
from tx2_infer_core.cuda.launch import BLOCK, Launch, grid_1d
from tx2_infer_core.ops import traits
from tx2_infer_core.ops.fused import program_steps, step_function
from tx2_infer_core.ops.tensor import DTYPES

KERNEL = 'pointwise'
VECTORS = (8, 2, 1)  # halves per access, widest first
UNARY_C = {  # attributes ({alpha}): the node's, else the defaults of ops/elementwise.py
    'Relu': 'fmaxf({0}, 0.f)', 'Sigmoid': 'tx2_sigmoid({0})', 'Tanh': 'tanhf({0})',
    'LeakyRelu': '({0} >= 0.f ? {0} : {0} * {alpha})',
    'HardSwish': '{0} * fminf(fmaxf({0} / 6.f + 0.5f, 0.f), 1.f)',
    'HardSigmoid': 'fminf(fmaxf({alpha} * {0} + {beta}, 0.f), 1.f)',
    'SiLU': '{0} * tx2_sigmoid({0})', 'Exp': 'expf({0})', 'Log': 'logf({0})',
    'Mish': '{0} * tanhf({0} > 20.f ? {0} : log1pf(expf({0})))',
    'Sqrt': 'sqrtf({0})', 'Neg': '(-{0})', 'Abs': 'fabsf({0})', 'Reciprocal': '(1.f / {0})',
    'Erf': 'erff({0})', 'Floor': 'floorf({0})', 'Ceil': 'ceilf({0})',
    'Round': 'rintf({0})',  # half to even, as np.round
    'Sign': '({0} > 0.f ? 1.f : ({0} < 0.f ? -1.f : {0}))',  # 0 -> 0, NaN -> NaN
    'Softplus': '({0} > 20.f ? {0} : log1pf(expf({0})))',
    'Elu': '({0} > 0.f ? {0} : {alpha} * expm1f({0}))',
    'Selu': '{gamma} * ({0} > 0.f ? {0} : {alpha} * expm1f({0}))',
    'Celu': '({0} > 0.f ? {0} : {alpha} * expm1f({0} / {alpha}))',  # that is <= 0 there
    'ThresholdedRelu': '({0} > {alpha} ? {0} : 0.f)',
    'Shrink': '({0} < -({lambd}) ? {0} + {bias} : ({0} > {lambd} ? {0} - {bias} : 0.f))',
    'Swish': '{0} * tx2_sigmoid({alpha} * {0})',
    'Gelu': '0.5f * {0} * (1.f + erff({0} * 0.70710678f))',
    'Sin': 'sinf({0})', 'Cos': 'cosf({0})', 'Tan': 'tanf({0})', 'Asin': 'asinf({0})',
    'Acos': 'acosf({0})', 'Atan': 'atanf({0})', 'Sinh': 'sinhf({0})', 'Cosh': 'coshf({0})',
    'Asinh': 'asinhf({0})', 'Acosh': 'acoshf({0})', 'Atanh': 'atanhf({0})',
    'Not': '({0} == 0.f ? 1.f : 0.f)', 'IsNaN': '(isnan({0}) ? 1.f : 0.f)',
    'IsInf': '((isinf({0}) && ({0} > 0.f ? {detect_positive} : {detect_negative}) != 0.f) ? 1.f'
             ' : 0.f)'}
BINARY_C = {
    'Add': '({0} + {1})', 'Sub': '({0} - {1})', 'Mul': '({0} * {1})', 'Div': '({0} / {1})',
    'Max': 'fmaxf({0}, {1})', 'Min': 'fminf({0}, {1})', 'Pow': 'powf({0}, {1})',
    'PRelu': '({0} >= 0.f ? {0} : {0} * {1})', 'Equal': '({0} == {1} ? 1.f : 0.f)',
    'Less': '({0} < {1} ? 1.f : 0.f)', 'LessOrEqual': '({0} <= {1} ? 1.f : 0.f)',
    'Greater': '({0} > {1} ? 1.f : 0.f)', 'GreaterOrEqual': '({0} >= {1} ? 1.f : 0.f)',
    'And': '(({0} != 0.f && {1} != 0.f) ? 1.f : 0.f)',
    'Or': '(({0} != 0.f || {1} != 0.f) ? 1.f : 0.f)',
    'Xor': '((({0} != 0.f) != ({1} != 0.f)) ? 1.f : 0.f)'}
# Mod by its ``fmod`` attribute: C fmod (the dividend's sign), or Python's % (the divisor's sign:
# a non-zero C remainder of the other sign moves by one divisor, as numpy's mod does).
MOD_C = {1: 'fmodf({0}, {1})',
         0: '((fmodf({0}, {1}) != 0.f && (fmodf({0}, {1}) < 0.f) != ({1} < 0.f)) ? '
            'fmodf({0}, {1}) + {1} : fmodf({0}, {1}))'}
# Cast by what the target makes of a float (``cast_kind``; see the module doc).
CAST_C = {'f': '{0}', 'b': '({0} != 0.f ? 1.f : 0.f)',
          'i': 'fminf(fmaxf(truncf({0}), -65504.f), 65504.f)'}
FLOAT_TYPES = (1, 10, 11, 16)  # ONNX FLOAT, FLOAT16, DOUBLE, BFLOAT16
GELU_TANH = '0.5f * {0} * (1.f + tanhf(0.7978845608f * ({0} + 0.044715f * {0} * {0} * {0})))'
# Every op a program may hold: the tables above, Clip, Where and Mod, and every elementwise op
# with a kernel code (``coded_expression``).
C_OPS = tuple(dict.fromkeys(
    tuple(UNARY_C) + tuple(BINARY_C) + ('Clip', 'Where', 'Mod', 'Cast') + tuple(
        t.name for t in traits.TRAITS.values()
        if t.kind in traits.ELEMENTWISE_KINDS and t.code is not None)))


def float_literal(value) -> str:
    """A C float literal of ``value`` rounded to float32 (infinities and NaN too)."""
    v = float(np.float32(value))
    if np.isnan(v):
        return '__int_as_float(0x7fffffff)'
    if np.isinf(v):
        return 'TX2_INF' if v > 0 else '(-TX2_INF)'
    return f'{v:.9e}f'


def cast_kind(to) -> str:
    """What a Cast to ONNX type ``to`` makes of a float in the FP16 arena: 'f' (the value),
    'b' (bool 0/1), 'i' (an integer, 2 bytes or more); '' for no arena type."""
    to = int(to)
    if to in FLOAT_TYPES:
        return 'f'
    dtype = np.dtype(DTYPES.get(to, 'S'))
    if dtype.kind == 'b' or (dtype.kind in 'iu' and dtype.itemsize > 1):
        return 'b' if dtype.kind == 'b' else 'i'
    return ''


def cast_keeps_values(to, source: str) -> bool:
    """True when a Cast to ONNX type ``to`` of an arena value of dtype kind ``source`` stores
    the FP16 values it reads (a copy, or none: a view): every arena Cast but a float truncated
    to an integer and a non-bool made a bool."""
    kind = cast_kind(to)
    return bool(kind) and not (kind == 'i' and source == 'f' or kind == 'b' and source != 'b')


def step_expression(op, args, attrs) -> str:
    """The C expression of one step over the C expressions ``args`` ('' = omitted)."""
    if op == 'Clip':
        lo = args[1] if len(args) > 1 and args[1] else None
        hi = args[2] if len(args) > 2 and args[2] else None
        lo = lo or (float_literal(attrs['min']) if 'min' in attrs else None)
        hi = hi or (float_literal(attrs['max']) if 'max' in attrs else None)
        expr = args[0] if lo is None else f'fmaxf({args[0]}, {lo})'
        return expr if hi is None else f'fminf({expr}, {hi})'
    if op == 'Where':
        return f'({args[0]} != 0.f ? {args[1]} : {args[2]})'
    if op == 'Cast':
        return CAST_C[cast_kind(attrs.get('to', 1))].format(args[0])
    if op == 'Mod':
        return MOD_C[1 if int(attrs.get('fmod', 0)) else 0].format(*args)
    if op in BINARY_C:
        return BINARY_C[op].format(*args)
    if op == 'Gelu' and attrs.get('approximate', 'none') == 'tanh':
        return GELU_TANH.format(args[0])
    if op in UNARY_C:
        return UNARY_C[op].format(args[0], **attribute_literals(op, attrs))
    return coded_expression(op, args, attrs)


def attribute_literals(op, attrs) -> dict:
    """{attribute: C literal} of ``op``'s numeric attributes: the node's ``attrs``, else the
    keyword defaults of its reference function (``ops/elementwise.py``), so both agree."""
    kw = inspect.signature(step_function(op)).parameters.values()
    return {p.name: float_literal(attrs.get(p.name, p.default)) for p in kw
            if p.kind is p.KEYWORD_ONLY and isinstance(p.default, (int, float))}


def coded_expression(op, args, attrs) -> str:
    """The C expression of an op through its kernel code (``ops/traits.py``) and the device
    functions of ``kernels/elementwise.cuh``: how an op with no entry in the tables above (a new
    activation, unary or binary op) is generated, so it needs no line here."""
    found = traits.TRAITS.get(op)
    if found is None or found.code is None or found.kind not in traits.ELEMENTWISE_KINDS:
        raise KeyError(f'{op} has no C expression and no kernel code')
    if found.kind == traits.BINARY:
        return f'tx2_binary({found.macro}, {args[0]}, {args[1]})'
    values = traits.activation_values(op, attrs) if found.kind == traits.ACTIVATION else {}
    act = ', '.join([found.macro if found.kind == traits.ACTIVATION else 'ACT_NONE']
                    + [float_literal(values.get(f, 0.0)) for f in traits.ACT_FIELDS]
                    + ['(-TX2_INF)', 'TX2_INF'])
    code = 'UN_ACT' if found.kind == traits.ACTIVATION else found.macro
    return f'tx2_unary({code}, {args[0]}, ActParams{{{act}}})'


def program_body(steps, n_inputs) -> str:
    """The C statements of ``float pw_f(float x0, ...)``: one local per step."""
    lines = []
    for j, (op, args, attrs) in enumerate(steps):
        c_args = ['' if a is None else a if isinstance(a, str) else float_literal(a)
                  for a in args]
        lines.append(f'    const float t{j} = {step_expression(op, c_args, attrs)};')
    params_c = ', '.join(f'float x{k}' for k in range(n_inputs))
    return (f'__device__ __forceinline__ float pw_f({params_c}) {{\n' + '\n'.join(lines)
            + f'\n    return t{len(steps) - 1};\n}}\n')


# Access patterns -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Access:
    """How one tensor is read or written: ``mode`` (see the module doc), its pixel stride
    ``pix`` and element offset ``off`` (``view``: a View record over the walk order)."""

    mode: str
    pix: int = 0
    off: int = 0
    view: object = None


def channel_dim(slot) -> int:
    """The dim stored innermost: 1 for an NHWC image, else the last."""
    return 1 if slot.nhwc else max(len(slot.shape) - 1, 0)


def broadcast_strides(slot, shape) -> list:
    """``slot``'s element strides over ``shape`` (0 along broadcast and size-1 dims)."""
    pad = len(shape) - len(slot.shape)
    return [0 if d < pad or n == 1 or slot.shape[d - pad] == 1 else slot.strides[d - pad]
            for d, n in enumerate(shape)]


def pixel_stride(shape, strides, k):
    """q when the strides over the pixel dims (all but ``k``) are q times their row-major
    strides (0: broadcast over every pixel), else None."""
    inner, q = 1, None
    for d in reversed([d for d in range(len(shape)) if d != k]):
        if shape[d] > 1:
            if strides[d] % inner or (q is not None and strides[d] != q * inner):
                return None
            q = strides[d] // inner
        inner *= shape[d]
    return q or 0


def walk_view(slot, shape, k):
    """A View of ``slot`` over ``shape`` with dim ``k`` moved last (the walk order)."""
    strides = broadcast_strides(slot, shape)
    order = [d for d in range(len(shape)) if d != k] + ([k] if shape else [])
    return params.view_record([shape[d] for d in order], [strides[d] for d in order],
                              slot.channel_off)


def input_access(slot, shape, k) -> Access:
    """How the kernel reads ``slot`` for an output of ``shape`` walked with channel dim ``k``."""
    strides = broadcast_strides(slot, shape)
    q = pixel_stride(shape, strides, k)
    cs = strides[k] if shape else 0
    if q is not None and cs in (0, 1):
        mode = {(True, True): 'full', (False, True): 'chan', (True, False): 'row',
                (False, False): 'scalar'}[(q > 0, cs == 1)]
        return Access(mode, q, slot.channel_off)
    return Access('view', view=walk_view(slot, shape, k))


# The kernel ------------------------------------------------------------------------------------

LOOP = '''extern "C" __global__ void pointwise(PwArgs p) {{
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < p.count;
         i += (long long)gridDim.x * blockDim.x) {{
{index}
{loads}
{store}
    }}
}}
'''
STORE_HALF = '''        __align__(16) half out[{V}];
#pragma unroll
        for (int e = 0; e < {V}; ++e) out[e] = __float2half(pw_f({call}));
        pw_copy<{V}>(p.y + {y_at}, out);'''
# an int32 output (one element a thread): truncated toward zero, saturated to int32, NaN 0
STORE_INT32 = '''        const int e = 0;
        p.y[{y_at}] = __float2int_rz(pw_f({call}));'''
COPY = '''template <int V> __device__ __forceinline__ void pw_copy(half *dst, const half *src) {
    if (V == 8) *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
    else if (V == 2) *reinterpret_cast<half2 *>(dst) = *reinterpret_cast<const half2 *>(src);
    else dst[0] = src[0];
}
'''


@dataclass(frozen=True)
class Walk:
    """How the output is walked: ``flat`` (dense, i * V) or per (pixel, channel); ``V``
    halves per thread; ``y`` the output's Access; ``int32``: which of the inputs, and
    whether the output (last), are int32 index values (one element a thread)."""

    flat: bool
    vec: int
    y: Access
    int32: tuple = ()

    def is_int32(self, k=None) -> bool:
        """True when input ``k`` (None: the output) is int32."""
        return bool(self.int32) and self.int32[-1 if k is None else k]


def _load(k, a, walk) -> tuple:
    """(C statement reading input k, its value at element e) for access ``a``."""
    at = {'full': f'p.off{k} + pp * p.pix{k} + c', 'chan': f'p.off{k} + c',
          'row': f'p.off{k} + pp * p.pix{k}', 'scalar': f'p.off{k}',
          'view': f'tx2_view_offset(p.v{k}, i)'}[a.mode]
    if walk.flat and a.mode == 'full':
        at = f'i * {walk.vec}'
    if walk.is_int32(k):
        return f'        const float s{k} = (float)p.in{k}[{at}];', f's{k}'
    if a.mode in ('full', 'chan'):
        return (f'        __align__(16) half a{k}[{walk.vec}];\n'
                f'        pw_copy<{walk.vec}>(a{k}, p.in{k} + {at});', f'__half2float(a{k}[e])')
    return f'        const float s{k} = __half2float(p.in{k}[{at}]);', f's{k}'


def _struct(accesses, walk) -> list:
    """[(C declaration, field name, numpy format)] of the kernel's argument struct (pointers,
    then 8-byte integers, then Views: no padding anywhere)."""
    ptrs = [('int *' if walk.is_int32() else 'half *', 'y')] + [
        (f"const {'int' if walk.is_int32(k) else 'half'} *", f'in{k}')
        for k in range(len(accesses))]
    ints = ['count', 'cv'] + ([] if walk.flat or walk.y.mode == 'view' else ['y_pix', 'y_off'])
    views = ['yv'] if walk.y.mode == 'view' else []
    for k, a in enumerate(accesses):
        ints += [f'off{k}'] if a.mode in ('chan', 'scalar') else []
        ints += [f'pix{k}', f'off{k}'] if a.mode in ('full', 'row') and not walk.flat else []
        views += [f'v{k}'] if a.mode == 'view' else []
    return ([(c, n, params.PTR) for c, n in ptrs] + [('long long', n, 'i8') for n in ints]
            + [('View', n, params.VIEW) for n in views])


def kernel_source(steps, accesses, walk) -> str:
    """The CUDA source of one pointwise program read through ``accesses`` and written by
    ``walk`` (see the module doc)."""
    fields = _struct(accesses, walk)
    struct = ''.join(f"    {c}{'' if c.endswith('*') else ' '}{n};\n" for c, n, _ in fields)
    loads = [_load(k, a, walk) for k, a in enumerate(accesses)]
    if walk.flat:
        index, y_at = '', f'i * {walk.vec}'
    else:
        index = ('        const long long pp = i / p.cv;\n'
                 f'        const long long c = (i - pp * p.cv) * {walk.vec};')
        y_at = ('tx2_view_offset(p.yv, i)' if walk.y.mode == 'view'
                else 'p.y_off + pp * p.y_pix + c')
    store = (STORE_INT32 if walk.is_int32() else STORE_HALF).format(
        V=walk.vec, call=', '.join(v for _, v in loads), y_at=y_at)
    loop = LOOP.format(index=index, loads='\n'.join(s for s, _ in loads), store=store)
    return (f'// Generated by tx2_infer_core/cuda/codegen_pointwise.py: {len(steps)} steps.\n'
            f'#include "elementwise.cuh"\n\nstruct PwArgs {{\n{struct}}};\n\n{COPY}\n'
            f'{program_body(steps, len(accesses))}\n{loop}')


def _vector(sizes) -> int:
    """The widest of ``VECTORS`` dividing every number of ``sizes``."""
    return next(v for v in VECTORS if all(int(s) % v == 0 for s in sizes))


def plan_walk(ins, y) -> tuple:
    """``(Walk, [Access per input], C)`` for input slots ``ins`` and output slot ``y`` (one
    element a thread where an int32 slot is among them)."""
    shape, k = tuple(y.shape), channel_dim(y)
    accesses = [input_access(s, shape, k) for s in ins]
    n = int(np.prod(shape, dtype=np.int64))
    same = broadcast_strides(y, shape)
    int32 = tuple(s.int32 for s in ins) + (y.int32,)
    int32 = int32 if any(int32) else ()
    if y.dense() and all(a.mode == 'scalar' or (
            a.mode == 'full' and a.off == 0 and broadcast_strides(s, shape) == same)
            for s, a in zip(ins, accesses)):
        vec = 1 if int32 else _vector([n])
        return Walk(True, vec, Access('full', 0, 0), int32), accesses, n
    channels = int(shape[k]) if shape else 1
    out = input_access(y, shape, k)  # chan, row, scalar: one pixel or one channel: full
    out = out if out.mode == 'view' else Access('full', out.pix, out.off)
    if int32 or out.mode == 'view' or any(a.mode == 'view' for a in accesses):
        return Walk(False, 1, out, int32), accesses, channels
    vectors = [a for a in accesses if a.mode in ('full', 'chan')]
    sizes = [channels, out.pix, out.off] + [x for a in vectors for x in (a.pix, a.off)]
    return Walk(False, _vector(sizes), out), accesses, channels


def pointwise_launch(name, steps, ins, y) -> Launch:
    """The launch of one generated kernel computing ``steps`` over input slots ``ins`` into
    slot ``y`` (its source registered with ``compile.py``)."""
    walk, accesses, channels = plan_walk(ins, y)
    source = kernel_source(steps, accesses, walk)
    module = 'pw_' + hashlib.sha256(source.encode()).hexdigest()[:16]
    cc.register_source(module, source)
    fields = _struct(accesses, walk)
    dtype = np.dtype([(n, f) for _, n, f in fields], align=True)
    n = int(np.prod(y.shape, dtype=np.int64))
    values = dict(y=y.ref, count=n // walk.vec, cv=max(channels // walk.vec, 1),
                  y_pix=walk.y.pix, y_off=walk.y.off, yv=walk.y.view)
    for k, (s, a) in enumerate(zip(ins, accesses)):
        values.update({f'in{k}': s.ref, f'pix{k}': a.pix, f'off{k}': a.off, f'v{k}': a.view})
    return Launch(module, KERNEL, grid_1d(n // walk.vec), (BLOCK, 1, 1), dtype,
                  {f: values[f] for f in dtype.names}, name)


def node_steps(node) -> tuple:
    """(input names, program) of a FusedPointwise node, or of a lone elementwise node as one
    step (an omitted optional input: a null argument)."""
    names = list(dict.fromkeys(n for n in node.inputs if n))
    if node.op == 'FusedPointwise':
        return names, program_steps(node.attrs['program'])
    attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in node.attrs.items()}
    return names, [(node.op, [f'x{names.index(n)}' if n else None for n in node.inputs], attrs)]


def lower_pointwise(lc, node):
    """A FusedPointwise node, or one elementwise op of float data (a ``generated`` op of
    ``ops/traits.py``): one generated kernel launch."""
    names, steps = node_steps(node)
    unknown = sorted({op for op, _, _ in steps if op not in C_OPS})
    if unknown:
        lc.unsupported(node, f'no generated code for {unknown}')
    bad = sorted({a.get('to') for op, _, a in steps if op == 'Cast' and not cast_kind(
        a.get('to', 1))})
    if bad:
        lc.unsupported(node, f'Cast to={bad}: no FP16 arena type')
    y = lc.slot(node.outputs[0])
    if node.op != 'FusedPointwise' and not y.int32:
        dtypes = {str(lc.const(n).dtype) if lc.is_const(n) else lc.dtype_of(n)
                  for n in node.inputs[:1] + node.outputs[:1]}
        if any(np.dtype(d).kind != 'f' for d in dtypes):
            lc.unsupported(node, f'dtypes {sorted(dtypes)}: float data only')
    return [pointwise_launch(node.name, steps, operand_slots(lc, node, names), y)]


def operand_slots(lc, node, names) -> list:
    """The slots of ``node``'s tensor inputs ``names``: an integer constant beside an int32
    value as int32 (``lc.int_slot``), any other its own slot."""
    wide = any(lc.slots[n].int32 for n in list(node.inputs) + list(node.outputs)
               if n in lc.slots)
    return [lc.int_slot(node, n) if wide and lc.is_const(n) and lc.const(n).dtype.kind in 'iu'
            else lc.slot(n) for n in names]
