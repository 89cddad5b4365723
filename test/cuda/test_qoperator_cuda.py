"""An int8 (zero point 0) QLinearConv between quantisation boundaries on the CUDA backend, the
one QOperator form it lowers (test/core/test_qoperator_requantize.py checks the launches):
level 3 folds the exact requantisation's multiplier into the FP16 conv weights
(``passes/requantize.py``), so the int8 boundaries run with scale 1 around the conv. Against
ONNX Runtime: within one quantum everywhere, and off by one on few outputs (an FP16
emulation of the conv's output rounding: 6.9% of the 4096)."""
import numpy as np
import onnx
import onnxruntime as ort

from conftest import core_module
from tx2_infer_core.engine import Engine

chain = core_module('qlinear_int8_chain')


def test_int8_qlinear_conv_within_one_quantum_of_onnxruntime(tmp_path):
    model, feeds = chain.int8_chain('QLinearConv')
    path = tmp_path / 'int8_chain.onnx'
    onnx.save(model, str(path))
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    want = session.run(None, feeds)[0]
    engine = Engine.build(path, backend='cuda')
    try:
        got = engine.run(feeds)['y']
    finally:
        engine.close()
    quanta = np.rint(np.abs(got.astype(np.float64) - want) / chain.Y_SCALE)
    print(f'int8 QLinearConv on CUDA: {int((quanta > 0).sum())} of {quanta.size} outputs one '
          'quantum off ONNX Runtime')
    assert quanta.max() <= 1
    assert (quanta > 0).mean() <= 0.15
