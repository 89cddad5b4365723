"""Helpers over ONNX GraphProtos that hold subgraphs (for ``control_flow.py``): the names a
graph defines and reads, renaming the outer-scope names a subgraph reads, a loop body's
invariant nodes, and a NodeProto as an IR Node to compute with at build time.

ONNX names are never shadowed: a subgraph's own names differ from every name outside it.
"""
import numpy as np
import onnx
from onnx import helper, numpy_helper

from tx2_infer_core.errors import ModelFormatError
from tx2_infer_core.ir import Node

GRAPH_TYPES = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


def invariant_nodes(body, fixed) -> set:
    """Indices of the body nodes that read only constants, outer values and the names in
    ``fixed`` (carried values passed through unchanged), directly or through each other."""
    defined = {i.name for i in body.input} | {o for n in body.node for o in n.output}
    fixed = fixed | {t.name for t in body.initializer}
    found = set()
    for k, node in enumerate(body.node):
        if has_graph(node) or any(i in defined and i not in fixed for i in node.input if i):
            continue
        fixed.update(node.output)
        found.add(k)
    return found


def names_read(graph) -> set:
    """Every name the nodes of ``graph`` (and its subgraphs) read, and its outputs."""
    names = {o.name for o in graph.output}
    for node in graph.node:
        names.update(node.input)
        for sub in subgraphs(node):
            names |= names_read(sub)
    return names


def graph_attr(node, name) -> onnx.GraphProto:
    """The graph attribute ``name`` of ``node``."""
    for attr in node.attribute:
        if attr.name == name and attr.type == onnx.AttributeProto.GRAPH:
            return attr.g
    raise ModelFormatError(f"{node.op_type} node '{node.name}' has no graph attribute "
                           f"'{name}'")


def has_graph(node) -> bool:
    """Whether ``node`` has a graph attribute (If, Loop, Scan, ...)."""
    return any(a.type in GRAPH_TYPES for a in node.attribute)


def subgraphs(node):
    """The graphs held by ``node``'s attributes."""
    for attr in node.attribute:
        yield from [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs


def collect_names(graph, names):
    """Every value and node name of ``graph`` and its subgraphs, into the set ``names``."""
    names.update(i.name for i in graph.input)
    names.update(t.name for t in graph.initializer)
    for node in graph.node:
        names.add(node.name)
        names.update(node.output)
        for sub in subgraphs(node):
            collect_names(sub, names)


def rename_free(graph, mapping):
    """Rename, in place, the names a subgraph (and the subgraphs in it) reads through
    ``mapping``: its own names are never in ``mapping`` (ONNX names are not shadowed)."""
    for node in graph.node:
        node.input[:] = [mapping.get(i, i) for i in node.input]
        for sub in subgraphs(node):
            rename_free(sub, mapping)
    for output in graph.output:
        output.name = mapping.get(output.name, output.name)


def ir_node(proto, max_elements):
    """``proto`` as an IR Node to compute with, or None when an attribute is a graph, an
    external tensor or a tensor of more than ``max_elements``."""
    attrs = {}
    for attr in proto.attribute:
        tensor = attr.t if attr.type == onnx.AttributeProto.TENSOR else None
        if attr.type in GRAPH_TYPES or tensor is not None and (
                tensor.data_location == onnx.TensorProto.EXTERNAL or
                np.prod(tensor.dims, dtype=np.int64) > max_elements):
            return None
        value = helper.get_attribute_value(attr)
        if isinstance(value, bytes):
            value = value.decode('utf-8')
        elif isinstance(value, onnx.TensorProto):
            value = numpy_helper.to_array(value)
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode('utf-8') for v in value]
        attrs[attr.name] = value
    return Node(proto.op_type, proto.name, list(proto.input), list(proto.output), attrs)
