"""IR graph -> ONNX model, so ONNX Runtime can serve as the oracle for any graph we build.

Standard ONNX op nodes are written as they are (attributes converted back to protobuf), weights
become initializers and every value with a known shape gets a ``value_info``. The internal
``FusedConv`` is expanded back into Conv, Add and the activation; any other internal op raises
``UnsupportedOpError``. The result passes ``onnx.checker``.
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tx2_infer_core.errors import UnsupportedOpError

INTERNAL_OPS = ('FusedConv',)


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


def _activation_nodes(node, x, y, consts):
    """Nodes computing ``y = activation(x)`` for a FusedConv's ``activation`` attribute."""
    act, tag = node.attrs.get('activation', ''), node.name
    if act in ('Relu', 'Sigmoid', 'Tanh'):
        return [_make_node(act, f'{tag}.act', [x], [y], {})]
    if act == 'LeakyRelu':
        return [_make_node(act, f'{tag}.act', [x], [y],
                           {'alpha': float(node.attrs.get('alpha', 0.01))})]
    if act == 'HardSigmoid':
        return [_make_node(act, f'{tag}.act', [x], [y],
                           {'alpha': float(node.attrs.get('alpha', 0.2)),
                            'beta': float(node.attrs.get('beta', 0.5))})]
    if act in ('SiLU', 'HardSwish'):
        gate = f'{tag}.gate'
        first = (_make_node('Sigmoid', gate, [x], [gate], {}) if act == 'SiLU' else
                 _make_node('HardSigmoid', gate, [x], [gate], {'alpha': 1 / 6, 'beta': 0.5}))
        return [first, _make_node('Mul', f'{tag}.act', [x, gate], [y], {})]
    if act == 'Clip':
        lo, hi = f'{tag}.clip_min', f'{tag}.clip_max'
        consts[lo] = np.array(node.attrs.get('clip_min', -np.inf), np.float32)
        consts[hi] = np.array(node.attrs.get('clip_max', np.inf), np.float32)
        return [_make_node('Clip', f'{tag}.act', [x, lo, hi], [y], {})]
    raise UnsupportedOpError('FusedConv', node.name, INTERNAL_OPS,
                             f"activation '{act}' cannot be exported")


def expand_fused_conv(node, consts):
    """ONNX nodes equivalent to one FusedConv node (``consts`` receives any new constants).

    ``act(conv(x, w) + b + residual)`` or, with ``residual_after_act=1``,
    ``act(conv(x, w) + b) + residual``.
    """
    conv_keys = ('auto_pad', 'dilations', 'group', 'kernel_shape', 'pads', 'strides')
    attrs = {k: v for k, v in node.attrs.items() if k in conv_keys}
    x, w = node.inputs[0], node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else ''
    residual = node.inputs[3] if len(node.inputs) > 3 else ''
    out, tag = node.outputs[0], node.name
    after = bool(node.attrs.get('residual_after_act', 0))
    has_act = bool(node.attrs.get('activation', ''))
    steps = [('conv', None)]
    if residual and not after:
        steps.append(('add', residual))
    if has_act:
        steps.append(('act', None))
    if residual and after:
        steps.append(('add', residual))
    nodes, current = [], None
    for i, (kind, arg) in enumerate(steps):
        target = out if i == len(steps) - 1 else f'{tag}.{kind}{i}'
        if kind == 'conv':
            inputs = [x, w] + ([bias] if bias else [])
            nodes.append(_make_node('Conv', f'{tag}.conv', inputs, [target], attrs))
        elif kind == 'add':
            nodes.append(_make_node('Add', f'{tag}.add{i}', [current, arg], [target], {}))
        else:
            nodes.extend(_activation_nodes(node, current, target, consts))
        current = target
    return nodes


def _value_info(value):
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(value.dtype))
    return helper.make_tensor_value_info(value.name, elem, list(value.shape))


def to_onnx(graph, opset=13) -> onnx.ModelProto:
    """The IR ``graph`` as a checked ONNX model of the given default-domain ``opset``."""
    consts, nodes = {}, []
    for node in graph.nodes:
        if node.op == 'FusedConv':
            nodes.extend(expand_fused_conv(node, consts))
        elif '::' in node.op or node.op in INTERNAL_OPS:
            raise UnsupportedOpError(node.op, node.name, INTERNAL_OPS,
                                     'internal op with no ONNX equivalent')
        else:
            nodes.append(_make_node(node.op, node.name, node.inputs, node.outputs, node.attrs))
    initializers = [numpy_helper.from_array(np.asarray(arr), name)
                    for name, arr in list(graph.weights.items()) + list(consts.items())]
    io = set(graph.inputs) | set(graph.outputs)
    proto = helper.make_graph(
        nodes, graph.name,
        inputs=[_value_info(graph.values[n]) for n in graph.inputs],
        outputs=[_value_info(graph.values[n]) for n in graph.outputs],
        initializer=initializers,
        value_info=[_value_info(v) for k, v in graph.values.items()
                    if k not in io and k not in graph.weights])
    model = helper.make_model(proto, opset_imports=[helper.make_opsetid('', opset)],
                              producer_name='tx2_infer')
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    onnx.checker.check_model(model, full_check=True)
    return model


def save_onnx(graph, path, opset=13) -> Path:
    """Write ``graph`` as an ONNX file (see ``to_onnx``); returns the path."""
    path = Path(path)
    onnx.save(to_onnx(graph, opset), str(path))
    return path
