"""ONNX ``Scan`` (opset 9 and on) unrolled at import, when its sequence length is known: the
length of each scan input along its axis, from a graph input's shape or a constant.

Step t reads element t (or, reversed, L-1-t) of each scan input (a Gather at a constant
index, the axis dropped), runs the body and carries the states; each scan output stacks its
per-step values along its axis (in reverse order for a reversed output). ::

    Scan(s0, xs)  ->  s1 = body(s0, xs[0]), s2 = body(s1, xs[1]), ...; ys = stack(y_t)

``Unroller`` (``control_flow.py``) provides the renaming, the node budget and the stacking.
"""
import numpy as np
from onnx import helper

from tx2_infer_core.errors import ModelFormatError, UnsupportedOpError
from tx2_infer_core.subgraphs import graph_attr


def scan_attributes(node) -> tuple:
    """(state count, [input axis], [input reversed], [output axis], [output reversed])."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != 'body'}
    body = graph_attr(node, 'body')
    scans = attrs.get('num_scan_inputs', 0)
    states = len(node.input) - scans
    produced = len(body.output) - states
    return (states, list(attrs.get('scan_input_axes', [0] * scans)),
            list(attrs.get('scan_input_directions', [0] * scans)),
            list(attrs.get('scan_output_axes', [0] * produced)),
            list(attrs.get('scan_output_directions', [0] * produced)))


def sequence_length(unroller, node, inputs, axes) -> int:
    """The one length of the scan ``inputs`` along their ``axes``, known at build."""
    lengths = set()
    for name, axis in zip(inputs, axes):
        shape = unroller.shapes.get(name)
        if shape is None or not -len(shape) <= axis < len(shape):
            raise UnsupportedOpError('Scan', node.name, [], (
                f"the length of scan input '{name}' is not known at build time (a graph "
                'input or a constant)'))
        lengths.add(int(shape[axis]))
    if len(lengths) != 1:
        raise UnsupportedOpError('Scan', node.name, [], f'scan inputs of lengths {lengths}')
    return lengths.pop()


def unroll_scan(unroller, node) -> list:
    """The unrolled nodes of a ``Scan`` (see the module doc)."""
    body = graph_attr(node, 'body')
    states, in_axes, in_reversed, out_axes, out_reversed = scan_attributes(node)
    if len(body.input) != len(node.input) or len(body.output) < states or states < 0:
        raise ModelFormatError(f"Scan node '{node.name}': its body does not match the node's "
                               'inputs and outputs')
    inputs = list(node.input[states:])
    steps = sequence_length(unroller, node, inputs, in_axes)
    state_in = [i.name for i in body.input[:states]]
    element_in = [i.name for i in body.input[states:]]
    state_out = [o.name for o in body.output[:states]]
    scan_out = [o.name for o in body.output[states:]]
    mapping = {}
    out = unroller.constants(body, mapping, node.name)
    carried, scans = list(node.input[:states]), [[] for _ in scan_out]
    for t in range(steps):
        prefix = f'{node.name}/{t}'
        names = dict(mapping)
        names.update(zip(state_in, carried))
        for name, inner, axis, back in zip(inputs, element_in, in_axes, in_reversed):
            index = unroller.constant(np.array(steps - 1 - t if back else t, np.int64),
                                      prefix, out)
            names[inner] = unroller.fresh(f'{prefix}/{inner}')
            out.append(helper.make_node('Gather', [name, index], [names[inner]],
                                        unroller.fresh(names[inner]), axis=axis))
        out += unroller.expand(unroller.renamed(body.node, names, prefix))
        carried = [names.get(o, o) for o in state_out]
        for k, name in enumerate(scan_out):
            scans[k].append(names.get(name, name))
        unroller.charge(node, len(body.node) + len(inputs), t + 1)
    scans = [values[::-1] if back else values for values, back in zip(scans, out_reversed)]
    out += unroller.wire(node, node.output[:states], carried)
    return out + unroller.stack(node, node.output[states:], scans, out_axes)
