"""A real quantised model: ppocr-cls (MobileNetV3) through ONNX Runtime's
``quantize_static(QuantFormat.QOperator)``, calibrated on three real photos, run on four others
by our numpy and ort backends (QLinearConv/QLinearMatMul written in QDQ form at import) and by
ONNX Runtime. Every quantised layer's uint8 output is compared (within one quantum on at most
0.1% of the elements: measured, none differ), the float output closely, top-1 equal.
"""
import dataclasses
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.onnx_import import load_onnx
from tx2_infer_core.passes import optimize

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
import zoo_data  # noqa: E402
from test_qoperator import assert_within_one_quantum  # noqa: E402

quantization = pytest.importorskip('onnxruntime.quantization')
MODEL = zoo_data.BY_NAME['ppocr-cls']
CALIBRATION = ['dog.jpg', 'bus.jpg', 'zidane.jpg']
EVALUATION = ['horses.jpg', 'person.jpg', 'giraffe.jpg', 'kite.jpg']
QLINEAR = ('QLinearConv', 'QLinearMatMul')


def photos(names):
    return [zoo_data.photo_tensor(dataclasses.replace(MODEL, photo=p)) for p in names]


class Calibration(quantization.CalibrationDataReader):
    """The calibration photos, one feed at a time."""

    def __init__(self, input_name):
        self.feeds = iter([{input_name: x} for x in photos(CALIBRATION)])

    def get_next(self):
        return next(self.feeds, None)


def quantized_model(folder, weight_type, per_channel) -> tuple:
    """(path, input name, quantised layer outputs) of ppocr-cls in QOperator form, every
    QLinear node's output also a graph output."""
    source, _ = zoo_data.model_files(MODEL)
    input_name = onnx.load(str(source)).graph.input[0].name
    path = folder / 'q.onnx'
    quantization.quantize_static(
        str(source), str(path), Calibration(input_name),
        quant_format=quantization.QuantFormat.QOperator, per_channel=per_channel,
        activation_type=quantization.QuantType.QUInt8, weight_type=weight_type,
        op_types_to_quantize=['Conv', 'MatMul'])  # (others become com.microsoft ops)
    model = onnx.load(str(path))
    layers = [n.output[0] for n in model.graph.node if n.op_type in QLINEAR]
    model.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.UINT8, None)
                              for name in layers)
    onnx.save(model, str(path))
    return path, input_name, layers


@pytest.fixture(scope='module')
def quantized(tmp_path_factory):
    path, input_name, layers = quantized_model(tmp_path_factory.mktemp('q'),
                                               quantization.QuantType.QInt8, True)
    return path, input_name, layers


@pytest.mark.parametrize('weight_type', ['QInt8', 'QUInt8'])
@pytest.mark.parametrize('per_channel', [True, False])
@pytest.mark.parametrize('backend', ['numpy', 'ort'])
def test_quantized_ppocr_cls_matches_onnxruntime(weight_type, per_channel, backend, tmp_path):
    path, input_name, layers = quantized_model(
        tmp_path, getattr(quantization.QuantType, weight_type), per_channel)
    assert len(layers) > 20
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    engine = Engine.build(path, input_shape=MODEL.input_shape, backend=backend)
    for x in photos(EVALUATION):
        want = dict(zip(names, session.run(names, {input_name: x})))
        got = engine.run({input_name: x})
        for name in layers:
            assert_within_one_quantum(got[name], want[name], name)
        probs, ref = got[names[0]], want[names[0]]
        np.testing.assert_allclose(probs, ref, atol=1e-5)
        assert probs.argmax() == ref.argmax()
    engine.close()


def test_quantized_model_is_float_ops_around_quantize_boundaries(quantized):
    """After the rewrite and the passes no QOperator op is left, the convolutions are float
    FusedConvs; on the cpu levels every layer's sum is requantised exactly (an int32 Cast
    each: no layer's sums may reach 2**24); the CUDA lowering refuses the uint8
    QuantizeLinear by name (its int8 boundary kernels take int8, zero point 0, NHWC images
    only)."""
    path, _, layers = quantized
    cpu, _ = optimize(load_onnx(path, input_shape=MODEL.input_shape), 2)
    assert sum(n.op == 'Cast' and n.attrs['to'] == TensorProto.INT32
               for n in cpu.nodes) == len(layers)
    graph, _ = optimize(load_onnx(path, input_shape=MODEL.input_shape), 3)
    ops = {n.op for n in graph.nodes}
    assert not ops & {'QLinearConv', 'QLinearMatMul'}
    assert 'FusedConv' in ops and 'Conv' not in ops
    assert all(graph.weights[n.inputs[1]].dtype == np.float32
               for n in graph.nodes if n.op == 'FusedConv')
    with pytest.raises(UnsupportedOpError, match="'QuantizeLinear'"):
        lower_graph(graph, 90)
