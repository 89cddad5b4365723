"""An INT8 schedule as a standard QDQ ONNX model (the format ONNX Runtime and TensorRT read).

For each INT8 layer of the schedule, the float model (``onnx_export.to_onnx`` of the optimised
graph) gets::

    x -> QuantizeLinear(x_scale, int8 0) -> DequantizeLinear -> Conv -> ...
    w_q (int8) -> DequantizeLinear(w_scales, axis=0) ----------^
    b_q (int32) -> DequantizeLinear(x_scale * w_scales, axis=0) ^

with the very numbers of the numpy emulation (``int8/quant_math.py``): per-output-channel
weight scales, int32 bias in the accumulator's scale, one Q/DQ pair per activation tensor.
ONNX Runtime runs it with its own integer kernels: an independent check of our scales (close to
our emulation, not bit-exact: it requantises in its own order), and a file users can take to
other runtimes.
"""
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from tx2_infer_core.int8 import quant_math
from tx2_infer_core.onnx_export import to_onnx
from tx2_infer_core.passes.quantize import decline_reason


def _initializer(model, name, array):
    model.graph.initializer.append(numpy_helper.from_array(np.asarray(array), name))
    return name


def _activation_qdq(model, x, scale, done) -> str:
    """The dequantised name of activation ``x`` at ``scale`` (one Q/DQ pair per tensor and
    scale), adding the nodes to ``done`` on first use."""
    key = (x, float(np.float32(scale)))
    if key not in done:
        tag = f'{x}.qdq{len(done)}'
        s = _initializer(model, f'{tag}.scale', np.float32(scale))
        z = _initializer(model, f'{tag}.zero_point', np.int8(0))
        done[key] = (f'{tag}.dq', [
            helper.make_node('QuantizeLinear', [x, s, z], [f'{tag}.q'], name=f'{tag}.Q'),
            helper.make_node('DequantizeLinear', [f'{tag}.q', s, z], [f'{tag}.dq'],
                             name=f'{tag}.DQ')])
    return done[key]


def _weight_nodes(model, graph, node, lq):
    """(w input, b input, nodes): the per-channel DQ of the int8 weights and int32 bias."""
    w = np.asarray(graph.weights[node.inputs[1]], np.float32)
    w_scales = (np.asarray(lq.w_scales, np.float32) if lq.w_scales is not None
                else quant_math.weight_scales(w))
    tag, nodes = node.name, []
    w_q = _initializer(model, f'{tag}.w_q', quant_math.quantize_weights(w, w_scales))
    w_s = _initializer(model, f'{tag}.w_scale', w_scales)
    w_z = _initializer(model, f'{tag}.w_zero_point', np.zeros(len(w_scales), np.int8))
    nodes.append(helper.make_node('DequantizeLinear', [w_q, w_s, w_z], [f'{tag}.w_dq'],
                                  name=f'{tag}.w_DQ', axis=0))
    b_name = node.inputs[2] if len(node.inputs) > 2 else ''
    if not b_name:
        return f'{tag}.w_dq', '', nodes
    b = graph.weights[b_name]
    dq, _ = quant_math.requant_multipliers(lq.x_scale, w_scales)
    b_q = _initializer(model, f'{tag}.b_q', quant_math.quantize_bias(b, lq.x_scale, w_scales))
    b_s = _initializer(model, f'{tag}.b_scale', dq)
    b_z = _initializer(model, f'{tag}.b_zero_point', np.zeros(len(dq), np.int32))
    nodes.append(helper.make_node('DequantizeLinear', [b_q, b_s, b_z], [f'{tag}.b_dq'],
                                  name=f'{tag}.b_DQ', axis=0))
    return f'{tag}.w_dq', f'{tag}.b_dq', nodes


def _drop_unused_initializers(model):
    used = {name for n in model.graph.node for name in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def to_qdq_onnx(graph, schedule) -> onnx.ModelProto:
    """The QDQ ONNX model of optimised ``graph`` (FusedConv nodes) with ``schedule``'s INT8
    layers ({name: LayerQuant}; layers the quantize pass declines stay float)."""
    model = to_onnx(graph)
    nodes = {n.name: n for n in graph.nodes}
    chosen = {name: lq for name, lq in schedule.items()
              if lq.int8 and name in nodes and not decline_reason(graph, nodes[name], lq)}
    done, out = {}, []
    for proto in model.graph.node:
        name = proto.name[:-len('.conv')] if proto.name.endswith('.conv') else None
        if name not in chosen or proto.op_type != 'Conv':
            out.append(proto)
            continue
        node, lq = nodes[name], chosen[name]
        x_dq, qdq = _activation_qdq(model, node.inputs[0], lq.x_scale, done)
        if qdq:
            out.extend(qdq)
            done[(node.inputs[0], float(np.float32(lq.x_scale)))] = (x_dq, [])
        w_in, b_in, w_nodes = _weight_nodes(model, graph, node, lq)
        out.extend(w_nodes)
        del proto.input[:]
        proto.input.extend([x_dq, w_in] + ([b_in] if b_in else []))
        out.append(proto)
    del model.graph.node[:]
    model.graph.node.extend(out)
    _drop_unused_initializers(model)
    onnx.checker.check_model(model, full_check=True)
    return model


def save_qdq_onnx(graph, schedule, path) -> Path:
    """Write ``to_qdq_onnx`` to ``path``; returns the path."""
    path = Path(path)
    onnx.save(to_qdq_onnx(graph, schedule), str(path))
    return path


def ort_session(model):
    """An ONNX Runtime CPU session of a QDQ model (all graph optimisations on)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=['CPUExecutionProvider'])
