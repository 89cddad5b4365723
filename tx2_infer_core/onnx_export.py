"""IR graph -> ONNX model: ONNX Runtime as the oracle for any graph we build, and as the
``ort`` CPU backend's runtime (``backends/ort_backend.py``).

Standard ONNX op nodes are written as they are (attributes converted back to protobuf), weights
become initializers and every value with a known shape gets a ``value_info``. The internal ops
the passes make are expanded into standard ones: ``FusedConv`` into Conv, its activation and the
residual Add; a lone ``SiLU`` into Sigmoid and Mul; ``Mish`` (ONNX opset 18) into Softplus, Tanh
and Mul below opset 18; a batch-first (layout 1) recurrent op into its layout-0 form between
Transposes. Any other internal op raises ``UnsupportedOpError``. The opset is the
one the nodes are written for (``export_opset``: e.g. Split with a ``split`` attribute is
opset < 13). The result passes ``onnx.checker``.
"""
import functools
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ops import traits

INTERNAL_OPS = ('FusedConv', 'FusedConvTranspose', 'SiLU')
FUSED_CONVS = {'FusedConv': 'Conv', 'FusedConvTranspose': 'ConvTranspose'}
FIRST_OPSET, DEFAULT_OPSET, LAST_OPSET = 11, 13, 21   # the importer's range; 13 if free
EXPANDED = {'SiLU': 1, 'Mish': 1}   # written as other ops where needed: no opset constraint
RECURRENT = traits.names(module='recurrent')  # layout 1: Transposes around layout 0


def _attribute(key, value):
    if isinstance(value, np.ndarray):
        return helper.make_attribute(key, numpy_helper.from_array(value))
    if isinstance(value, (list, tuple)):
        value = [v.item() if isinstance(v, np.generic) else v for v in value]
        if not value:
            return helper.make_attribute(key, [], attr_type=onnx.AttributeProto.INTS)
    elif isinstance(value, np.generic):
        value = value.item()
    return helper.make_attribute(key, value)


def _make_node(op, name, inputs, outputs, attrs):
    node = helper.make_node(op, list(inputs), list(outputs), name=name)
    node.attribute.extend(_attribute(k, v) for k, v in sorted(attrs.items()))
    return node


def activation_nodes(act, attrs, x, y, tag, consts, slope=''):
    """Nodes computing ``y = act(x)`` for a FusedConv ``activation`` (``attrs``: its alpha, beta,
    clip_min, clip_max; ``slope``: PRelu's slope input); ``tag`` prefixes new node and value
    names, ``consts`` receives new constants. Mish is written as ``x * tanh(softplus(x))``
    (any opset); Elu, Selu, Celu, Softplus, ThresholdedRelu as themselves, their ONNX
    attributes from alpha and beta (``ops/traits.py`` params)."""
    if act in ('Relu', 'Sigmoid', 'Tanh'):
        return [_make_node(act, f'{tag}.act', [x], [y], {})]
    if act == 'LeakyRelu':
        return [_make_node(act, f'{tag}.act', [x], [y],
                           {'alpha': float(attrs.get('alpha', 0.01))})]
    if act == 'HardSigmoid':
        return [_make_node(act, f'{tag}.act', [x], [y],
                           {'alpha': float(attrs.get('alpha', 0.2)),
                            'beta': float(attrs.get('beta', 0.5))})]
    if act in ('SiLU', 'HardSwish'):
        gate = f'{tag}.gate'
        first = (_make_node('Sigmoid', gate, [x], [gate], {}) if act == 'SiLU' else
                 _make_node('HardSigmoid', gate, [x], [gate], {'alpha': 1 / 6, 'beta': 0.5}))
        return [first, _make_node('Mul', f'{tag}.act', [x, gate], [y], {})]
    if act == 'Mish':
        soft, gate = f'{tag}.softplus', f'{tag}.gate'
        return [_make_node('Softplus', soft, [x], [soft], {}),
                _make_node('Tanh', gate, [soft], [gate], {}),
                _make_node('Mul', f'{tag}.act', [x, gate], [y], {})]
    if act == 'Clip':
        lo, hi = f'{tag}.clip_min', f'{tag}.clip_max'
        consts[lo] = np.array(attrs.get('clip_min', -np.inf), np.float32)
        consts[hi] = np.array(attrs.get('clip_max', np.inf), np.float32)
        return [_make_node('Clip', f'{tag}.act', [x, lo, hi], [y], {})]
    if act == 'PRelu' and slope:
        return [_make_node('PRelu', f'{tag}.act', [x, slope], [y], {})]
    found = traits.TRAITS.get(act)
    if found is not None and found.kind == traits.ACTIVATION and not found.internal:
        onnx_attrs = {attr: float(attrs.get(field, default)) for (attr, default), field
                      in zip(found.params, traits.ACT_FIELDS)}
        return [_make_node(act, f'{tag}.act', [x], [y], onnx_attrs)]
    raise UnsupportedOpError('FusedConv', tag, INTERNAL_OPS,
                             f"activation '{act}' cannot be exported")


def expand_fused_conv(node, consts):
    """ONNX nodes equivalent to one FusedConv node (``consts`` receives any new constants).

    ``act(conv(x, w) + b + residual) * post_scale + post_shift`` or, with
    ``residual_after_act=1``, ``act(conv(x, w) + b) * post_scale + post_shift + residual``
    (a Mul and an Add of constants where post_scale is not 1, post_shift not 0).
    """
    conv_keys = ('auto_pad', 'dilations', 'group', 'kernel_shape', 'pads', 'strides',
                 'output_padding', 'output_shape')  # the last two: FusedConvTranspose
    attrs = {k: v for k, v in node.attrs.items() if k in conv_keys}
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else ''
    residual = node.inputs[3] if len(node.inputs) > 3 else ''
    slope = node.inputs[4] if len(node.inputs) > 4 else ''
    out, tag = node.outputs[0], node.name
    after = bool(node.attrs.get('residual_after_act', 0))
    has_act = bool(node.attrs.get('activation', ''))
    steps = [('conv', None)]
    if residual and not after:
        steps.append(('add', residual))
    if has_act:
        steps.append(('act', None))
    steps.extend(_post_affine_steps(node, consts))
    if residual and after:
        steps.append(('add', residual))
    nodes, current = [], None
    for i, (kind, arg) in enumerate(steps):
        target = out if i == len(steps) - 1 else f'{tag}.{kind}{i}'
        if kind == 'conv':
            inputs = [x, w] + ([bias] if bias else [])
            nodes.append(_make_node(FUSED_CONVS[node.op], f'{tag}.conv', inputs, [target],
                                    attrs))
        elif kind in ('add', 'mul'):
            nodes.append(_make_node(kind.capitalize(), f'{tag}.{kind}{i}', [current, arg],
                                    [target], {}))
        else:
            nodes.extend(activation_nodes(node.attrs.get('activation', ''), node.attrs,
                                          current, target, tag, consts, slope))
        current = target
    return nodes


def _post_affine_steps(node, consts) -> list:
    """``expand_fused_conv`` steps of a fused node's post-activation affine: ('mul', scale)
    and ('add', shift) constants, each left out at its default (1, 0)."""
    steps = []
    for kind, attr, default in (('mul', 'post_scale', 1.0), ('add', 'post_shift', 0.0)):
        value = float(node.attrs.get(attr, default))
        if value != default:
            name = f'{node.name}.{attr}'
            consts[name] = np.array(value, np.float32)
            steps.append((kind, name))
    return steps


def value_info(value):
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(value.dtype))
    return helper.make_tensor_value_info(value.name, elem, list(value.shape))


def _first_opset(op) -> int:
    """The first opset (of the importer's range) that has ``op``; FIRST_OPSET if none does
    (the checker then names the op)."""
    for version in range(FIRST_OPSET, LAST_OPSET + 1):
        try:
            onnx.defs.get_schema(op, version, '')
            return version
        except onnx.defs.SchemaError:
            continue
    return FIRST_OPSET


def _has_input(node, k) -> bool:
    return len(node.inputs) > k and bool(node.inputs[k])


def _form_bounds(node):
    """``(lo, hi)``: the opsets whose signature of ``node.op`` is the one ``node`` is written in
    (an attribute that became an input, or a new attribute)."""
    op, attrs = node.op, node.attrs
    if op == 'Split':
        if 'num_outputs' in attrs:
            return 18, LAST_OPSET
        if 'split' in attrs:
            return FIRST_OPSET, 12
        return (13, LAST_OPSET) if _has_input(node, 1) else (FIRST_OPSET, LAST_OPSET)
    if op.startswith('Reduce') or op in ('Squeeze', 'Unsqueeze'):
        moved = 13 if op in ('Squeeze', 'Unsqueeze', 'ReduceSum') else 18
        if 'axes' in attrs:
            return FIRST_OPSET, moved - 1
        return (moved, LAST_OPSET) if _has_input(node, 1) else (FIRST_OPSET, LAST_OPSET)
    if op in EXPANDED:
        return FIRST_OPSET, LAST_OPSET
    if op in ('ScatterND', 'ScatterElements') and attrs.get('reduction') in ('max', 'min'):
        return 18, LAST_OPSET       # reduction max and min came in opset 18 (add, mul in 16)
    if op == 'GroupNormalization':
        return 21, LAST_OPSET           # per-channel scale and bias (op_forms.settle_forms)
    if op == 'GridSample' and attrs.get('mode') in ('linear', 'cubic', 'bilinear', 'bicubic'):
        return (20, LAST_OPSET) if attrs['mode'] in ('linear', 'cubic') else (16, 19)
    return _attribute_bounds(op, frozenset(attrs))


def _fitting_opsets(op, accepts) -> list:
    """The opsets of the importer's range whose schema of ``op`` ``accepts(schema)``."""
    fits = []
    for version in range(FIRST_OPSET, LAST_OPSET + 1):
        try:
            schema = onnx.defs.get_schema(op, version, '')
        except onnx.defs.SchemaError:
            continue
        if accepts(schema):
            fits.append(version)
    return fits


@functools.lru_cache(maxsize=None)
def _attribute_bounds(op, names) -> tuple:
    """The first and last opsets (of the importer's range) whose schema of ``op`` has every
    attribute in ``names`` (e.g. Reshape's ``allowzero`` from 14); the full range when none
    has (the checker then names the op or the attribute)."""
    fits = _fitting_opsets(op, lambda schema: names <= set(schema.attributes))
    return (fits[0], fits[-1]) if fits else (_first_opset(op), LAST_OPSET)


# numpy dtype name -> ONNX tensor type string of the schemas' type constraints
ONNX_TYPES = {'float32': 'float', 'float64': 'double', 'float16': 'float16', 'bool': 'bool',
              **{t: t for t in ('int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32',
                                'uint64')}}


@functools.lru_cache(maxsize=None)
def _type_bounds(op, input_types) -> tuple:
    """The first and last opsets (of the importer's range) whose schema of ``op`` accepts
    ``input_types`` (ONNX type strings, None where unknown) at its inputs, e.g. an Add of
    uint8 from 14; the full range when none does (the checker then names the op)."""
    def accepts(schema):
        allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
        formals = schema.inputs
        return all(t is None or not formals or f'tensor({t})' in allowed.get(
            formals[min(i, len(formals) - 1)].type_str, {f'tensor({t})'})
            for i, t in enumerate(input_types))
    fits = _fitting_opsets(op, accepts)
    return (fits[0], fits[-1]) if fits else (FIRST_OPSET, LAST_OPSET)


def _input_types(graph, node) -> tuple:
    """ONNX type strings of ``node``'s inputs (None for an omitted or unknown one)."""
    values = graph.values
    return tuple(ONNX_TYPES.get(values[n].dtype) if n and n in values else None
                 for n in node.inputs)


def _fused_conv_bounds(node) -> tuple:
    """The opsets every ONNX node of a fused convolution exists in (with a Celu: from 12)."""
    return max(_first_opset(p.op_type) for p in expand_fused_conv(node, {})), LAST_OPSET


def export_opset(graph) -> int:
    """The ONNX opset ``graph``'s nodes are written for: 13 when their signatures and input
    types allow it, else the nearest one that fits them all (e.g. 17 for LayerNormalization, 12
    for a Split with a ``split`` attribute, 14 for an Add of uint8). Raises
    ``UnsupportedOpError`` when no opset fits every node."""
    lo, hi, tight = FIRST_OPSET, LAST_OPSET, {}
    for node in graph.nodes:
        first, last = _fused_conv_bounds(node) if node.op in FUSED_CONVS else \
            _form_bounds(node)
        if node.op not in EXPANDED and node.op not in FUSED_CONVS and '::' not in node.op:
            types_lo, types_hi = _type_bounds(node.op, _input_types(graph, node))
            first, last = max(first, types_lo), min(last, types_hi)
        if first > lo or last < hi:
            tight[node.name] = (node.op, first, last)
        lo, hi = max(lo, first), min(hi, last)
    if lo > hi:
        raise UnsupportedOpError('(graph)', graph.name, INTERNAL_OPS,
                                 f'no ONNX opset fits every node: {tight}')
    return min(max(lo, DEFAULT_OPSET), hi)


def batch_first_recurrent(node):
    """A layout-1 (batch-first) RNN, GRU or LSTM as its layout-0 form between Transposes (ONNX
    Runtime has no layout 1): X, initial_h and initial_c in; Y, Y_h and Y_c out."""
    inputs, outputs, before, after = list(node.inputs), list(node.outputs), [], []
    for k in (0, 5, 6):
        if k < len(inputs) and inputs[k]:
            name = f'{node.name}.in{k}'
            before.append(_make_node('Transpose', name, [inputs[k]], [name],
                                     {'perm': [1, 0, 2]}))
            inputs[k] = name
    for k, out in enumerate(outputs):
        if out:
            outputs[k] = f'{node.name}.out{k}'
            after.append(_make_node('Transpose', outputs[k] + '.t', [outputs[k]], [out],
                                    {'perm': [2, 0, 1, 3] if k == 0 else [1, 0, 2]}))
    attrs = {k: v for k, v in node.attrs.items() if k != 'layout'}
    return before + [_make_node(node.op, node.name, inputs, outputs, attrs)] + after


def _node_protos(node, opset, consts):
    """The ONNX nodes of one IR node at ``opset``."""
    if node.op in FUSED_CONVS:
        return expand_fused_conv(node, consts)
    if node.op == 'SiLU' or (node.op == 'Mish' and opset < 18):
        return activation_nodes(node.op, node.attrs, node.inputs[0], node.outputs[0],
                                node.name, consts)
    if node.op in RECURRENT and node.attrs.get('layout', 0):
        return batch_first_recurrent(node)
    if '::' in node.op or node.op in INTERNAL_OPS:
        raise UnsupportedOpError(node.op, node.name, INTERNAL_OPS,
                                 'internal op with no ONNX equivalent')
    return [_make_node(node.op, node.name, node.inputs, node.outputs, node.attrs)]


def to_onnx(graph, opset=None) -> onnx.ModelProto:
    """The IR ``graph`` as a checked ONNX model of the given default-domain ``opset`` (None:
    ``export_opset(graph)``, the one its nodes are written for)."""
    opset = opset or export_opset(graph)
    consts, nodes = {}, []
    for node in graph.nodes:
        nodes.extend(_node_protos(node, opset, consts))
    initializers = [numpy_helper.from_array(np.asarray(arr), name)
                    for name, arr in list(graph.weights.items()) + list(consts.items())]
    io = set(graph.inputs) | set(graph.outputs)
    proto = helper.make_graph(
        nodes, graph.name,
        inputs=[value_info(graph.values[n]) for n in graph.inputs],
        outputs=[value_info(graph.values[n]) for n in graph.outputs],
        initializer=initializers,
        value_info=[value_info(v) for k, v in graph.values.items()
                    if k not in io and k not in graph.weights])
    model = helper.make_model(proto, opset_imports=[helper.make_opsetid('', opset)],
                              producer_name='tx2_infer')
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    onnx.checker.check_model(model, full_check=True)
    return model


def save_onnx(graph, path, opset=None) -> Path:
    """Write ``graph`` as an ONNX file (see ``to_onnx``); returns the path."""
    path = Path(path)
    onnx.save(to_onnx(graph, opset), str(path))
    return path
