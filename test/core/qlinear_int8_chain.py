"""A float model with one symmetric int8 QLinear op between quantisation boundaries, the form
the CUDA lowering takes (int8, zero point 0)::

    x (float) -> QuantizeLinear(xs, 0) -> QLinearConv | QLinearMatMul -> DequantizeLinear -> y

Shared by test_qoperator_requantize.py and test/cuda/test_qoperator_cuda.py.
"""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

Y_SCALE = 0.05


def int8_chain(op, seed=0):
    """(model, feeds): ``op`` 'QLinearConv' (8 -> 16 channels, 3x3, pad 1, bias) over a
    [1, 8, 16, 16] input or 'QLinearMatMul' over [1, 64, 128] by [128, 32]; per-channel
    weight scales."""
    rng = np.random.default_rng(seed)
    conv = op == 'QLinearConv'
    shape, w_shape = ((1, 8, 16, 16), (16, 8, 3, 3)) if conv else ((1, 64, 128), (128, 32))
    channels = w_shape[0] if conv else w_shape[1]
    inits = {'s': np.float32(0.02), 'z': np.int8(0),
             'w': rng.integers(-127, 128, w_shape).astype(np.int8),
             'ws': rng.uniform(0.001, 0.01, channels).astype(np.float32),
             'wz': np.zeros(channels, np.int8), 'ys': np.float32(Y_SCALE)}
    inputs = ['xq', 's', 'z', 'w', 'ws', 'wz', 'ys', 'z']
    attrs = {}
    if conv:
        inits['B'] = rng.integers(-3000, 3000, channels).astype(np.int32)
        inputs.append('B')
        attrs = {'pads': [1, 1, 1, 1]}
    nodes = [helper.make_node('QuantizeLinear', ['x', 's', 'z'], ['xq']),
             helper.make_node(op, inputs, ['yq'], **attrs),
             helper.make_node('DequantizeLinear', ['yq', 'ys', 'z'], ['y'])]
    graph = helper.make_graph(
        nodes, 'int8_chain', [helper.make_tensor_value_info('x', TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 21)],
                              ir_version=10)
    return model, {'x': rng.normal(0, 1, shape).astype(np.float32)}
