"""Graph passes on the three real models, whole: the expected rewrite counts, same outputs.

Each model is optimised and compared with the unoptimised graph on a real photo through the
reference interpreter (helpers shared with ``test_passes.py``).
"""
from test_passes import assert_same_outputs, photo
from tx2_infer_core import assets
from tx2_infer_core.onnx_import import load_onnx
from tx2_infer_core.passes import optimize


def _readers(graph, op):
    consumers = graph.consumers()
    return [n for n in graph.nodes
            if n.op == 'Conv' and any(c.op == op for c in consumers.get(n.outputs[0], []))]


def test_yolov8_every_conv_fused_with_silu_and_residuals(yolov8):
    before = yolov8.summary()
    optimised, report = optimize(yolov8)
    after = optimised.summary()
    assert 'Conv' not in after and after['FusedConv'] == before['Conv'] == 64
    silu = [n for n in optimised.nodes if n.attrs.get('activation') == 'SiLU']
    assert report['fuse_conv_activation'] == len(silu) == len(_readers(yolov8, 'Sigmoid')) == 57
    assert report['fuse_residual_add'] == 6        # the C2f bottlenecks with a shortcut
    assert all(n.attrs['residual_after_act'] == 1 for n in silu if len(n.inputs) > 3)
    assert after['Concat'] == before['Concat']     # Concat is the planner's business
    assert yolov8.summary() == before              # the caller's graph is untouched
    assert_same_outputs(yolov8, optimised, {'images': photo('bus.jpg', (1, 3, 640, 640))})


def test_open_nsfw_resnet_collapses_to_fused_convs():
    graph = load_onnx(assets.fetch('open_nsfw.onnx'))
    before = graph.summary()
    optimised, report = optimize(graph)
    after = optimised.summary()
    assert after['FusedConv'] == before['Conv'] == 53
    assert 'Cast' not in after and 'Relu' not in after and 'Sub' not in after
    assert after['Transpose'] <= 2 < before['Transpose']
    assert report['fuse_residual_add'] == 16       # one per bottleneck block
    assert report['fuse_conv_activation'] + report['fuse_residual_add'] == before['Relu']
    assert len(optimised.nodes) < len(graph.nodes) / 10
    x = photo('astronaut.png', graph.values[graph.inputs[0]].shape)
    assert_same_outputs(graph, optimised, {graph.inputs[0]: x})


def test_yolov3_tiny_batchnorm_folded_and_leaky_fused(yolov3):
    before = yolov3.summary()
    optimised, report = optimize(yolov3)
    assert report['fold_batchnorm'] == before['BatchNormalization'] == 11
    assert report['fuse_conv_activation'] == before['LeakyRelu'] == 11
    assert optimised.summary() == {'FusedConv': 13, 'MaxPool': 6, 'Resize': 1, 'Concat': 1}
    assert optimised.outputs == yolov3.outputs
    x = photo('dog.jpg', yolov3.values[yolov3.inputs[0]].shape)
    assert_same_outputs(yolov3, optimised, {'images': x})
