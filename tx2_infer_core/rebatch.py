"""Build a fixed batch-1 ONNX model for a batch of N images.

Exporters that write a static batch (Ultralytics ``dynamic=False``: input ``[1, 3, 640, 640]``)
also bake the batch into the shapes of the head's ``Reshape`` nodes (``[1, 66, -1]``,
``[1, 4, 16, 8400]``). ``rebatch(model, n)`` declares the first input's batch as ``n`` and
turns a leading 1 of every constant Reshape shape into 0 ("copy the input's dimension",
ONNX's default ``allowzero=0``), which is the same reshape at batch 1 and carries the batch
through at batch N. Anything else that fixes the batch (a Concat with a batch-1 constant, a
Reshape of a computed shape) then fails the import's shape inference with the node named.
"""
import numpy as np
import onnx
from onnx import numpy_helper


def fixed_batch(model) -> int:
    """The declared batch of the first runtime input (0 when dynamic or the input is not
    batched)."""
    g = model.graph
    weights = {t.name for t in g.initializer}
    first = next((i for i in g.input if i.name not in weights), None)
    dims = [] if first is None else first.type.tensor_type.shape.dim
    return dims[0].dim_value if dims and dims[0].HasField('dim_value') else 0


def _shape_constants(model) -> dict:
    """{name: (array, proto)} of the int64 initializers and Constant nodes of the graph."""
    found = {t.name: (numpy_helper.to_array(t), t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == 'Constant' and len(node.attribute) == 1 \
                and node.attribute[0].name == 'value':
            found[node.output[0]] = (numpy_helper.to_array(node.attribute[0].t), node)
    return {k: v for k, v in found.items() if v[0].dtype == np.int64 and v[0].ndim == 1}


def _allowzero(node) -> int:
    return next((a.i for a in node.attribute if a.name == 'allowzero'), 0)


def rebatch(model, batch) -> onnx.ModelProto:
    """A copy of ``model`` (first input of fixed batch 1) built for ``batch`` images; see the
    module doc. Returns ``model`` itself when its batch is already ``batch``."""
    if fixed_batch(model) == batch:
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    weights = {t.name for t in g.initializer}
    first = next(i for i in g.input if i.name not in weights)
    first.type.tensor_type.shape.dim[0].dim_value = int(batch)
    del g.value_info[:]                 # the exporter's batch-1 shapes: inferred again
    for out in g.output:
        dims = out.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = 'batch'
    constants = _shape_constants(model)
    for k, node in enumerate(g.node):
        if node.op_type != 'Reshape' or len(node.input) < 2 or _allowzero(node):
            continue
        shape = constants.get(node.input[1])
        if shape is None or shape[0].size < 2 or shape[0][0] != 1:
            continue
        new = shape[0].copy()
        new[0] = 0                      # copy the batch from the reshaped tensor
        name = f'{node.input[1]}/rebatch_{k}'
        g.initializer.append(numpy_helper.from_array(new, name))
        node.input[1] = name
    return model
