"""The tensor-core conv with a 2x2 stride-2 MaxPool in its epilogue (``conv_mma*_pool_*``,
cuda/pool_epilogue.py) against the numpy oracle: YOLOv3-tiny on real photos, and small graphs
for the cases it does not reach (batch 2, a channel tail, the gather loader, a residual, the
conv's map read elsewhere too, the pooled map inside a Concat, split K in a cluster)."""
import numpy as np
import pytest

from conftest import assert_close, run_graph
from tx2_infer_core import assets, detect, reference
from tx2_infer_core.backends.cuda_backend import CudaBackend
from tx2_infer_core.engine import Engine
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.passes import POINTWISE_LEVEL, optimize

RNG = np.random.default_rng(7)
POOL = dict(kernel_shape=[2, 2], strides=[2, 2])


def pooled_kernels(backend) -> list:
    return [k.kernel for k in backend.launches if '_pool_' in k.kernel]


def test_yolov3_tiny_photos_match_cpu_with_pools_in_conv_epilogues():
    import cv2
    cfg, weights, _ = assets.yolov3_tiny()
    cpu = Engine.build(str(cfg), backend='numpy')
    gpu = Engine.build(str(cfg), backend='cuda', precision='fp16')
    try:
        assert len(pooled_kernels(gpu.backend)) == 5
        shape = cpu.input_specs[0].shape
        for photo in assets.fetch_photos()[:4]:
            x, _ = detect.preprocess(cv2.imread(str(photo)), shape, cpu.meta.get('input_format'))
            ref, out = cpu.run(x), gpu.run(x)
            for name in ref:
                assert_close(f'yolov3-tiny pooled {photo.name} {name}', out[name], ref[name],
                             2e-2)
    finally:
        cpu.close()
        gpu.close()


def pool_graph(c_in, k, n=2, h=10, w=14, act=True, keep=False, residual=False, concat=False):
    """x (n, c_in, h, w) -> Conv 3x3 pads 1 (+ LeakyRelu) (+ r) -> c -> MaxPool 2x2/2 -> z;
    ``keep``: c is an output too; ``concat``: z is concatenated with a pooled input."""
    weights = {'w': (RNG.standard_normal((k, c_in, 3, 3)) / np.sqrt(9 * c_in)).astype(
        np.float32), 'b': RNG.standard_normal(k).astype(np.float32)}
    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [Node('Conv', 'conv', ['x', 'w', 'b'], ['c0'], conv)]
    last = 'c0'
    if act:
        nodes.append(Node('LeakyRelu', 'act', [last], ['c1'], dict(alpha=0.1)))
        last = 'c1'
    if residual:
        nodes.append(Node('Add', 'res', [last, 'r'], ['c2']))
        last = 'c2'
    nodes.append(Node('MaxPool', 'pool', [last], ['z'], dict(POOL)))
    outputs = ['z']
    values = {'x': Value('x', (n, c_in, h, w)), 'r': Value('r', (n, k, h, w))}
    if concat:
        nodes += [Node('MaxPool', 'pool_x', ['x'], ['zx'], dict(POOL)),
                  Node('Concat', 'cat', ['zx', 'z'], ['zc'], dict(axis=1))]
        outputs = ['zc']
    if keep:
        outputs.append(last)
    inputs = ['x', 'r'] if residual else ['x']
    graph = Graph(nodes, inputs, outputs, {k_: values[k_] for k_ in inputs}, weights)
    reference.infer_shapes(graph)
    return optimize(graph, POINTWISE_LEVEL)[0]


CASES = {'rows': dict(c_in=16, k=24), 'gather': dict(c_in=3, k=16),
         'tail': dict(c_in=8, k=20, n=1), 'keep': dict(c_in=16, k=16, keep=True),
         'residual': dict(c_in=16, k=16, residual=True), 'noact': dict(c_in=16, k=8, act=False),
         'concat': dict(c_in=8, k=16, concat=True),
         # one 64x64 tile, K = 2304: split K, the splits summed in a cluster (sm_90)
         'cluster': dict(c_in=256, k=64, n=1, h=8, w=8),
         'cluster_keep': dict(c_in=256, k=40, n=1, h=8, w=8, keep=True, residual=True)}


@pytest.mark.parametrize('splitk', ['cluster', 'launch'])  # launch: split layers in one pass
@pytest.mark.parametrize('case', sorted(CASES))
def test_pooled_conv_matches_the_oracle(case, splitk, monkeypatch):
    monkeypatch.setenv('TX2_INFER_SPLITK', splitk)
    graph = pool_graph(**CASES[case])
    feeds = {name: RNG.standard_normal(graph.values[name].shape).astype(np.float32)
             for name in graph.inputs}
    ref = reference.execute(graph, feeds)
    backend = CudaBackend()
    backend.prepare(graph)
    try:
        kernels = pooled_kernels(backend)
        assert len(kernels) == 1, [k.kernel for k in backend.launches]
        if case.startswith('cluster') and backend.ctx.arch >= 90:
            assert kernels[0].endswith('_cl') == (splitk == 'cluster'), kernels
        out = backend.run(feeds)
        for name in graph.outputs:
            assert_close(f'pooled conv {case} {splitk} {name}', out[name], ref[name], 5e-3)
    finally:
        backend.close()


def test_pool_epilogue_off_gives_the_same_detections(monkeypatch):
    """$TX2_INFER_POOL_EPILOGUE=off (separate MaxPool launches) and the fused form agree."""
    cfg, weights, _ = assets.yolov3_tiny()
    from tx2_infer_core.engine_build import import_model
    graph = optimize(import_model(str(cfg), (1, 3, 416, 416), str(weights)),
                     POINTWISE_LEVEL)[0]
    import cv2
    photo = assets.fetch_photos()[0]
    x = {graph.inputs[0]: detect.preprocess(cv2.imread(str(photo)), (1, 3, 416, 416),
                                            graph.meta.get('input_format'))[0]}
    fused = run_graph(graph, x)
    monkeypatch.setenv('TX2_INFER_POOL_EPILOGUE', 'off')
    apart = run_graph(graph, x)
    for name in fused:
        assert_close(f'yolov3-tiny pool epilogue on vs off {name}', fused[name], apart[name],
                     2e-3)
