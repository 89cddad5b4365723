"""The INT8 kernels (kernels/conv_int8*.cu) against the numpy emulation (ops/quant.py) on the
layers of real models: YOLOv3-tiny and open_nsfw (ResNet-50) quantised with the pure maths
(real weights, min-max scales), each layer fed the real activation it sees on a real photo.

Per layer: x (fp16-exact float) -> QuantizeLinear -> FusedConvInt8 [-> DequantizeLinear] -> y
on both paths (dp4a forced, integer mma). Int8 outputs are compared as integers (recovered
exactly from the dequantised fp16), float outputs after the fp16 rounding the arena does:
bit-exact for identity/Relu/LeakyRelu/Clip, within one unit for SiLU/Sigmoid (``__expf``)."""
import dataclasses
import functools
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import TOLERANCE_LINES, assert_close
from tx2_infer_core.backends.cuda_backend import CudaBackend
from tx2_infer_core.cuda import cluster, lower_int8
from tx2_infer_core.cuda.lower_conv import MMA_TILES as CONV_TILES
from tx2_infer_core.errors import Tx2InferError
from tx2_infer_core.ir import Node, Value
from tx2_infer_core.reference import execute

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
import int8_models as im  # noqa: E402

PATHS = ['dp4a', 'mma']
EXACT = ('', 'Relu', 'LeakyRelu', 'Clip')
ACTS = [('', {}), ('Relu', {}), ('LeakyRelu', {'alpha': 0.1}),
        ('Clip', {'clip_min': 0.0, 'clip_max': 6.0}), ('Sigmoid', {}), ('SiLU', {})]
MMA_TILES = [t[:2] for t in CONV_TILES]


@functools.lru_cache(maxsize=None)
def model_cases(model):
    graph = im.yolov3_tiny(416) if model == 'yolov3-tiny' else im.open_nsfw()
    feeds = im.photo_feeds(graph)
    qgraph, _ = im.quantised(graph, feeds)
    return qgraph, feeds[0], {c[0]: c for c in im.layer_cases(qgraph, feeds[0])}


def run(graph, feeds, path, arch=None):
    """(y, kernel names) of ``graph`` on the CUDA backend with ``int8_path=path`` (the
    device's sm appended to list ``arch`` when given)."""
    backend = CudaBackend(int8_path=path)
    try:
        backend.prepare(graph)
    except Tx2InferError as err:
        if 'sm_80' in str(err):
            pytest.skip('integer mma needs sm_80')
        raise
    try:
        if arch is not None:
            arch.append(backend.arch)
        return backend.run(feeds)['y'], [k.kernel for k in backend.launches]
    finally:
        backend.close()


def check(label, graph, y, ref, activation):
    """Compare the GPU output ``y`` with the emulation's ``ref`` (int8 or float32) and log
    one line: exact for the exact activations, one unit (int8) / 1 fp16 ulp otherwise."""
    tol = 0 if activation in EXACT else 1
    conv = next(n for n in graph.nodes if n.op == 'FusedConvInt8')
    if ref.dtype == np.int8:
        scale = np.float32(conv.attrs['out_scale'])
        got = np.rint(y.astype(np.float64) / scale)
        diff = np.abs(got - ref.astype(np.float64))
        unit = 'int8 unit'
    else:
        want = ref.astype(np.float16)
        ulp = np.spacing(np.abs(want)).astype(np.float64)
        diff = np.abs(y.astype(np.float16).astype(np.float64) - want.astype(np.float64)) / ulp
        unit = 'fp16 ulp'
    worst, bad = float(diff.max()), int((diff > 0).sum())
    line = (f'{label}: {bad} of {diff.size} differ, max {worst:g} {unit}, tolerance '
            f"{tol} {unit}: {'ok' if worst <= tol else 'FAIL'}")
    TOLERANCE_LINES.append(line)
    print(line)
    assert worst <= tol, line


# Every FusedConvInt8 of the quantised models: YOLOv3-tiny's by name, open_nsfw's 53 by index
# (the ids stay stable without quantising at collection time).
TINY_LAYERS = ['conv_0', 'conv_2', 'conv_4', 'conv_6', 'conv_8', 'conv_10', 'conv_12',
               'conv_13', 'conv_14', 'conv_15', 'conv_18', 'conv_21', 'conv_22']
NSFW_LAYERS = 53


def all_layers():
    return [('yolov3-tiny', n) for n in TINY_LAYERS] + [('open_nsfw', i)
                                                        for i in range(NSFW_LAYERS)]


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('model,layer', all_layers(),
                         ids=[f'{m}:{n}' for m, n in all_layers()])
def test_real_layer_matches_emulation(model, layer, path):
    _, _, cases = model_cases(model)
    if isinstance(layer, int):
        if layer >= len(cases):
            pytest.skip(f'{model} has {len(cases)} int8 layers')
        layer = list(cases)[layer]
    name, graph, feeds, _, ref = cases[layer]
    y, kernels = run(graph, feeds, path)
    conv = graph.nodes[1]
    cg = graph.weights[conv.inputs[1]].shape[1]
    want_mma = path == 'mma' and cg % 16 == 0
    assert any(k.startswith('conv_i8_mma') for k in kernels) == want_mma, kernels
    check(f'{model} {name} {path} {kernels[1]}', graph, y, ref,
          conv.attrs.get('activation', ''))


def variant(model, layer, out_int8=True, int8_residual=False, **attrs):
    """A real layer with other attributes (activation...), its numpy reference recomputed;
    ``out_int8``: an int8 output with out_scale from the float result."""
    _, _, cases = model_cases(model)
    name, graph, feeds, x_q, _ = cases[layer]
    conv = graph.nodes[1]
    node = dataclasses.replace(conv, attrs=dict(conv.attrs, out_scale=0.0, **attrs))
    weights = {n: graph.weights[n] for n in node.inputs[1:3] if n}
    res = ('r', feeds['r'].shape, 'float32') if 'r' in feeds else None
    y_shape = graph.values[conv.outputs[0]].shape
    g = im.one_conv_graph(node, weights, x_q.shape, y_shape, 'float32', res)
    if out_int8:
        y_float = execute(g, feeds)['y']
        out_scale = float(np.float32(max(float(np.abs(y_float).max()), 1e-3) / 127))
        node = dataclasses.replace(node, attrs=dict(node.attrs, out_scale=out_scale))
        g = im.one_conv_graph(node, weights, x_q.shape, y_shape, 'int8', res)
    if int8_residual:
        _quantise_residual(g, feeds['r'])
    ref = execute(g, feeds, keep_all=True)
    return g, feeds, ref['y_q' if out_int8 else 'y']


def _quantise_residual(g, r):
    """r (float input) -> QuantizeLinear -> r_q (int8) as the conv's residual."""
    scale = np.float32(float(np.abs(r).max()) / 127)
    g.weights.update(r_scale=np.array(scale, np.float32), r_zp=np.array(0, np.int8))
    for n in ('r_scale', 'r_zp'):
        g.values[n] = Value(n, (), g.weights[n].dtype.name, '')
    g.values['r_q'] = Value('r_q', r.shape, 'int8', 'NCHW')
    g.nodes.insert(1, Node('QuantizeLinear', 'quantize_r', ['r', 'r_scale', 'r_zp'], ['r_q']))
    conv = g.nodes[2]
    conv.inputs[3] = 'r_q'
    conv.attrs['residual_scale'] = float(scale)


def _residual_layer(model='open_nsfw'):
    _, _, cases = model_cases(model)
    return next(n for n, c in cases.items() if 'r' in c[2])


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('out_int8', [True, False], ids=['int8_out', 'fp16_out'])
@pytest.mark.parametrize('act', ACTS, ids=[a[0] or 'identity' for a in ACTS])
def test_activations_on_real_layers(act, out_int8, path):
    """Every exact and transcendental activation on a YOLOv3-tiny 3x3 layer and on an
    open_nsfw layer with its real residual (before and after the activation)."""
    name, attrs = act
    for model, layer, extra in (('yolov3-tiny', 'conv_4', {}),
                                ('open_nsfw', _residual_layer(), {'residual_after_act': 0}),
                                ('open_nsfw', _residual_layer(), {'residual_after_act': 1})):
        g, feeds, ref = variant(model, layer, out_int8, activation=name, **attrs, **extra)
        y, kernels = run(g, feeds, path)
        check(f'{model} {layer} {name or "identity"} {extra} {path} {kernels[1]}', g, y, ref,
              name)


@pytest.mark.parametrize('path', PATHS)
def test_int8_residual(path):
    layer = _residual_layer()
    for after in (0, 1):
        g, feeds, ref = variant('open_nsfw', layer, True, True, activation='Relu',
                                residual_after_act=after)
        y, kernels = run(g, feeds, path)
        check(f'open_nsfw {layer} int8 residual after={after} {path}', g, y, ref, 'Relu')


def grouped(groups, channels):
    """A grouped 3x3 layer cut from YOLOv3-tiny conv_4's real weights (64 outputs) and its
    real input's first ``channels`` channels."""
    _, _, cases = model_cases('yolov3-tiny')
    _, graph, feeds, x_q, _ = cases['conv_4']
    conv = graph.nodes[1]
    w = graph.weights[conv.inputs[1]]
    cg = channels // groups
    w_g = np.ascontiguousarray(w[:, :cg])
    node = dataclasses.replace(conv, attrs=dict(conv.attrs, group=groups, out_scale=0.0))
    weights = {conv.inputs[1]: w_g, conv.inputs[2]: graph.weights[conv.inputs[2]]}
    x = feeds['x'][:, :channels].copy()
    g = im.one_conv_graph(node, weights, x.shape, (1, w.shape[0]) + x.shape[2:], 'float32')
    return g, {'x': x}, execute(g, {'x': x})['y']


@pytest.mark.parametrize('path', PATHS)
@pytest.mark.parametrize('groups,channels', [(2, 32), (4, 32), (8, 32), (8, 24), (4, 24)],
                         ids=['g2_cg16', 'g4_cg8', 'g8_cg4', 'g8_cg3_bytes', 'g4_cg6_bytes'])
def test_groups(groups, channels, path):
    g, feeds, ref = grouped(groups, channels)
    y, kernels = run(g, feeds, path)
    check(f'yolov3-tiny conv_4 groups={groups} C={channels} {path} {kernels[1]}', g, y, ref,
          'LeakyRelu')


@pytest.mark.parametrize('mode', cluster.SPLITK_MODES)
@pytest.mark.parametrize('splits', [1, 3, 8])
@pytest.mark.parametrize('tile', MMA_TILES, ids=[f'{m}x{n}' for m, n in MMA_TILES])
def test_mma_tiles_and_splits(tile, splits, mode, monkeypatch):
    """Every conv_i8_mma tile, with and without split-K (a second launch, or on sm_90 one
    cluster launch), on a real stride-2 open_nsfw layer with its residual (the tile forced)."""
    _, _, cases = model_cases('open_nsfw')
    layer = next(n for n, c in cases.items()
                 if c[1].nodes[1].attrs.get('strides', [1, 1])[0] == 2
                 and c[1].weights[c[1].nodes[1].inputs[1]].shape[1] % 16 == 0)
    g, feeds, ref = variant('open_nsfw', layer, True, activation='Relu')
    threads = tile[0] * tile[1] // 32
    monkeypatch.setattr(lower_int8, 'mma_config',
                        lambda *a, **k: (tile[0], tile[1], threads, splits))
    monkeypatch.setenv('TX2_INFER_SPLITK', mode)
    arch = []
    y, kernels = run(g, feeds, 'mma', arch)
    in_cluster = bool(cluster.cluster_of(arch[0], tile[0], tile[1], splits))
    assert kernels[1] == f'conv_i8_mma_{tile[0]}x{tile[1]}' + ('_cl' if in_cluster else '')
    assert ('conv_i8_splitk_reduce' in kernels) == (splits > 1 and not in_cluster)
    check(f'open_nsfw {layer} tile {tile} splits={splits}', g, y, ref, 'Relu')


@pytest.mark.parametrize('path', PATHS)
def test_whole_yolov3_tiny_int8_graph(path):
    """The quantised YOLOv3-tiny (every conv int8, int8 links between convs) through the CUDA
    backend vs the numpy emulation on a real photo: fp16 float parts, so a quantisation
    boundary may flip a unit; compared by relative L2 error."""
    qgraph, feeds, _ = model_cases('yolov3-tiny')
    backend = CudaBackend(int8_path=path)
    try:
        backend.prepare(qgraph)
    except Tx2InferError as err:
        if 'sm_80' in str(err):
            pytest.skip('integer mma needs sm_80')
        raise
    try:
        out = backend.run(feeds)
        kernels = {k.kernel for k in backend.launches}
    finally:
        backend.close()
    assert any(k.startswith('conv_i8_mma') for k in kernels) == (path == 'mma')
    ref = execute(qgraph, feeds)
    for name in qgraph.outputs:
        assert_close(f'yolov3-tiny int8 {path} {name}', out[name], ref[name], 3e-2)
