"""The QDQ ONNX export of an INT8 schedule (tx2_infer_core/int8/qdq_export.py), run by ONNX
Runtime against our numpy emulation on real photos (YOLOv3-tiny at 128x128)."""
import numpy as np
import pytest

import int8_cases

from tx2_infer_core.int8 import calibrate as cal
from tx2_infer_core.int8 import frames as fr
from tx2_infer_core.int8 import sensitivity as sens
from tx2_infer_core.int8.build import build_quantized
from tx2_infer_core.int8.qdq_export import ort_session, to_qdq_onnx
from tx2_infer_core.reference import execute


@pytest.fixture(scope='module')
def tiny():
    graph, _, _ = int8_cases.yolov3_tiny()
    frames = fr.default_frames(video_frames_each=1)
    calib = fr.input_feeds(frames.calibration[:3], graph)
    held = fr.input_feeds(frames.held_out[:3], graph)
    thresholds = cal.calibrate(graph, calib, 'minmax', show=lambda it, *a: it)[0]
    return graph, held, sens.full_schedule(graph, thresholds)


def test_qdq_model_has_per_channel_weights_and_one_pair_per_tensor(tiny):
    graph, _, schedule = tiny
    model = to_qdq_onnx(graph, schedule)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count('Conv') == 13
    assert ops.count('QuantizeLinear') == len(cal.conv_inputs(graph)) == 12   # shared input
    weight_dq = [n for n in model.graph.node if n.name.endswith('.w_DQ')]
    assert len(weight_dq) == 13
    assert all(a.name == 'axis' and a.i == 0 for n in weight_dq for a in n.attribute)


def test_onnx_runtime_runs_it_close_to_our_emulation(tiny):
    graph, held, schedule = tiny
    session = ort_session(to_qdq_onnx(graph, schedule))
    quantized, _ = build_quantized(graph, schedule)
    exact = 0
    for feeds in held:
        theirs = dict(zip(graph.outputs, session.run(graph.outputs, feeds)))
        ours, fp32 = execute(quantized, feeds), execute(graph, feeds)
        for name in graph.outputs:
            gap = np.abs(theirs[name] - ours[name]).mean()
            int8_error = np.abs(ours[name] - fp32[name]).mean()
            assert gap < 0.5 * int8_error, (name, gap, int8_error)
            exact += bool(np.abs(theirs[name] - ours[name]).max() < 1e-3)
    assert exact >= 2       # most frames: the same integers (ORT requantises in its own order)


def test_a_partial_schedule_leaves_the_other_convs_float(tiny):
    graph, held, schedule = tiny
    part = {n: schedule[n] for n in ('conv_2', 'conv_13')}
    model = to_qdq_onnx(graph, part)
    assert [n.op_type for n in model.graph.node].count('QuantizeLinear') == 2
    theirs = ort_session(model).run(graph.outputs, held[1])
    ours = execute(build_quantized(graph, part)[0], held[1])
    for name, value in zip(graph.outputs, theirs):
        np.testing.assert_allclose(value, ours[name], atol=1e-3)
