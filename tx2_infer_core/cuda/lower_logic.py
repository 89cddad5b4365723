"""Lowering of the comparison, logic and selection ops (Equal, Less, LessOrEqual, Greater,
GreaterOrEqual, Not, And, Or, Xor, IsNaN, IsInf, Where), of Mod, Sum and Mean, of Trilu and of
Cast: one generated pointwise kernel each (``cuda/codegen_pointwise.py``: FP32 maths, any
strides, ONNX broadcasting).

The arena holds FP16: a bool is stored as 0 or 1, an integer as itself, exact up to 2048; but
the index values of ``int32_values.py`` are int32 (the rules below are for FP16 integers: an
int32 value, and an integer constant beside one, is read as FP32, exact below 2**24; Mod takes
them too; a Cast into int32 truncates and saturates to int32).

- A size-1 constant is a float32 literal of the program, so ``x > 0.1`` or ``ids == 5000``
  compares as on the CPU. A literal that becomes an output value (a Where branch) must fit
  FP16: a finite float past FP16's range saturates to +-65504 (an attention mask's -3.4e38 stays
  finite, as in FP32, where inf would make a fully masked softmax row NaN); an integer past
  2048 is refused.
- Any other integer constant must hold exact values (|v| <= 2048); an integer graph input is
  refused (the FP32 -> FP16 input conversion rounds past 2048); an integer activation made by a
  node is its producer's (exact, or refused, except a Cast's below); 1-byte integers (the int8
  path's bytes) are refused.
- Mod, Sum, Mean, IsNaN and IsInf take float data only (new values, or a float question).
- Trilu is ``Where(mask, x, 0)``, its triangle a constant 0/1 mask over the last two dims.
- Cast of a float to an integer type truncates toward zero, saturated to FP16's +-65504 (an
  integer past 2048 is then FP16's nearest, as any float is); any number to bool is ``x != 0``
  (``codegen_pointwise.cast_kind``). Any other Cast keeps the values: a copy
  (``lower_ops.lower_unary``). 1-byte integers, float8, 4-bit and string types are refused.
"""
import numpy as np

from tx2_infer_core.cuda import codegen_pointwise as cg
from tx2_infer_core.cuda.int32_values import INT32_EXACT
from tx2_infer_core.cuda.lower_ops import copy_launch, lower_unary, slot_view

EXACT_INT = 2048     # the largest integer up to which every integer is exact in FP16
FP16_MAX = 65504.0   # the largest finite FP16
FLOAT_ONLY = ('Mod', 'Sum', 'Mean', 'IsNaN', 'IsInf')
BRANCHES = {'Where': (1, 2)}  # inputs whose values become output values
MAX_INPUTS = 8       # tensors one Sum/Mean launch reads; more: a chain of launches
MAX_MASK = 1 << 24   # elements of Trilu's mask constant (32 MiB of FP16)


def value_dtype(lc, name) -> np.dtype:
    """The dtype of value or constant ``name``."""
    return lc.const(name).dtype if lc.is_const(name) else np.dtype(lc.dtype_of(name))


def check_exact(lc, node, name):
    """Refuse ``name`` (an input or output of ``node``) when the FP16 arena cannot hold its
    values exactly (see the module doc)."""
    dtype = value_dtype(lc, name)
    if dtype.kind not in 'fbiu':
        lc.unsupported(node, f"'{name}' is {dtype}: only float, bool and integer data")
    wide = int32_node(lc, node)
    if node.op in FLOAT_ONLY and dtype.kind != 'f' and name in node.inputs and not (
            wide and node.op == 'Mod'):
        lc.unsupported(node, f"'{name}' is {dtype}: float data only")
    if dtype.kind not in 'iu' or name in lc.int32.values or (wide and lc.is_const(name)):
        return  # int32 values, and integer constants beside them (``operand_slots``)
    if lc.is_const(name):
        big = float(np.abs(lc.const(name).astype(np.float64)).max(initial=0))
        if big > EXACT_INT:
            lc.unsupported(node, f"constant '{name}' holds {big:.0f}: integers past "
                                 f'{EXACT_INT} are not exact in FP16')
    elif dtype.itemsize == 1:
        lc.unsupported(node, f"'{name}' is {dtype}: 1-byte integers are the int8 path's bytes, "
                             'not FP16 values')
    elif name in lc.graph.inputs:
        lc.unsupported(node, f"'{name}' is an {dtype} graph input: its values past "
                             f'{EXACT_INT} are not exact in FP16')


def int32_node(lc, node) -> bool:
    """True when an input or output of ``node`` is an int32 index value."""
    return any(n in lc.int32.values for n in list(node.inputs) + list(node.outputs))


def _literal(lc, node, i, name) -> float:
    """The float32 literal of size-1 constant input ``i``; a Where branch saturated to FP16
    (an int32 output takes any integer below 2**24)."""
    value = lc.const(name).reshape(())
    if i not in BRANCHES.get(node.op, ()) or (
            node.outputs[0] in lc.int32.values and abs(float(value)) < INT32_EXACT):
        return float(np.float32(value))
    if value.dtype.kind in 'iu' and abs(int(value)) > EXACT_INT:
        lc.unsupported(node, f"constant '{name}' = {int(value)}: integers past {EXACT_INT} "
                             'are not exact in FP16')
    v = float(value)
    return float(np.clip(v, -FP16_MAX, FP16_MAX)) if np.isfinite(v) else v


def _attrs(node) -> dict:
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in node.attrs.items()}


def one_step(lc, node) -> tuple:
    """(tensor input names, [step]): ``node`` as one program step, size-1 constants as
    literals, a tensor read twice passed once."""
    names, args = [], []
    for i, name in enumerate(node.inputs):
        if not name:
            args.append(None)
        elif lc.is_const(name) and lc.const(name).size == 1:
            args.append(_literal(lc, node, i, name))
        else:
            names += [] if name in names else [name]
            args.append(f'x{names.index(name)}')
    return names, [(node.op, args, _attrs(node))]


def sum_steps(count, divide_by=0) -> list:
    """x0 + x1 + ... + x(count-1), in that order as numpy's Sum (then / ``divide_by``)."""
    steps, last = [('Cast', ['x0'], {'to': 1})], 't0'  # the identity, for one input
    if count > 1:
        steps = [('Add', ['x0', 'x1'], {})]
        steps += [('Add', [f't{k - 2}', f'x{k}'], {}) for k in range(2, count)]
        last = f't{len(steps) - 1}'
    if divide_by:
        steps.append(('Div', [last, float(divide_by)], {}))
    return steps


def _sum_launches(lc, node, y) -> list:
    """Sum or Mean: one launch over the first MAX_INPUTS inputs into y, then launches adding
    up to MAX_INPUTS - 1 more to y each (y read and written by the same thread); Mean divides
    in the last one. Every input counts, a repeated one too."""
    names = [n for n in node.inputs if n]
    groups = [names[:MAX_INPUTS]] + [names[k:k + MAX_INPUTS - 1]
                                     for k in range(MAX_INPUTS, len(names), MAX_INPUTS - 1)]
    launches = []
    for j, group in enumerate(groups):
        ins = [lc.slot(n) for n in group] if j == 0 else [y] + [lc.slot(n) for n in group]
        last = j == len(groups) - 1
        steps = sum_steps(len(ins), len(names) if node.op == 'Mean' and last else 0)
        launches.append(cg.pointwise_launch(node.name, steps, ins, y))
    return launches


def lower_logic(lc, node):
    """Equal, Less, LessOrEqual, Greater, GreaterOrEqual, Not, And, Or, Xor, IsNaN, IsInf,
    Where, Mod, Sum, Mean: one generated kernel (Sum and Mean of more than MAX_INPUTS tensors:
    a chain of them)."""
    if not [n for n in node.inputs if n]:
        lc.unsupported(node, 'no input')
    literals = node.op not in ('Sum', 'Mean')  # size-1 constants: checked by ``_literal``
    for name in [n for n in node.inputs if n] + node.outputs[:1]:
        if not (literals and lc.is_const(name) and lc.const(name).size == 1):
            check_exact(lc, node, name)
    y = lc.slot(node.outputs[0])
    if 0 in y.shape:
        return []
    if node.op in ('Sum', 'Mean'):
        return _sum_launches(lc, node, y)
    names, steps = one_step(lc, node)
    return [cg.pointwise_launch(node.name, steps, cg.operand_slots(lc, node, names), y)]


def lower_trilu(lc, node):
    """Trilu with a constant ``k``: ``Where(mask, x, 0)``, the mask of the kept triangle a
    constant over the last two dims (broadcast over the others)."""
    x_name, k_name = node.inputs[0], node.inputs[1] if len(node.inputs) > 1 else ''
    if k_name and not lc.is_const(k_name):
        lc.unsupported(node, 'k must be a constant')
    check_exact(lc, node, x_name)
    check_exact(lc, node, node.outputs[0])
    x, y = lc.slot(x_name), lc.slot(node.outputs[0])
    if len(x.shape) < 2:
        lc.unsupported(node, f'input of rank {len(x.shape)}: at least 2')
    if 0 in y.shape:
        return []
    rows, cols = (int(d) for d in x.shape[-2:])
    if rows * cols > MAX_MASK:
        lc.unsupported(node, f'a {rows} x {cols} triangle mask: at most {MAX_MASK} elements')
    k = int(lc.const(k_name).reshape(-1)[0]) if k_name else 0
    ones = np.ones((rows, cols), bool)
    mask = np.triu(ones, k) if int(node.attrs.get('upper', 1)) else np.tril(ones, k)
    if mask.all():
        return [copy_launch(node.name, x, slot_view(x), y, slot_view(y), np.prod(y.shape))]
    steps = [('Where', ['x1', 'x0', 0.0], {})]
    return [cg.pointwise_launch(node.name, steps, [x, lc.const_slot(mask.astype(np.float16))],
                                y)]


def lower_cast(lc, node):
    """Cast: a float to an integer type, or a number to bool, as one generated kernel
    (truncation, ``x != 0``), any other Cast as a copy; a type the arena lacks is refused."""
    to = int(node.attrs.get('to', 1))
    kind = cg.cast_kind(to)
    if not kind:
        lc.unsupported(node, f'Cast to={to}: the FP16 arena holds floats, bools and integers '
                             'of 2 bytes or more')
    x, y = node.inputs[0], node.outputs[0]
    if kind == 'f' and np.dtype(lc.dtype_of(y)).kind != 'f':
        lc.unsupported(node, f'Cast to={to} with an output of dtype {lc.dtype_of(y)}')
    if kind != 'f':
        check_exact(lc, node, x)
        check_exact(lc, node, y)
    src, out = lc.slot(x), lc.slot(y)
    if src.int32 == out.int32 and cg.cast_keeps_values(to, value_dtype(lc, x).kind):
        return lower_unary(lc, node)  # the values unchanged: a copy (or none: a view)
    if 0 in out.shape:
        return []
    # into int32: the value itself, truncated and saturated to int32 as it is stored
    steps = [('Cast', ['x0'], {'to': 1 if out.int32 else to})]
    return [cg.pointwise_launch(node.name, steps, [src], out)]
