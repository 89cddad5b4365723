"""A YOLOv8/v10-like post-process written with onnx.helper (no real YOLOv10 model is available
from the registries), for the int32 index values (``cuda/int32_values.py``) on the CPU
(``test_cuda_int32.py``) and on the GPU (``test/cuda/test_int32_index_cuda.py``)::

    scores [1,A,C] ─ReduceMax─▶ best [1,A] ─TopK K─▶ top [1,K], idx [1,K] (int64)
    idx ─Unsqueeze─▶ [1,K,1] ─Tile─▶ [1,K,4] ─GatherElements(boxes [1,A,4])─▶ boxes_k
                             ─Expand─▶ [1,K,C] ─GatherElements(scores)─▶ scores_k ─ArgMax─▶ cls
    idx ─Unsqueeze─▶ GatherND(boxes, batch_dims=1) ─▶ boxes_nd     (the same boxes)
    idx ─Mod G, Div G─▶ grid x, y ─Cast float─▶ centre = (xy + 0.5) * stride   (a float use)
    scores_k ─Reshape [1,K*C]─TopK K─▶ idx2 ─Div C─▶ anchor of K ─GatherElements(boxes_k)
                                          └─Mod C─▶ label                  (YOLOv10's second pick)
    det = Concat(boxes_k, top, Cast(cls, float))                           [1,K,6]

With A = 8400 anchors (an 80 x 80 + 40 x 40 + 20 x 20 grid) every index is past FP16's 2048.
Scores are multiples of 1/2048 in [0, 1) and boxes integers: exact in FP16, with ties (the
kernels break them by index, as the numpy reference).
"""
import numpy as np
import onnx
from onnx import TensorProto, helper

I64, F32 = TensorProto.INT64, TensorProto.FLOAT


def _const(name, values):
    return helper.make_tensor(name, I64, [len(values)], [int(v) for v in values])


def _nodes(anchors, classes, k, grid):
    mk = helper.make_node
    return [
        mk('ReduceMax', ['scores'], ['best'], axes=[2], keepdims=0),
        mk('TopK', ['best', 'k'], ['top', 'idx'], axis=1),
        mk('Unsqueeze', ['idx', 'ax2'], ['idx1']),
        mk('Tile', ['idx1', 'rep4'], ['idx4']),
        mk('GatherElements', ['boxes', 'idx4'], ['boxes_k'], axis=1),
        mk('Expand', ['idx1', 'shape_kc'], ['idx_c']),
        mk('GatherElements', ['scores', 'idx_c'], ['scores_k'], axis=1),
        mk('ArgMax', ['scores_k'], ['cls'], axis=2, keepdims=1),
        mk('GatherND', ['boxes', 'idx1'], ['boxes_nd'], batch_dims=1),
        mk('Mod', ['idx', 'grid'], ['gx']), mk('Div', ['idx', 'grid'], ['gy']),
        mk('Cast', ['gx'], ['gx_f'], to=F32), mk('Cast', ['gy'], ['gy_f'], to=F32),
        mk('Add', ['gx_f', 'half'], ['cx']), mk('Mul', ['cx', 'stride'], ['centre_x']),
        mk('Add', ['gy_f', 'half'], ['cy']), mk('Mul', ['cy', 'stride'], ['centre_y']),
        mk('Reshape', ['scores_k', 'flat'], ['scores_flat']),
        mk('TopK', ['scores_flat', 'k'], ['top2', 'idx2'], axis=1),
        mk('Div', ['idx2', 'n_cls'], ['anchor2']), mk('Mod', ['idx2', 'n_cls'], ['label2']),
        mk('Unsqueeze', ['anchor2', 'ax2'], ['anchor2_1']),
        mk('Tile', ['anchor2_1', 'rep4'], ['anchor2_4']),
        mk('GatherElements', ['boxes_k', 'anchor2_4'], ['boxes2'], axis=1),
        mk('Unsqueeze', ['top', 'ax2'], ['top1']),
        mk('Cast', ['cls'], ['cls_f'], to=F32),
        mk('Concat', ['boxes_k', 'top1', 'cls_f'], ['det'], axis=2)]


def yolo_post_model(anchors=8400, classes=80, k=300, grid=80, stride=8.0) -> onnx.ModelProto:
    """The post-process above as an opset-17 ONNX model."""
    inits = [helper.make_tensor('k', I64, [1], [k]), _const('ax2', [2]),
             _const('rep4', [1, 1, 4]), _const('shape_kc', [1, k, classes]),
             helper.make_tensor('grid', I64, [], [grid]),
             helper.make_tensor('n_cls', I64, [], [classes]),
             helper.make_tensor('half', F32, [], [0.5]),
             helper.make_tensor('stride', F32, [], [stride]), _const('flat', [1, k * classes])]
    outputs = [('det', F32, [1, k, 6]), ('idx', I64, [1, k]), ('boxes_nd', F32, [1, k, 4]),
               ('centre_x', F32, [1, k]), ('centre_y', F32, [1, k]), ('top2', F32, [1, k]),
               ('label2', I64, [1, k]), ('boxes2', F32, [1, k, 4])]
    graph = helper.make_graph(
        _nodes(anchors, classes, k, grid), 'yolo_post',
        [helper.make_tensor_value_info('scores', F32, [1, anchors, classes]),
         helper.make_tensor_value_info('boxes', F32, [1, anchors, 4])],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    onnx.checker.check_model(model)
    return model


def yolo_post_feeds(rng, anchors=8400, classes=80) -> dict:
    """Scores in multiples of 1/2048 and integer boxes: exact in FP16, with ties."""
    return {'scores': (rng.integers(0, 2048, (1, anchors, classes)) / 2048).astype(np.float32),
            'boxes': rng.integers(0, 640, (1, anchors, 4)).astype(np.float32)}


def yolo_post_graph(tmp_path, **sizes):
    """The post-process imported and optimised as a cuda build is (pass level 3)."""
    from tx2_infer_core.engine_build import import_model
    from tx2_infer_core.passes import POINTWISE_LEVEL, optimize
    path = tmp_path / 'yolo_post.onnx'
    onnx.save(yolo_post_model(**sizes), path)
    graph = import_model(path)
    return optimize(graph, POINTWISE_LEVEL)[0]
