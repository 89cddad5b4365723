"""Ops of ONNX opsets after 21 rewritten into opset-21 ops, over the protos, before
``onnx.version_converter`` converts a newer model down to opset 21 (it cannot convert an op
that has no older version)::

    Attention(q, k, v, [mask, past_key, past_value])   -> attention_rewrite.py
    RotaryEmbedding(x, cos, sin, [position_ids])
        -> [Transpose | Reshape] -> Slice/Split -> x1*cos - x2*sin, x1*sin + x2*cos -> Concat
    Swish(x, alpha)   -> x * Sigmoid(alpha * x)

Ops the engine runs itself (RMSNormalization, CumProd) are parked in a private domain while
the converter runs and restored after (``park`` / ``unpark``). Any other op newer than 21 is
refused by name. Shapes come from ``onnx.shape_inference`` (ranks and head counts; the
sequence lengths are read with Shape nodes, folded at build).
"""
import functools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tx2_infer_core.attention_rewrite import attention, attr
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ops import OPS

OLD_OPSET = 21
PARK_DOMAIN = 'tx2_infer.parked'
NATIVE = ('RMSNormalization', 'CumProd')    # ops/traits.py runs them; only parked
INT_MAX = np.iinfo(np.int64).max


class Emit:
    """The opset-21 nodes (and constant initializers) that replace one newer ``node``."""

    def __init__(self, node, shapes, constants=None):
        self.node, self.shapes, self.nodes, self.weights = node, shapes, [], []
        self.constants = constants or {}    # the model's initializers, by name
        self.prefix = node.name or node.output[0]

    def __call__(self, op, inputs, n_out=1, **attrs):
        """Append ``op``; its output name (a list of them when ``n_out`` > 1)."""
        k = len(self.nodes)
        outs = [f'{self.prefix}/{k}_{op}' + (f'_{j}' if j else '') for j in range(n_out)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, f'{self.prefix}/{k}',
                                           **attrs))
        return outs[0] if n_out == 1 else outs

    def last(self, op, inputs, output, **attrs):
        """Append ``op`` writing ``output`` (an output of the replaced node)."""
        self.nodes.append(helper.make_node(op, list(inputs), [output],
                                           f'{self.prefix}/{len(self.nodes)}', **attrs))

    def const(self, value, dtype=np.int64):
        name = f'{self.prefix}/c{len(self.weights)}'
        self.weights.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def elem_type(self, name, default=TensorProto.FLOAT):
        return self.shapes.get(name, (default, None))[0] or default

    def dims(self, name):
        """The dims of ``name`` (ints, None where unknown), or None when its rank is unknown."""
        return self.shapes.get(name, (0, None))[1]

    def refuse(self, detail):
        raise UnsupportedOpError(self.node.op_type, self.prefix, OPS, detail)


def infer_shapes(model) -> dict:
    """{value: (elem type, dims or None)} by ONNX shape inference."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - inference is a hint; ranks then come from attributes
        inferred = model.graph
    shapes = {}
    for info in list(inferred.input) + list(inferred.value_info) + list(inferred.output):
        ttype = info.type.tensor_type
        dims = [d.dim_value if d.HasField('dim_value') else None for d in ttype.shape.dim] \
            if ttype.HasField('shape') else None
        shapes[info.name] = (ttype.elem_type, dims)
    for tensor in model.graph.initializer:
        shapes[tensor.name] = (tensor.data_type, list(tensor.dims))
    return shapes


def swish(e, node):
    """Swish(x) = x * Sigmoid(alpha * x)."""
    x = node.input[0]
    dtype = helper.tensor_dtype_to_np_dtype(e.elem_type(x))
    scaled = e('Mul', [x, e.const(attr(node, 'alpha', 1.0), dtype)])
    e.last('Mul', [x, e('Sigmoid', [scaled])], node.output[0])


def _rotate(e, x1, x2, cos, sin):
    real = e('Sub', [e('Mul', [cos, x1]), e('Mul', [sin, x2])])
    imag = e('Add', [e('Mul', [sin, x1]), e('Mul', [cos, x2])])
    return real, imag


def rotary_embedding(e, node):
    """RotaryEmbedding-23 as the reference computes it, on x as [batch, seq, heads, head]."""
    x, cos, sin = node.input[:3]
    pos = node.input[3] if len(node.input) > 3 else ''
    heads, rot_dim = attr(node, 'num_heads', 0), attr(node, 'rotary_embedding_dim', 0)
    dims = e.dims(x)
    rank = len(dims) if dims is not None else (3 if heads else 4)
    if rank == 3 and not heads:
        e.refuse('3-D input without num_heads')
    x4 = e('Reshape', [x, e.const([0, 0, heads, -1])]) if rank == 3 else \
        e('Transpose', [x], perm=[0, 2, 1, 3])
    rot = e('Slice', [x4, e.const([0]), e.const([rot_dim]), e.const([-1])]) if rot_dim \
        else x4
    if pos:
        cos, sin = e('Gather', [cos, pos], axis=0), e('Gather', [sin, pos], axis=0)
    cos, sin = (e('Unsqueeze', [c, e.const([2])]) for c in (cos, sin))
    axis, start, step = e.const([-1]), e.const([INT_MAX]), e.const([2])
    if attr(node, 'interleaved', 0):
        x1 = e('Slice', [rot, e.const([0]), start, axis, step])
        x2 = e('Slice', [rot, e.const([1]), start, axis, step])
        real, imag = _rotate(e, x1, x2, cos, sin)
        pairs = e('Concat', [e('Unsqueeze', [p, axis]) for p in (real, imag)], axis=-1)
        rot = e('Reshape', [pairs, e.const([0, 0, 0, -1])])
    else:
        x1, x2 = e('Split', [rot], n_out=2, axis=-1, num_outputs=2)
        rot = e('Concat', list(_rotate(e, x1, x2, cos, sin)), axis=-1)
    if rot_dim:
        rest = e('Slice', [x4, e.const([rot_dim]), start, axis])
        rot = e('Concat', [rot, rest], axis=-1)
    if rank == 3:
        e.last('Reshape', [rot, e.const([0, 0, -1])], node.output[0])
    else:
        e.last('Transpose', [rot], node.output[0], perm=[0, 2, 1, 3])


def _rewrites():
    return {'Attention': attention, 'RotaryEmbedding': rotary_embedding, 'Swish': swish}


@functools.lru_cache(maxsize=None)
def _first_versions() -> dict:
    """{op: the opset that introduced it} of the installed onnx's default domain."""
    first = {}
    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.domain == '':
            first[schema.name] = min(first.get(schema.name, schema.since_version),
                                     schema.since_version)
    return first


def first_version(op) -> int:
    """The opset that introduced ``op`` (0 for an op the installed onnx does not know)."""
    return _first_versions().get(op, 0)


def rewrite_newer_ops(model) -> onnx.ModelProto:
    """``model`` itself when no node is of an op newer than opset 21, else a copy with those
    rewritten into opset-21 ops (or parked, ``NATIVE``); refuses the others by name."""
    graph, rewrites = model.graph, _rewrites()
    newer = {i for i, n in enumerate(graph.node) if n.domain in ('', 'ai.onnx')
             and first_version(n.op_type) > OLD_OPSET}
    if not newer:
        return model
    shapes = infer_shapes(model)
    constants = {t.name: t for t in graph.initializer}
    result = onnx.ModelProto()
    result.CopyFrom(model)
    del result.graph.node[:]
    for i, node in enumerate(graph.node):
        if i not in newer:
            result.graph.node.append(node)
        elif node.op_type in NATIVE:
            parked = result.graph.node.add()
            parked.CopyFrom(node)
            parked.domain = PARK_DOMAIN
        elif node.op_type in rewrites:
            emit = Emit(node, shapes, constants)
            rewrites[node.op_type](emit, node)
            result.graph.node.extend(emit.nodes)
            result.graph.initializer.extend(emit.weights)
        else:
            Emit(node, shapes).refuse(f'{node.op_type} (opset {first_version(node.op_type)}) '
                                      'has no opset-21 form; not supported yet')
    if any(n.domain == PARK_DOMAIN for n in result.graph.node):
        result.opset_import.append(helper.make_opsetid(PARK_DOMAIN, 1))
    return result


def unpark(model) -> onnx.ModelProto:
    """Parked nodes back in the default domain, the private opset import dropped."""
    for node in model.graph.node:
        if node.domain == PARK_DOMAIN:
            node.domain = ''
    kept = [e for e in model.opset_import if e.domain != PARK_DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model
