"""ONNX model -> IR graph, with static shapes fixed from a given input shape.

Safe loading: a truncated or malformed file, an unsupported opset or domain, and external data
that is missing or points outside the model's folder each raise a clear ``ModelFormatError``.
"""
import logging
import os
import re
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tx2_infer_core.contrib_rewrite import rewrite_contrib
from tx2_infer_core.control_flow import inline_control_flow
from tx2_infer_core.errors import ModelFormatError, UnsupportedOpError
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.limits import DEFAULT_LIMITS
from tx2_infer_core.newer_ops import rewrite_newer_ops, unpark
from tx2_infer_core.op_forms import settle_forms
from tx2_infer_core.qoperator_rewrite import rewrite_qoperators
from tx2_infer_core.rebatch import fixed_batch, rebatch
from tx2_infer_core.shape_limits import check_static_sizes, infer_shapes_within

log = logging.getLogger('tx2_infer.onnx')

OPSET_RANGE = (11, 21)
# numpy dtype kinds the engine computes with: bool, signed and unsigned ints, floats
NUMERIC_KINDS = 'biuf'
UPGRADE_RANGE = (7, 10)   # older opsets upgraded on import by onnx.version_converter
UPGRADE_TO = 13
# newer opsets (22 and on, up to what the installed onnx knows) are converted down to
# OPSET_RANGE[1] on import by onnx.version_converter (their vision ops mostly gained types)


def _attr_value(attr, model_dir=None):
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode('utf-8')
    if isinstance(value, onnx.TensorProto):
        return _tensor_array(value, model_dir, f"attribute '{attr.name}'")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode('utf-8') for v in value]
    first = value[0] if isinstance(value, list) and value else value
    if isinstance(first, onnx.GraphProto):
        raise UnsupportedOpError('subgraph attribute', attr.name, [],
                                 'only If and Loop are supported (control_flow.py)')
    return value


def node_from_proto(proto, index=0, model_dir=None) -> Node:
    """One ONNX NodeProto as an IR Node (attributes as plain Python / numpy values).

    A tensor attribute's external data is read from ``model_dir`` (refused without one).
    """
    name = proto.name or f'{proto.op_type}_{index}'
    op = proto.op_type if proto.domain in ('', 'ai.onnx') else f'{proto.domain}::{proto.op_type}'
    attrs = {a.name: _attr_value(a, model_dir) for a in proto.attribute}
    return Node(op=op, name=name, inputs=list(proto.input), outputs=list(proto.output),
                attrs=attrs)


def _constant_value(node) -> np.ndarray:
    if len(node.attrs) != 1:
        raise ModelFormatError(f"Constant '{node.name}' needs exactly one value attribute, "
                               f'has {sorted(node.attrs)}')
    key, val = next(iter(node.attrs.items()))
    dtypes = {'value_float': np.float32, 'value_floats': np.float32,
              'value_int': np.int64, 'value_ints': np.int64}
    if key not in dtypes and key != 'value':
        raise ModelFormatError(f"Constant '{node.name}': attribute '{key}' is not supported "
                               '(value, value_float(s), value_int(s))')
    return np.asarray(val, dtype=dtypes.get(key))


def _read_model(path, max_bytes) -> onnx.ModelProto:
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f'model file not found: {path}')
    if path.stat().st_size > max_bytes:
        raise ModelFormatError(f'{path} has {path.stat().st_size} bytes, more than the limit '
                               f'max_file_bytes={max_bytes} (Limits)')
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise ModelFormatError(
            f'{path} is not a valid ONNX model (truncated or malformed): {exc}') from exc


def _external_array(tensor, model_dir: Path, what=None) -> np.ndarray:
    what = what or f"initializer '{tensor.name}'"
    if model_dir is None:
        raise ModelFormatError(f'{what}: external data needs the model folder')
    model_dir = Path(model_dir)
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get('location', '')
    target = (model_dir / location).resolve()
    if os.path.isabs(location) or model_dir.resolve() not in target.parents:
        raise ModelFormatError(
            f"{what}: external data path '{location}' escapes the model folder {model_dir}")
    if not target.is_file():
        raise ModelFormatError(f"{what}: external data file '{location}' not found")
    try:
        offset, length = int(info.get('offset', 0)), int(info.get('length', -1))
    except ValueError:
        offset = length = -2
    if offset < 0 or length < -1:
        raise ModelFormatError(f'{what}: external data offset {info.get("offset")!r} or length '
                               f'{info.get("length")!r} is not a non-negative integer')
    dtype = numeric_dtype(tensor.data_type, what)
    with open(target, 'rb') as f:
        f.seek(offset)
        raw = f.read(length)
    count = int(np.prod(tensor.dims, dtype=np.int64))
    if len(raw) != count * dtype.itemsize:
        raise ModelFormatError(
            f'{what}: external data holds {len(raw)} bytes, expected {count * dtype.itemsize}')
    return np.frombuffer(raw, dtype=dtype).reshape(tuple(tensor.dims)).copy()


def numeric_dtype(elem_type, what) -> np.dtype:
    """The numpy dtype of an ONNX element type; ``ModelFormatError`` naming ``what`` unless it
    is a number type (bool, int, float) numpy knows."""
    try:
        dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    except (KeyError, ValueError, TypeError):
        raise ModelFormatError(f'{what} has unknown element type {elem_type}') from None
    if dtype.kind not in NUMERIC_KINDS:
        name = onnx.TensorProto.DataType.Name(elem_type)
        raise ModelFormatError(f'{what} has non-numeric element type {name}; the engine '
                               'computes with bool, integer and float tensors only')
    return dtype


def _tensor_array(tensor, model_dir, what) -> np.ndarray:
    """A TensorProto's numeric array (external data read from ``model_dir``, checked)."""
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        array = _external_array(tensor, model_dir, what)
    else:
        try:
            array = numpy_helper.to_array(tensor)
        except Exception as exc:
            raise ModelFormatError(f'{what} is malformed: {exc}') from exc
    if array.dtype.kind not in NUMERIC_KINDS:
        raise ModelFormatError(f'{what} has non-numeric type {array.dtype}')
    return array


def _initializer(tensor, model_dir) -> np.ndarray:
    return _tensor_array(tensor, model_dir, f"initializer '{tensor.name}'")


def _check_opset(model, source):
    for entry in model.opset_import:
        if entry.domain in ('', 'ai.onnx'):
            low, high = OPSET_RANGE
            if not low <= entry.version <= high:
                raise ModelFormatError(
                    f'{source}: ONNX opset {entry.version} is outside the supported range '
                    f'{low}..{high} (opsets {UPGRADE_RANGE[0]}..{UPGRADE_RANGE[1]} are '
                    f'upgraded and {high + 1}..{onnx.defs.onnx_opset_version()} converted '
                    'down on import)')


def upgrade_opset(model, source='model'):
    """``model`` itself, or its conversion by ``onnx.version_converter``: an opset 7-10 model
    upgraded to ``UPGRADE_TO``, a model newer than ``OPSET_RANGE`` (up to the installed onnx's
    newest opset) converted down to its top, its ops newer than that rewritten first
    (``newer_ops.py``); a ``ModelFormatError`` naming the opset if the converter fails."""
    version = _default_opset(model)
    if UPGRADE_RANGE[0] <= version <= UPGRADE_RANGE[1]:
        target, done = UPGRADE_TO, 'upgraded'
    elif OPSET_RANGE[1] < version <= onnx.defs.onnx_opset_version():
        target, done = OPSET_RANGE[1], 'converted down'
    else:
        return model
    from onnx import version_converter
    if done == 'converted down':
        model = rewrite_newer_ops(model)    # ops with no opset-21 form
    try:
        converted = unpark(version_converter.convert_version(model, target))
    except Exception as exc:  # the converter raises RuntimeError, ValueError, checker errors
        raise ModelFormatError(
            f'{source}: ONNX opset {version} could not be {done} to opset {target} by '
            f'onnx.version_converter: {str(exc).strip()[:300]}') from exc
    log.info('%s: %s from ONNX opset %d to %d', source, done, version, target)
    return converted


def _input_value(proto, input_shape, source) -> Value:
    ttype = proto.type.tensor_type
    dims = [d.dim_value if d.HasField('dim_value') else (d.dim_param or '?')
            for d in ttype.shape.dim]
    if input_shape is not None:
        input_shape = tuple(int(d) for d in input_shape)
        if len(input_shape) != len(dims):
            raise ModelFormatError(
                f"{source}: input '{proto.name}' has rank {len(dims)}, "
                f'but input shape {input_shape} was given')
        for got, want in zip(input_shape, dims):
            if isinstance(want, int) and want > 0 and got != want:
                raise ModelFormatError(
                    f"{source}: input '{proto.name}' has fixed shape {dims}; "
                    f'cannot build it for {input_shape}')
        shape = input_shape
    else:
        shape = tuple(d if isinstance(d, int) and d > 0 else None for d in dims)
        if shape and shape[0] is None:
            shape = (1,) + shape[1:]            # dynamic batch: build for batch 1
        if None in shape:
            raise ModelFormatError(
                f"{source}: input '{proto.name}' has dynamic dims {dims}; "
                'give an input shape (e.g. --input-shape 1x3x640x640)')
    dtype = numeric_dtype(ttype.elem_type, f"{source}: input '{proto.name}'").name
    layout = 'NHWC' if len(shape) == 4 and shape[-1] in (1, 3, 4) else (
        'NCHW' if len(shape) == 4 else '')
    return Value(proto.name, tuple(shape), dtype, layout)


def _default_opset(model) -> int:
    return next((e.version for e in model.opset_import if e.domain in ('', 'ai.onnx')), 0)


def legacy_softmax(node) -> list:
    """Softmax/LogSoftmax/Hardmax before opset 13 work on the input flattened to 2-D at
    ``axis`` (default 1). Rewrite as Flatten -> op(axis=-1) -> Reshape back to the input shape."""
    x, (y,) = node.inputs[0], node.outputs
    flat, soft, shape = (f'{node.name}/{part}' for part in ('flat', 'op', 'shape'))
    return [Node('Flatten', flat, [x], [flat], {'axis': node.attrs.get('axis', 1)}),
            Node(node.op, soft, [flat], [soft], {'axis': -1}),
            Node('Shape', shape, [x], [shape]),
            Node('Reshape', node.name, [soft, shape], [y])]


def graph_from_model(model, input_shape=None, source='model', model_dir='.',
                     limits=None) -> Graph:
    """Build the IR from an in-memory ModelProto (``input_shape`` fixes the first input).

    Every value is sized within ``limits`` (``Limits``; defaults when None) before anything of
    that size runs (``shape_limits.py``).
    """
    limits = limits or DEFAULT_LIMITS
    model = upgrade_opset(model, source)
    _check_opset(model, source)
    if input_shape and fixed_batch(model) == 1 and int(input_shape[0]) > 1:
        model = rebatch(model, int(input_shape[0]))     # a static batch-1 export, N images
    g = model.graph
    weights = {t.name: _initializer(t, Path(model_dir)) for t in g.initializer}
    inputs = [i for i in g.input if i.name not in weights]
    if not inputs:
        raise ModelFormatError(f'{source}: the model has no runtime input')
    values = {}
    for k, proto in enumerate(inputs):
        values[proto.name] = _input_value(proto, input_shape if k == 0 else None, source)
    model = inline_control_flow(model, {name: v.shape for name, v in values.items()})
    g = model.graph
    nodes, legacy = [], _default_opset(model) < 13
    for index, proto in enumerate(g.node):
        node = node_from_proto(proto, index, model_dir)
        if legacy and node.op in ('Softmax', 'LogSoftmax', 'Hardmax'):
            nodes.extend(legacy_softmax(node))
            continue
        if node.op == 'Constant' and len(node.outputs) == 1:
            weights[node.outputs[0]] = _constant_value(node)
            continue
        nodes.append(node)
    nodes = rewrite_contrib(nodes, weights)     # com.microsoft ops as standard ones
    graph = Graph(nodes=nodes, inputs=[i.name for i in inputs],
                  outputs=[o.name for o in g.output], values=values, weights=weights,
                  name=g.name or Path(source).stem, meta=_model_meta(model))
    graph.toposort()
    _check_outputs(g.output, source)
    check_static_sizes(model, values, limits, source)
    infer_shapes_within(graph, limits, source)
    settle_forms(graph, _default_opset(model))
    rewrite_qoperators(graph)           # QLinearConv & co in QDQ form
    odd = [v for v in graph.values.values() if np.dtype(v.dtype).kind not in NUMERIC_KINDS]
    if odd:
        raise ModelFormatError(f"{source}: value '{odd[0].name}' is {odd[0].dtype}; the engine "
                               'computes with bool, integer and float tensors only')
    return graph


def _model_meta(model) -> dict:
    """The graph's meta from the ONNX: its source and, when the model declares one (Ultralytics
    pose exports: ``kpt_shape`` '[17, 3]' or '17,3'), ``kpt_shape`` as a list of ints."""
    meta = {'source': 'onnx'}
    for prop in model.metadata_props:
        if prop.key == 'kpt_shape' and len(prop.value) <= 40:
            meta['kpt_shape'] = [int(v) for v in re.findall(r'\d+', prop.value)]
    return meta


def _check_outputs(outputs, source) -> None:
    """Declared graph outputs of a non-numeric element type are refused (UNDEFINED is fine)."""
    for proto in outputs:
        elem_type = proto.type.tensor_type.elem_type
        if elem_type:
            numeric_dtype(elem_type, f"{source}: output '{proto.name}'")


def load_onnx(path, input_shape=None, limits=None) -> Graph:
    """Import an ONNX file; ``input_shape`` (tuple) fixes dynamic dims of the first input;
    ``limits`` (``Limits``) bounds the file and every tensor."""
    limits = limits or DEFAULT_LIMITS
    model = _read_model(path, limits.max_file_bytes)
    graph = graph_from_model(model, input_shape, source=str(path),
                             model_dir=Path(path).resolve().parent, limits=limits)
    log.info('imported %s: %d nodes, %d weights', path, len(graph.nodes), len(graph.weights))
    return graph
