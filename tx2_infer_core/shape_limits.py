"""Static shapes of an imported graph within ``Limits``, without executing anything huge.

Two steps, both refusing with ``ModelFormatError`` (naming the value and the limit):

1. ``check_static_sizes``: ONNX's own shape inference (with data propagation, on a light copy
   of the model: large initializers declared, not copied) sizes every value it can; a value over
   ``max_tensor_elements``, or all of them together over ``max_arena_bytes``, is refused before
   anything runs (``--input-shape 1x3x20000x20000``, a ``Pad`` of 2e9).
2. ``infer_shapes_within``: the reference ops then run once on a random input to record every
   value's shape and dtype (what our ops really produce). Before each node whose output size
   depends on its input values (ConstantOfShape, Expand, Tile, Pad, Range, Resize, Upsample,
   OneHot) the size is predicted and checked; every output is checked too; any failure of an
   op on the model's own shapes is a ``ModelFormatError`` naming the node. An input of an op's
   ``fixed_inputs`` (traits: TopK's K, OneHot's depth, CumSum's axis, Trilu's k) must be known
   at build time (a constant, or computed from constants and static shapes), else
   ``UnsupportedOpError`` names the node.
"""
import logging
import math

import numpy as np
import onnx
from onnx import helper

from tx2_infer_core.errors import ModelFormatError, Tx2InferError, UnsupportedOpError
from tx2_infer_core.ir import Value
from tx2_infer_core.ops import OPS, run_node
from tx2_infer_core.ops.traits import TRAITS

log = logging.getLogger('tx2_infer.onnx')

SMALL_INITIALIZER = 64      # elements: initializers copied into the light model (shape data)


def _light_model(model, input_shapes) -> onnx.ModelProto:
    """The graph of ``model`` with the inputs fixed to ``input_shapes`` and its large
    initializers declared as inputs (type and shape only), for shape inference."""
    g = model.graph
    small = [t for t in g.initializer if math.prod(t.dims) <= SMALL_INITIALIZER
             and t.data_location != onnx.TensorProto.EXTERNAL]
    small_names = {t.name for t in small}
    declared = {i.name for i in g.input}
    inputs = [helper.make_tensor_value_info(name, elem, list(shape))
              for name, (elem, shape) in input_shapes.items()]
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
               for t in g.initializer if t.name not in small_names and t.name not in declared]
    inputs += [i for i in g.input if i.name not in input_shapes]
    graph = helper.make_graph(list(g.node), g.name or 'model', inputs, list(g.output), small)
    light = helper.make_model(graph, opset_imports=list(model.opset_import))
    light.ir_version = model.ir_version
    return light


def _known_shapes(model):
    """{value: (elem type, dims)} for every value ONNX inference sized completely (a declared
    -1 is unknown, not an error: step 2 runs the op and checks what it makes)."""
    found = {}
    for info in list(model.graph.value_info) + list(model.graph.output):
        ttype = info.type.tensor_type
        dims = [d.dim_value if d.HasField('dim_value') and d.dim_value >= 0 else None
                for d in ttype.shape.dim]       # -1: what some exporters write for unknown
        if ttype.HasField('shape') and None not in dims:
            found[info.name] = (ttype.elem_type, dims)
    return found


def check_static_sizes(model, values, limits, source) -> None:
    """Refuse ``model`` (inputs sized as in ``values``) if ONNX shape inference finds a value
    over ``limits``; silent where ONNX cannot size a value (step 2 checks those)."""
    shapes = {}
    for name, value in values.items():
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(value.dtype))
        shapes[name] = (elem, value.shape)
        limits.check_elements(value.shape, f"{source}: input '{name}'")
    try:
        inferred = onnx.shape_inference.infer_shapes(_light_model(model, shapes),
                                                     data_prop=True)
    except Exception as exc:  # inference errors and protobuf limits: step 2 decides
        log.info('%s: ONNX shape inference failed (%s); sizes checked while running',
                 source, str(exc).strip()[:200])
        return
    total = 0
    for name, (elem, dims) in _known_shapes(inferred).items():
        limits.check_elements(dims, f"{source}: value '{name}'")
        try:
            total += math.prod(dims) * helper.tensor_dtype_to_np_dtype(elem).itemsize
        except (KeyError, ValueError, TypeError):
            continue
    limits.check_arena(total, f'{source}: shape inference (all values together)')


def _ints(array):
    return [int(v) for v in np.asarray(array).reshape(-1)]


def _predicted_shape(node, args):
    """The output shape of a node whose size depends on its input values, else None."""
    op, x = node.op, args[0] if args else None
    if op == 'ConstantOfShape':
        return _ints(x)
    if op == 'Expand':
        want, have = _ints(args[1]), list(np.shape(x))
        rank = max(len(want), len(have))
        want, have = [1] * (rank - len(want)) + want, [1] * (rank - len(have)) + have
        return [max(a, b) for a, b in zip(want, have)]
    if op == 'Tile':
        return [d * r for d, r in zip(np.shape(x), _ints(args[1]))]
    if op == 'Pad':
        pads = _ints(args[1]) if len(args) > 1 and args[1] is not None else \
            list(node.attrs.get('pads', []))
        shape, half = list(np.shape(x)), len(pads) // 2
        return [d + sum(pads[k::half]) if k < half else d for k, d in enumerate(shape)]
    if op == 'Range':
        start, limit, delta = (float(np.asarray(a).reshape(-1)[0]) for a in args[:3])
        return [max(0, math.ceil((limit - start) / delta))] if delta else [0]
    if op in ('Resize', 'Upsample'):
        return _resize_shape(node, args)
    if op == 'OneHot':
        shape, axis = list(np.shape(x)), int(node.attrs.get('axis', -1))
        shape.insert(axis % (len(shape) + 1), _ints(args[1])[0])
        return shape
    return None


def _resize_shape(node, args):
    sizes = args[3] if node.op == 'Resize' and len(args) > 3 else None
    if sizes is not None and np.size(sizes):
        return _ints(sizes)
    scales = args[2] if node.op == 'Resize' and len(args) > 2 else (
        args[1] if len(args) > 1 else None)
    if scales is None or not np.size(scales) or len(np.shape(args[0])) != np.size(scales):
        return None
    return [math.floor(d * float(s)) for d, s in zip(np.shape(args[0]),
                                                     np.asarray(scales).reshape(-1))]


def _example_input(value, rng) -> np.ndarray:
    if np.dtype(value.dtype).kind == 'f':
        return rng.random(value.shape).astype(value.dtype)
    return np.zeros(value.shape, value.dtype)


def _run_checked(node, args, limits, source):
    what = f"{source}: node '{node.name}' ({node.op})"
    try:
        shape = _predicted_shape(node, args)
    except (ValueError, TypeError, IndexError, OverflowError, ZeroDivisionError):
        shape = None                    # the op itself reports malformed inputs
    if shape is not None:
        limits.check_elements(shape, f'{what} output')
    try:
        with np.errstate(all='ignore'):     # random values (Acosh of 0.5 is NaN): shapes count
            outputs = run_node(node, args)
    except Tx2InferError:
        raise
    except Exception as exc:  # an op failing on the model's own shapes: a malformed model
        shapes = [None if a is None else tuple(np.shape(a)) for a in args]
        raise ModelFormatError(f'{what} cannot run on inputs of shapes {shapes}: '
                               f'{type(exc).__name__}: {str(exc)[:200]}') from None
    for name, array in zip(node.outputs, outputs):
        if name:
            limits.check_elements(np.shape(array), f"{what} output '{name}'")
    return outputs


FIXED_BY_SHAPES = ('Shape', 'Size')     # their outputs are known once the shapes are


def _check_fixed_inputs(node, known, source) -> None:
    """Refuse ``node`` if an input its op needs at build time is not in ``known``."""
    traits = TRAITS.get(node.op)
    for k in traits.fixed_inputs if traits else ():
        if k < len(node.inputs) and node.inputs[k] and node.inputs[k] not in known:
            raise UnsupportedOpError(
                node.op, node.name, OPS,
                f"{source}: input {k} ('{node.inputs[k]}') must be a constant (an "
                'initializer, or computed from constants and shapes): the engine fixes its '
                'value at build time')


def _known_after(node, known) -> bool:
    """True when ``node``'s outputs are known at build time (given the ``known`` values)."""
    return node.op in FIXED_BY_SHAPES or all(not n or n in known for n in node.inputs)


def infer_shapes_within(graph, limits, source) -> None:
    """Fill ``graph.values`` with every activation's static shape and dtype by running the
    reference ops once on a random input (arrays freed after their last reader), refusing
    any value over ``limits``."""
    rng = np.random.default_rng(0)
    env = dict(graph.weights)
    for name in graph.inputs:
        limits.check_elements(graph.values[name].shape, f"{source}: input '{name}'")
        env[name] = _example_input(graph.values[name], rng)
    last_use = {name: k for k, node in enumerate(graph.nodes) for name in node.inputs}
    keep = set(graph.outputs) | set(graph.weights)
    found = {name: (env[name].shape, env[name].dtype.name) for name in graph.inputs}
    known = set(graph.weights)          # values fixed at build time
    for k, node in enumerate(graph.nodes):
        _check_fixed_inputs(node, known, source)
        if _known_after(node, known):
            known.update(node.outputs)
        args = [env[name] if name else None for name in node.inputs]
        for name, array in zip(node.outputs, _run_checked(node, args, limits, source)):
            if name:
                env[name] = array = np.asarray(array)
                found[name] = (tuple(array.shape), array.dtype.name)
        for name in node.inputs:
            if last_use.get(name) == k and name not in keep:
                env.pop(name, None)
    for name, (shape, dtype) in found.items():
        old = graph.values.get(name)
        graph.values[name] = Value(name, shape, dtype, old.layout if old else '')
