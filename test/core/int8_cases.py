"""The small real model the INT8 tests share: YOLOv3-tiny (Darknet, real weights) at a small
input, optimised (FusedConv) as the INT8 pass expects."""
from tx2_infer_core import assets
from tx2_infer_core.engine import default_meta, import_model
from tx2_infer_core.passes import optimize


def yolov3_tiny(size=128):
    """(optimised graph, cfg path, weights path) of YOLOv3-tiny at ``size`` x ``size``."""
    cfg, weights, _ = assets.yolov3_tiny()
    graph = import_model(cfg, (1, 3, size, size), weights)
    default_meta(graph)
    return optimize(graph, 2)[0], cfg, weights


def ort_run(graph, feeds, outputs, opset=21):
    """Run an onnx GraphProto with ONNX Runtime, its graph optimisations off (the oracle
    computes each op as written)."""
    import onnxruntime as ort
    from onnx import helper
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])
    model.ir_version = 10
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=['CPUExecutionProvider'])
    return session.run(list(outputs), feeds)
