"""The QLinear ops' exact requantisation (``qoperator_rewrite.requantized``: int32 Cast,
DequantizeLinear by ORT's multiplier) through the passes: the cpu levels keep it after the
integer sum; level 3 (``passes/requantize.py``) writes it as a Mul folded into the weights, so
the CUDA lowering of an int8 (zero point 0) QLinear op is what it was before the exact form:
the same launches, within one quantum of ONNX Runtime in FP32 (the level-3 graph on the numpy
reference). The pass declines a Cast of sums that may not be integers.
"""
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.onnx_import import graph_from_model
from tx2_infer_core.passes import optimize, requantize_in_float, run_pass
from tx2_infer_core.reference import execute

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qlinear_int8_chain import Y_SCALE, int8_chain  # noqa: E402

CPU_OPS = {'QLinearConv': ['QuantizeLinear', 'DequantizeLinear', 'FusedConv', 'Cast',
                           'DequantizeLinear', 'QuantizeLinear', 'DequantizeLinear'],
           'QLinearMatMul': ['QuantizeLinear', 'DequantizeLinear', 'MatMul', 'Cast',
                             'DequantizeLinear', 'QuantizeLinear', 'DequantizeLinear']}
# the launches before the exact form (parent commit, measured): the conv runs on CUDA; the
# MatMul's 3-D int8 input is refused at its QuantizeLinear, by name, as before
CUDA_KERNELS = {90: ['quantize_nhwc', 'dequantize_nhwc', 'conv_mma_64x64_cl', 'quantize_nhwc',
                     'dequantize_nhwc'],
                62: ['quantize_nhwc', 'dequantize_nhwc', 'conv_simt_h2_v8', 'quantize_nhwc',
                     'dequantize_nhwc']}


@pytest.mark.parametrize('op', ['QLinearConv', 'QLinearMatMul'])
def test_level_3_folds_the_multiplier_and_lowers_as_before(op):
    model, feeds = int8_chain(op)
    graph = graph_from_model(model)
    assert [n.op for n in optimize(graph, 2)[0].nodes] == CPU_OPS[op]
    fp16, report = optimize(graph, 3)
    assert report['requantize_in_float'] == 1
    product = 'FusedConv' if op == 'QLinearConv' else 'MatMul'
    assert [n.op for n in fp16.nodes] == ['QuantizeLinear', 'DequantizeLinear', product,
                                          'QuantizeLinear', 'DequantizeLinear']
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=['CPUExecutionProvider']).run(None, feeds)[0]
    got = execute(fp16, feeds)['y']
    assert np.abs(got - want).max() <= Y_SCALE * 1.001      # FP32: within one quantum
    for arch, kernels in CUDA_KERNELS.items():
        if op == 'QLinearMatMul':
            with pytest.raises(UnsupportedOpError, match="QuantizeLinear_0.*not an NCHW image"):
                lower_graph(fp16, arch)
        else:
            assert [launch.kernel for launch in lower_graph(fp16, arch).launches] == kernels


def _cast_after_conv(x_dtype, w):
    """x -> Conv(w) -> Cast int32 -> DequantizeLinear(0.5) -> y; x a float graph input or a
    DequantizeLinear by scale 1 of an int8 input."""
    values = {'x': Value('x', (1, 2, 4, 4), x_dtype), 'xf': Value('xf', (1, 2, 4, 4), 'float32'),
              'acc': Value('acc', (1, 3, 4, 4), 'float32'),
              'acc32': Value('acc32', (1, 3, 4, 4), 'int32'),
              'y': Value('y', (1, 3, 4, 4), 'float32')}
    nodes = [Node('Conv', 'conv', ['xf', 'w'], ['acc'], {'pads': [1, 1, 1, 1]}),
             Node('Cast', 'cast', ['acc'], ['acc32'], {'to': 6}),
             Node('DequantizeLinear', 'dq', ['acc32', 'm'], ['y'])]
    weights = {'w': w, 'm': np.float32(0.5), 'one': np.float32(1)}
    if x_dtype == 'float32':
        nodes[0].inputs[0] = 'x'
        values.pop('xf')
    else:
        nodes.insert(0, Node('DequantizeLinear', 'in', ['x', 'one'], ['xf']))
    return Graph(nodes, ['x'], ['y'], values, weights)


def test_requantize_in_float_takes_integer_sums_only():
    """A Cast of a conv over a float input (or by non-integer weights) truncates: kept."""
    integers = np.arange(54, dtype=np.float32).reshape(3, 2, 3, 3) - 27
    assert run_pass(_cast_after_conv('int8', integers), requantize_in_float) == 1
    assert run_pass(_cast_after_conv('float32', integers), requantize_in_float) == 0
    assert run_pass(_cast_after_conv('int8', integers + 0.5), requantize_in_float) == 0
