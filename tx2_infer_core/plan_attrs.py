"""Node attributes of a loaded plan, checked before anything runs them.

A crafted header can keep every value and offset valid and still give a node a negative stride,
a kernel_shape that does not match its weight, pads of the wrong length, an unknown activation
or a FusedPointwise program that is not a program. ``check_attrs`` refuses them with a
``PlanFileError`` naming the node and the attribute (the reference run of ``plan_trust`` would
catch most of them later, with a vaguer message, and only on a plan's first load).
"""
import json
import math

import numpy as np

from tx2_infer_core.errors import PlanFileError
from tx2_infer_core.ops import traits
from tx2_infer_core.ops.fused import GELU_FORMS
from tx2_infer_core.passes.pointwise_chains import POINTWISE_OPS

CONV_OPS = ('Conv', 'FusedConv', 'ConvTranspose', 'FusedConvTranspose')
POOL_OPS = ('MaxPool', 'AveragePool', 'LpPool')
AUTO_PADS = ('NOTSET', 'SAME_UPPER', 'SAME_LOWER', 'VALID')
FINITE_ATTRS = ('alpha', 'beta', 'epsilon', 'post_scale', 'post_shift')  # real, anywhere
BOUND_ATTRS = ('clip_min', 'clip_max')          # real numbers, may be infinite
FLAGS = ('ceil_mode', 'residual_after_act', 'count_include_pad')


def _refuse(node, attr, problem):
    raise PlanFileError(f"plan header: node '{node.name}' ({node.op}) attribute {attr}: "
                        f'{problem}')


def _ints(value):
    """``value`` as a list of ints, or None when it is not a list of integers."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return None
    return list(value)


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.floating, np.integer)) and \
        not isinstance(value, bool)


def _int_list(node, attr, length, minimum):
    """Refuse attribute ``attr`` unless it is ``length`` ints, each >= ``minimum``."""
    values = _ints(node.attrs[attr])
    if values is None or len(values) != length:
        _refuse(node, attr, f'{str(node.attrs[attr])[:60]} is not a list of {length} ints')
    if any(v < minimum for v in values):
        _refuse(node, attr, f'{values} has a value below {minimum}')
    return values


def _shape(graph, name):
    if name in graph.weights:
        return tuple(graph.weights[name].shape)
    value = graph.values.get(name)
    return tuple(value.shape) if value is not None else None


def check_spatial(graph, node) -> None:
    """Conv and pool geometry: kernel_shape (matching a conv's weight), strides, dilations,
    pads, output_padding of the spatial rank; group, auto_pad."""
    attrs = node.attrs
    if node.op in CONV_OPS:
        weight = _shape(graph, node.inputs[1]) if len(node.inputs) > 1 else None
        rank = len(weight) - 2 if weight and len(weight) > 2 else None
    else:
        data = _shape(graph, node.inputs[0]) if node.inputs else None
        rank = len(data) - 2 if data and len(data) > 2 else None
    if rank is None:
        _refuse(node, 'inputs', 'its input has no spatial dimensions')
    if 'kernel_shape' in attrs:
        kernel = _int_list(node, 'kernel_shape', rank, 1)
        if node.op in CONV_OPS and tuple(kernel) != weight[2:]:
            _refuse(node, 'kernel_shape', f'{kernel} does not match the weight '
                    f"'{node.inputs[1]}' of shape {list(weight)}")
    elif node.op in POOL_OPS:
        _refuse(node, 'kernel_shape', 'is missing')
    for attr, length, minimum in (('strides', rank, 1), ('dilations', rank, 1),
                                  ('pads', 2 * rank, 0), ('output_padding', rank, 0)):
        if attr in attrs and attrs[attr] is not None:
            _int_list(node, attr, length, minimum)
    group = attrs.get('group', 1)
    if not (isinstance(group, int) and not isinstance(group, bool) and group >= 1):
        _refuse(node, 'group', f'{group!r} is not a positive int')
    if attrs.get('auto_pad', 'NOTSET') not in AUTO_PADS:
        _refuse(node, 'auto_pad', f"{attrs['auto_pad']!r} is not one of {AUTO_PADS}")


def check_activation(node) -> None:
    """A fused node's activation: '' (none), Clip, an activation op of ``ops/traits.py``,
    PRelu with its slope input (the fifth) or, for FusedLinear(Norm), a GELU form
    (``ops/fused.py`` GELU_FORMS)."""
    name = node.attrs.get('activation', '')
    extra = tuple(GELU_FORMS) if node.op in ('FusedLinear', 'FusedLinearNorm') else ()
    if name not in ('', 'Clip', 'PRelu') + extra and \
            name not in traits.names(kind=traits.ACTIVATION):
        _refuse(node, 'activation', f'{str(name)[:40]!r} is not an activation the engine '
                'runs')
    if name == 'PRelu' and not (len(node.inputs) > 4 and node.inputs[4]):
        _refuse(node, 'activation', "'PRelu' without its slope input")


def _check_step(node, k, step, n_inputs) -> None:
    field = f'program step {k}'
    if not (isinstance(step, list) and len(step) == 3 and isinstance(step[1], list)
            and isinstance(step[2], dict)):
        _refuse(node, 'program', f'{field} is not [op, [args], {{attrs}}]')
    op, args, _ = step
    if op not in POINTWISE_OPS:
        _refuse(node, 'program', f'{field}: {str(op)[:40]!r} is not a pointwise op')
    for arg in args:
        ok = arg is None or (_is_real(arg) and math.isfinite(arg))
        if isinstance(arg, str) and arg[:1] in ('x', 't') and arg[1:].isdigit():
            ok = int(arg[1:]) < (n_inputs if arg[0] == 'x' else k)
        if not ok:
            _refuse(node, 'program', f'{field}: argument {str(arg)[:40]!r} is not an input, '
                    'an earlier step, a finite number or null')


def check_program(node) -> None:
    """A FusedPointwise program: valid JSON, a non-empty list of steps whose ops are pointwise
    and whose arguments name the node's inputs or earlier steps (format in ``ops/fused.py``)."""
    program = node.attrs.get('program')
    try:
        steps = json.loads(program) if isinstance(program, (str, bytes)) else program
    except (ValueError, RecursionError) as exc:
        _refuse(node, 'program', f'is not valid JSON: {str(exc)[:80]}')
    if not isinstance(steps, list) or not steps:
        _refuse(node, 'program', 'is not a non-empty list of steps')
    for k, step in enumerate(steps):
        _check_step(node, k, step, len(node.inputs))


def check_scalars(node) -> None:
    """Numeric attributes: alpha, beta, epsilon, post_scale, post_shift finite reals; clip
    bounds reals (not NaN); flags 0 or 1; axis an int."""
    for attr, value in node.attrs.items():
        if attr in FINITE_ATTRS and not (_is_real(value) and math.isfinite(value)):
            _refuse(node, attr, f'{str(value)[:40]!r} is not a finite number')
        if attr in BOUND_ATTRS and not (_is_real(value) and not math.isnan(value)):
            _refuse(node, attr, f'{str(value)[:40]!r} is not a number')
        if attr in FLAGS and value not in (0, 1):
            _refuse(node, attr, f'{str(value)[:40]!r} is not 0 or 1')
        if attr == 'axis' and not (isinstance(value, int) and not isinstance(value, bool)):
            _refuse(node, attr, f'{str(value)[:40]!r} is not an int')


def check_attrs(graph) -> None:
    """Every node's attributes (see the module docstring); ``PlanFileError`` on the first bad
    one, naming the node and the attribute."""
    for node in graph.nodes:
        check_scalars(node)
        if node.op in CONV_OPS or node.op in POOL_OPS:
            check_spatial(graph, node)
        if node.op in ('FusedConv', 'FusedConvTranspose', 'FusedLinear', 'FusedLinearNorm'):
            check_activation(node)
        if node.op == 'FusedPointwise':
            check_program(node)
