"""Crafted plan files whose node attributes or detector head are bad while every offset, dtype
and value is valid (the checksum recomputed): refused at load with PlanFileError naming the
node and the attribute, or the head field; never a TypeError in the decoder on a frame."""
import numpy as np
import pytest

from test_plan_file_hostile import crafted, node, plan  # noqa: F401 - plan is a fixture
from tx2_infer_core import assets
from tx2_infer_core.detector import Detector
from tx2_infer_core.engine import Engine, import_model
from tx2_infer_core.errors import PlanFileError
from tx2_infer_core.passes import fuse_pointwise, optimize, run_pass
from tx2_infer_core.planner import ALIGNMENT, plan_memory


def attr(name, key, new):
    def edit(header):
        node(header, name)['attrs'][key] = new
    return edit


def head(key, new, layer=None):
    def edit(header):
        target = header['graph']['meta']['head']
        target = target if layer is None else target['layers'][layer]
        target[key] = new
    return edit


# yolov3-tiny: conv_0 FusedConv 3x3 (weight [16, 3, 3, 3]), pool_1 MaxPool, route_20 Concat
CASES = {
    'negative stride': (attr('conv_0', 'strides', [-1, 1]), "'conv_0'.*strides.*below 1"),
    'zero dilation': (attr('conv_0', 'dilations', [1, 0]), "'conv_0'.*dilations"),
    'kernel_shape not the weight': (attr('conv_0', 'kernel_shape', [5, 5]),
                                    "'conv_0'.*kernel_shape.*does not match the weight"),
    'pads of the wrong length': (attr('conv_0', 'pads', [1, 1]),
                                 "'conv_0'.*pads.*not a list of 4 ints"),
    'negative pads': (attr('conv_0', 'pads', [-1, 0, 0, 0]), "'conv_0'.*pads.*below 0"),
    'unknown activation': (attr('conv_0', 'activation', 'Bogus'),
                           "'conv_0'.*activation.*'Bogus'"),
    'group 0': (attr('conv_0', 'group', 0), "'conv_0'.*group"),
    'alpha not a number': (attr('conv_0', 'alpha', 'x'), "'conv_0'.*alpha"),
    'alpha nan': (attr('conv_0', 'alpha', float('nan')), "'conv_0'.*alpha"),
    'auto_pad unknown': (attr('conv_0', 'auto_pad', 'SOMETIMES'), "'conv_0'.*auto_pad"),
    'pool stride negative': (attr('pool_1', 'strides', [-2, 2]), "'pool_1'.*strides"),
    'pool kernel a string': (attr('pool_1', 'kernel_shape', 'ab'), "'pool_1'.*kernel_shape"),
    'pool ceil_mode 7': (attr('pool_1', 'ceil_mode', 7), "'pool_1'.*ceil_mode"),
    'concat axis a string': (attr('route_20', 'axis', '1'), "'route_20'.*axis"),
    'head not an object': (lambda h: h['graph']['meta'].update(head=5), 'head.*not an object'),
    'head type unknown': (head('type', 'nope'), "head.*type 'nope'"),
    'num_classes a string': (head('num_classes', 'x'), 'head.*num_classes'),
    'num_classes vs output': (head('num_classes', 79), r'head.*79 classes.*\[1, 252, H, W\]'),
    'layers not a list': (head('layers', 5), 'head.*layers'),
    'layer stride negative': (head('stride', -32, layer=0), r'head.*layers\[0\]\.stride'),
    'layer stride pair zero': (head('stride', [32, 0], layer=1), r'layers\[1\]\.stride'),
    'anchors not pairs': (head('anchors', [[1, 2, 3]], layer=0), r'layers\[0\]\.anchors'),
    'anchor nan': (head('anchors', [[81, float('nan')], [1, 1], [1, 1]], layer=0), 'anchors'),
    'fewer anchors': (head('anchors', [[81, 82]], layer=0),
                      r'1 anchors and 80 classes expect .*conv_15'),
    'layer output unknown': (head('output', 'nope', layer=0), r"layers\[0\]\.output 'nope'"),
    'scale_x_y zero': (head('scale_x_y', 0, layer=0), 'scale_x_y'),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_crafted_attribute_or_head_is_refused_at_load(plan, tmp_path, case):  # noqa: F811
    edit, message = CASES[case]
    path = crafted(plan, tmp_path, edit)
    with pytest.raises(PlanFileError, match=message) as info:
        Engine.load(path)
    assert str(path) in str(info.value)


@pytest.fixture(scope='module')
def pointwise_plan(tmp_path_factory):
    """MTCNN ONet (real weights) with its bias Add + PRelu chain fused into a FusedPointwise
    node, saved for the numpy backend (level 2, then fuse_pointwise: a cuda build, level 3,
    puts that bias into the GEMM instead, fuse_linear)."""
    graph = import_model(assets.fetch('mtcnn-onet.onnx'))
    graph.meta['head'] = {'type': 'none'}
    graph, _ = optimize(graph, 2)
    run_pass(graph, fuse_pointwise)
    fused = [n for n in graph.nodes if n.op == 'FusedPointwise']
    assert len(fused) == 1 and len(fused[0].inputs) == 3
    path = tmp_path_factory.mktemp('pointwise') / 'onet.tx2plan'
    options = {'precision': 'fp32', 'backend': 'cpu', 'model': 'mtcnn-onet.onnx'}
    Engine(graph, plan_memory(graph, ALIGNMENT), options, 'numpy').save(path)
    return path, fused[0].name


def program(text):
    def edit(header):
        fused = next(n for n in header['graph']['nodes'] if n['op'] == 'FusedPointwise')
        fused['attrs']['program'] = text
    return edit


@pytest.mark.parametrize('text, message', [
    ('[["Add", ["x0", "x1"], {}', 'not valid JSON'),
    ('[' * 50000, 'not valid JSON'),
    ('[]', 'non-empty list'),
    ('{"Add": 1}', 'non-empty list'),
    ('[["Add", ["x0", "x1"]]]', r'step 0 is not \[op'),
    ('[["Conv", ["x0", "x1"], {}]]', "'Conv' is not a pointwise op"),
    ('[["Add", ["x0", "x7"], {}]]', "argument 'x7'"),
    ('[["Add", ["x0", "t0"], {}]]', "argument 't0'"),
    ('[["Add", ["x0", "y1"], {}]]', "argument 'y1'"),
    ('[["Add", ["x0", 1e999], {}]]', "argument 'inf'"),
])
def test_crafted_pointwise_program_is_refused_at_load(pointwise_plan, tmp_path, text,
                                                      message):
    path, name = pointwise_plan
    bad = crafted(path, tmp_path, program(text))
    with pytest.raises(PlanFileError, match=f"'{name}'.*program.*{message}"):
        Engine.load(bad)


def test_the_good_plans_still_load_and_run(plan, pointwise_plan):  # noqa: F811
    engine = Engine.load(plan)
    Detector(engine).warm_up()
    onet = Engine.load(pointwise_plan[0])
    outputs = onet.run(np.zeros(onet.input_specs[0].shape, np.float32))
    assert all(np.isfinite(y).all() for y in outputs.values())
