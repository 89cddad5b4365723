"""An op no backend will run is refused with what to do about it (NMS inside the model, random
and sequence ops), through the real importer."""
import onnx
import pytest
from onnx import TensorProto, helper

from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import HINTS, UnsupportedOpError


def _nms_model(path):
    boxes = helper.make_tensor_value_info('boxes', TensorProto.FLOAT, [1, 10, 4])
    scores = helper.make_tensor_value_info('scores', TensorProto.FLOAT, [1, 1, 10])
    out = helper.make_tensor_value_info('sel', TensorProto.INT64, [None, 3])
    node = helper.make_node('NonMaxSuppression', ['boxes', 'scores'], ['sel'], name='nms')
    graph = helper.make_graph([node], 'nms', [boxes, scores], [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]), path)


def test_nms_in_the_model_is_refused_with_the_export_hint(tmp_path):
    path = tmp_path / 'nms.onnx'
    _nms_model(path)
    with pytest.raises(UnsupportedOpError, match=r"'NonMaxSuppression' at node 'nms' \(its "
                                                 r'output size depends.*nms=False'):
        Engine.build(path)


def test_a_given_detail_wins_over_the_hint():
    err = UnsupportedOpError('Unique', 'u', ['Add'], 'axis=7')
    assert '(axis=7)' in str(err) and 'depends' not in str(err)


def test_every_hinted_op_is_one_the_engine_lacks():
    from tx2_infer_core.ops import traits
    assert not set(HINTS) & set(traits.onnx_ops())
    assert all(len(hint) > 20 for hint in HINTS.values())
