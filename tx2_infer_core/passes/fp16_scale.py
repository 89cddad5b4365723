"""Rescale activations by powers of two so they fit FP16 (the CUDA arena), exactly.

A value ``v`` gets an exponent ``e_v`` (0 or negative): the arena holds ``v * 2**e_v``.
Values tied by a scale-equivariant node (a copy, a pool, a max, a sum, Relu: ``CARRY``) share
one exponent, a *class*; the nodes that compute in FP32 registers bridge classes:

    FusedConv / FusedLinear / FusedConvTranspose:  act(conv(x * 2**ex) + b') * ps' + sh'
        bias b' = b * 2**ex, Clip bounds * 2**ex (the activation must be positively
        homogeneous: '', Relu, LeakyRelu, PRelu, Clip), ps' = ps * 2**(ey - ex), sh' = sh * 2**ey
    FusedPointwise:  x_k read as x_k * 2**-ek (a Mul step first), the result times 2**ey

so every result is the same real number: only which FP16 range holds it changes. A class with
a nonzero exponent that touches any other node, or a graph input or output, is refused by name.
``plan_exponents(graph, demands)`` is the pure planning, ``apply_exponents`` the rewrite.
"""
import numpy as np

from tx2_infer_core.ops.fused import program_steps, program_text
from tx2_infer_core.passes.graph_edit import FLOAT_DTYPES, add_weight

ALL = 'all'
# op -> positions of its inputs whose scale its outputs carry (float inputs only; constants
# among them are rescaled with the class)
CARRY = {**{op: (0,) for op in (
    'Identity', 'Dropout', 'Reshape', 'Flatten', 'Squeeze', 'Unsqueeze', 'Transpose',
    'Slice', 'Split', 'Gather', 'Expand', 'Tile', 'DepthToSpace', 'SpaceToDepth', 'Resize',
    'MaxPool', 'AveragePool', 'GlobalAveragePool', 'GlobalMaxPool', 'ReduceMax', 'ReduceMin',
    'ReduceSum', 'ReduceMean', 'ReduceL1', 'ReduceL2', 'Relu', 'LeakyRelu', 'PRelu', 'Neg',
    'Abs')},
    'Pad': (0, 2), 'Clip': (0, 1, 2), 'Where': (1, 2),
    **{op: ALL for op in ('Concat', 'Add', 'Sub', 'Max', 'Min', 'Sum', 'Mean')}}
SCALED_ATTRS = {'Clip': ('min', 'max'), 'Pad': ('value',)}  # older opsets' attribute forms
LINEAR_OPS = ('FusedConv', 'FusedLinear', 'FusedConvTranspose')
HOMOGENEOUS_ACTS = ('', 'Relu', 'LeakyRelu', 'PRelu', 'Clip')


def _is_float(graph, name) -> bool:
    value = graph.values.get(name)
    return bool(name) and value is not None and value.dtype in FLOAT_DTYPES


def carried_inputs(graph, node) -> list:
    """The input names of ``node`` whose scale its outputs carry: ``CARRY``; Mul and Div by a
    constant carry the other operand (``x * c``, ``x / c``); a linear node ties a residual to
    the scale it is added at (its input's before the activation, its output's after)."""
    if node.op in ('Mul', 'Div') and len(node.inputs) == 2:
        a, b = node.inputs
        if b in graph.weights:
            return [a]
        return [b] if node.op == 'Mul' and a in graph.weights else []
    if node.op in LINEAR_OPS and len(node.inputs) > 3 and node.inputs[3]:
        return [node.inputs[3]]
    positions = CARRY.get(node.op, ())
    picked = node.inputs if positions == ALL else \
        [node.inputs[p] for p in positions if p < len(node.inputs)]
    return [name for name in picked if name]


def _tied_outputs(graph, node) -> list:
    if node.op in LINEAR_OPS:
        if len(node.inputs) > 3 and node.inputs[3]:   # a residual
            return [node.inputs[0] if not node.attrs.get('residual_after_act', 0)
                    else node.outputs[0]]
        return []
    if node.op not in CARRY and node.op not in ('Mul', 'Div'):
        return []
    return [o for o in node.outputs if _is_float(graph, o)]


def scale_classes(graph) -> dict:
    """{float activation: class root}: the values that must share one exponent."""
    parent = {}

    def root(name):
        parent.setdefault(name, name)
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name
    for name in list(graph.inputs) + [o for n in graph.nodes for o in n.outputs]:
        if _is_float(graph, name):
            root(name)
    for node in graph.nodes:
        tied = [n for n in carried_inputs(graph, node) if _is_float(graph, n)]
        tied += _tied_outputs(graph, node)
        for name in tied[1:]:
            parent[root(name)] = root(tied[0])
    return {name: root(name) for name in parent}


def _blocker(graph, node, name) -> str:
    """Why ``node`` cannot read or write class member ``name`` rescaled; '' when it can."""
    if node.op == 'FusedPointwise':
        return ''
    if node.op in LINEAR_OPS:
        residual = node.inputs[3] if len(node.inputs) > 3 else ''
        if name == node.outputs[0] or (name == residual and node.attrs.get('residual_after_act')):
            return ''       # set by the post-activation affine (the residual added after it)
        if name in (node.inputs[0], residual):
            act = node.attrs.get('activation', '')
            if act not in HOMOGENEOUS_ACTS:
                return f'its activation {act!r} is not scale-equivariant'
            params = [n for n in node.inputs[1:3] if n]
            if all(n in graph.weights for n in params):
                return ''
            return 'its weight or bias is computed at run time'
        return 'it reads the value as a weight'
    if node.op in CARRY or node.op in ('Mul', 'Div'):
        carried = carried_inputs(graph, node)
        if name in node.outputs:
            return '' if carried else 'it computes the value from inputs it cannot rescale'
        return '' if name in carried else 'its result is not proportional to this input'
    return 'it computes in FP16 from the value'


def plan_exponents(graph, demands, classes=None) -> tuple:
    """``(exponents, refused)`` for ``demands`` ({value: k > 0}: store it times 2**-k at
    least): every member of a demanding class gets the class's largest k (as ``-k``);
    ``refused`` {class root: reason} lists the classes that cannot be rescaled (they keep 0).
    ``classes``: ``scale_classes(graph)``, when the caller has it."""
    classes = classes or scale_classes(graph)
    members, need = {}, {}
    for name, r in classes.items():
        members.setdefault(r, []).append(name)
    for name, k in demands.items():
        if name in classes and k > 0:
            need[classes[name]] = max(need.get(classes[name], 0), int(k))
    consumers = graph.consumers()
    producers = graph.producers()
    exponents, refused = {}, {}
    for r, k in need.items():
        reason = _class_blocker(graph, members[r], consumers, producers)
        if reason:
            refused[r] = reason
        else:
            exponents.update({name: -k for name in members[r]})
    return exponents, refused


def _class_blocker(graph, names, consumers, producers) -> str:
    for name in names:
        if name in graph.inputs or name in graph.outputs:
            kind = 'input' if name in graph.inputs else 'output'
            return f"'{name}' is a graph {kind} (the host writes or reads it unscaled)"
        for node in consumers.get(name, []) + ([producers[name]] if name in producers else []):
            reason = _blocker(graph, node, name)
            if reason:
                return f"node '{node.name}' ({node.op}) reads or writes '{name}': {reason}"
    return ''


def apply_exponents(graph, exponents) -> int:
    """Rewrite ``graph`` in place so the arena holds every value times 2**exponent; returns
    the number of nodes changed."""
    changed = 0
    for node in graph.nodes:
        ins = [exponents.get(n, 0) if n else 0 for n in node.inputs]
        outs = [exponents.get(n, 0) if n else 0 for n in node.outputs]
        if not any(ins) and not any(outs):
            continue
        changed += 1
        if node.op == 'FusedPointwise':
            node.attrs['program'] = program_text(scaled_program(
                program_steps(node.attrs['program']), ins, outs[0]))
        elif node.op in LINEAR_OPS:
            _scale_linear(graph, node, ins[0], outs[0])
        else:
            _scale_carried_constants(graph, node, max(outs, key=abs))
    return changed


def scaled_program(steps, in_exponents, out_exponent) -> list:
    """A pointwise program reading input k stored times 2**in_exponents[k] and writing its
    result times 2**out_exponent: a Mul step per scaled input first, one Mul after."""
    first = [(k, e) for k, e in enumerate(in_exponents) if e]
    renamed = {f'x{k}': f't{j}' for j, (k, _) in enumerate(first)}
    shift = len(first)

    def arg(a):
        if isinstance(a, str) and a[0] == 't':
            return f't{int(a[1:]) + shift}'
        return renamed.get(a, a) if isinstance(a, str) else a
    out = [('Mul', [f'x{k}', 2.0 ** -e], {}) for k, e in first]
    out += [(op, [arg(a) for a in args], attrs) for op, args, attrs in steps]
    if out_exponent:
        out.append(('Mul', [f't{len(out) - 1}', 2.0 ** out_exponent], {}))
    return out


def _scale_linear(graph, node, ex, ey) -> None:
    """act(conv(x 2^ex) + b 2^ex) = 2^ex act(conv(x) + b) for a homogeneous act; then the
    post-activation affine takes it to 2^ey."""
    a = node.attrs
    if ex:
        if len(node.inputs) > 2 and node.inputs[2]:
            node.inputs[2] = _scaled_weight(graph, node.inputs[2], ex)
        if a.get('activation') == 'Clip':
            for key in ('clip_min', 'clip_max'):
                if key in a and abs(a[key]) < np.finfo(np.float32).max:
                    a[key] = float(a[key]) * 2.0 ** ex
    if ey != ex:
        a['post_scale'] = float(a.get('post_scale', 1.0)) * 2.0 ** (ey - ex)
    if ey and a.get('post_shift', 0.0):
        a['post_shift'] = float(a['post_shift']) * 2.0 ** ey


def _scale_carried_constants(graph, node, e) -> None:
    """The constants a carrying node combines with its scaled inputs (Clip bounds, Pad value,
    an Add's constant), and their attribute forms, times 2**e."""
    if not e:
        return
    for i, name in enumerate(node.inputs):
        if name in graph.weights and name in carried_inputs(graph, node):
            node.inputs[i] = _scaled_weight(graph, name, e)
    for key in SCALED_ATTRS.get(node.op, ()):
        if key in node.attrs:
            node.attrs[key] = float(node.attrs[key]) * 2.0 ** e


def _scaled_weight(graph, name, e) -> str:
    array = np.asarray(graph.weights[name])
    if array.dtype.kind != 'f' or not np.any(array):
        return name
    return add_weight(graph, f'{name}.fp16scale', (array * array.dtype.type(2.0 ** e)))
