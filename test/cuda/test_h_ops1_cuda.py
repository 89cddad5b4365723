"""Issue 14's comparison, logic, selection and data movement ops on the GPU against the numpy
backend, each alone (no passes: the graph as given) on real shapes: an attention mask
(Where with finfo.min, a fully masked row, then Softmax), comparisons and logic ops after an
NHWC image op, NaN/inf cleaning, Mod both ways, Sum/Mean/Max/Min of many broadcast inputs,
Expand (nudenet's anchor grid, ViT's class token), Tile, DepthToSpace after a Conv (ESPCN's
sub-pixel layer), SpaceToDepth into a Conv (YOLOv5's Focus), CastLike, Trilu over attention
scores, EyeLike; then a chain through the passes (fused and standalone launches together).
``test/core/test_cuda_logic.py`` and ``test_cuda_movement.py`` check the same lowerings without
a GPU. Moved and selected values are exact (FP16 in, the same FP16 out)."""
import numpy as np
import pytest

from conftest import assert_close, core_module, fp16_round, run_graph
from tx2_infer_core import reference
from tx2_infer_core.ir import Node
from tx2_infer_core.passes import POINTWISE_LEVEL, optimize

RNG = np.random.default_rng(114)


graph_of = core_module('scatter_cases').graph_of  # float32 unless dtypes say; 4-D NCHW


def compare(label, graph, feeds, tol=3e-3):
    """Every output on the GPU within ``tol`` of the numpy backend."""
    got, want = run_graph(graph, feeds), reference.execute(graph, feeds)
    for name in graph.outputs:
        assert_close(f'{label} {name}', got[name], np.asarray(want[name], np.float32), tol)


def exact(graph, feeds):
    """Every output on the GPU equal to the numpy backend's (bools as 0/1)."""
    got, want = run_graph(graph, feeds), reference.execute(graph, feeds)
    for name in graph.outputs:
        np.testing.assert_array_equal(got[name], np.asarray(want[name], np.float32),
                                      err_msg=name)


def normal(shape, scale=1.0):
    return fp16_round(RNG.standard_normal(shape) * scale)


# Comparison, logic and selection --------------------------------------------------------------

def test_attention_mask_with_finfo_min():
    """BERT-base scores masked by Where(mask, s, finfo(float32).min), row 5 fully masked, then
    Softmax: -65504 on the GPU, uniform rows as in FP32 (not NaN)."""
    s = (1, 12, 128, 128)
    mask = np.tril(np.ones((128, 128), bool))[None, None]
    mask[..., 5, :] = False
    nodes = [Node('Where', 'mask', ['m', 'x', 'lo'], ['a']),
             Node('Softmax', 'softmax', ['a'], ['y'], {'axis': -1})]
    graph = graph_of(nodes, {'m': mask.shape, 'x': s, 'a': s, 'y': s}, ['m', 'x'], ['y'],
                     {'lo': np.array(np.finfo(np.float32).min, np.float32)}, {'m': 'bool'})
    compare('attention mask', graph, {'m': mask, 'x': normal(s, 3)})


def test_comparisons_and_logic_after_an_image_op():
    """Each op alone over an NHWC image (a per-channel threshold tensor too), every bool an
    output: exact (FP16 inputs, FP16-exact thresholds)."""
    s = (1, 64, 56, 56)
    nodes = [Node('MaxPool', 'img', ['x'], ['p'], {'kernel_shape': [1, 1]}),
             Node('Greater', 'gt', ['p', 'half'], ['a']),
             Node('LessOrEqual', 'le', ['p', 'hi'], ['b']),
             Node('And', 'and', ['a', 'b'], ['c']), Node('Not', 'not', ['c'], ['d']),
             Node('Xor', 'xor', ['a', 'd'], ['e']), Node('Or', 'or', ['e', 'b'], ['f']),
             Node('Equal', 'eq', ['p', 'q'], ['g']), Node('Less', 'lt', ['q', 'p'], ['h']),
             Node('GreaterOrEqual', 'ge', ['p', 'q'], ['k'])]
    bools = 'abcdefghk'
    graph = graph_of(nodes, dict({'x': s, 'p': s, 'q': s}, **{v: s for v in bools}),
                     ['x', 'q'], list(bools),
                     {'half': np.array(0.5, np.float32), 'hi': normal((64, 1, 1))},
                     {v: 'bool' for v in bools})
    x = fp16_round(np.round(RNG.standard_normal(s) * 4) / 4)  # ties for Equal
    exact(graph, {'x': x, 'q': fp16_round(np.round(RNG.standard_normal(s) * 4) / 4)})


def test_nan_and_inf_cleaning():
    x = normal((8, 1000))
    x.reshape(-1)[::7], x.reshape(-1)[::11], x.reshape(-1)[::13] = np.nan, -np.inf, np.inf
    nodes = [Node('IsNaN', 'nan', ['x'], ['m']), Node('Where', 'w0', ['m', 'zero', 'x'], ['q']),
             Node('IsInf', 'neg', ['q'], ['n'], {'detect_positive': 0}),
             Node('Where', 'w1', ['n', 'big', 'q'], ['y']), Node('IsInf', 'inf', ['y'], ['i'])]
    shapes = {v: (8, 1000) for v in 'xmqnyi'}
    graph = graph_of(nodes, shapes, ['x'], ['y', 'i', 'm'],
                     {'zero': np.array(0, np.float32), 'big': np.array(-1e3, np.float32)},
                     {'m': 'bool', 'n': 'bool', 'i': 'bool'})
    exact(graph, {'x': x})


def test_where_with_constant_conditions():
    """A constant bool mask (a weight, broadcast over the batch and the heads) selecting an
    activation or a per-column tensor, then a size-1 constant condition: exact."""
    s = (2, 12, 64, 64)
    nodes = [Node('Where', 'w0', ['c', 'x', 'z'], ['a']),
             Node('Where', 'w1', ['t', 'x', 'a'], ['y'])]
    graph = graph_of(nodes, {'x': s, 'z': (64,), 'a': s, 'y': s}, ['x', 'z'], ['y', 'a'],
                     {'c': RNG.standard_normal((64, 64)) > 0, 't': np.array(False)})
    exact(graph, {'x': normal(s), 'z': normal(64)})


@pytest.mark.parametrize('fmod', [0, 1])
def test_mod_of_positions(fmod):
    """Mod by a literal and by a per-column tensor (no zero divisor)."""
    s = (1, 256, 64)
    d = fp16_round(RNG.uniform(1, 9, 64) * np.sign(RNG.standard_normal(64)))
    nodes = [Node('Mod', 'by7', ['x', 'seven'], ['a'], {'fmod': fmod}),
             Node('Mod', 'byd', ['x', 'd'], ['b'], {'fmod': fmod})]
    graph = graph_of(nodes, {'x': s, 'a': s, 'b': s}, ['x'], ['a', 'b'],
                     {'seven': np.array(7.0, np.float32), 'd': d})
    compare(f'Mod fmod={fmod}', graph, {'x': fp16_round(RNG.uniform(-50, 50, s))}, 1e-3)


def test_sum_mean_max_min_of_many_broadcast_inputs():
    """Sum of 3 over an NHWC image, Mean of 10 (two chained launches), Max and Min of 3."""
    img = (1, 64, 56, 56)
    row = [f'r{k}' for k in range(10)]
    nodes = [Node('MaxPool', 'img', ['x'], ['p'], {'kernel_shape': [1, 1]}),
             Node('Sum', 'sum', ['p', 'c', 'hw'], ['s']),
             Node('Mean', 'mean', row, ['m']),
             Node('Max', 'max', ['r0', 'r1', 'col'], ['mx']),
             Node('Min', 'min', ['col', 'r2', 'r3'], ['mn'])]
    shapes = dict({'x': img, 'p': img, 's': img, 'hw': (1, 1, 56, 56), 'm': (4, 1000),
                   'mx': (4, 1000), 'mn': (4, 1000), 'col': (4, 1)},
                  **{r: (4, 1000) if k % 3 else (1000,) for k, r in enumerate(row)})
    graph = graph_of(nodes, shapes, ['x', 'hw', 'col'] + row, ['s', 'm', 'mx', 'mn'],
                     {'c': normal((64, 1, 1))})
    feeds = {n: normal(shapes[n]) for n in ['x', 'hw', 'col'] + row}
    compare('variadic', graph, feeds)


# Data movement ---------------------------------------------------------------------------------

def test_expand_anchor_grid_and_class_token():
    """nudenet-320n's anchor grid (40 x 1 and 1 x 40 to 40 x 40), ViT's class token
    (1 x 1 x 384 to 8 x 1 x 384), an NHWC image expanded over a batch."""
    nodes = [Node('Expand', 'gy', ['ay', 'grid'], ['y0']),
             Node('Expand', 'gx', ['ax', 'grid'], ['y1']),
             Node('Expand', 'cls', ['t', 'batch'], ['y2']),
             Node('MaxPool', 'img', ['x'], ['p'], {'kernel_shape': [1, 1]}),
             Node('Expand', 'imgs', ['p', 'four'], ['y3'])]
    shapes = {'ay': (40, 1), 'ax': (1, 40), 'y0': (40, 40), 'y1': (40, 40), 't': (1, 1, 384),
              'y2': (8, 1, 384), 'x': (1, 24, 20, 20), 'p': (1, 24, 20, 20),
              'y3': (4, 24, 20, 20)}
    weights = {'grid': np.array([40, 40]), 'batch': np.array([8, 1, 384]),
               'four': np.array([4, 1, 1, 1])}
    graph = graph_of(nodes, shapes, ['ay', 'ax', 't', 'x'], ['y0', 'y1', 'y2', 'y3'], weights)
    exact(graph, {n: normal(shapes[n]) for n in graph.inputs})


def test_tile():
    """The ONNX node test's shape (every dim tiled: five launches), a feature map tiled 2x2 per
    image, an NHWC image tiled over the batch."""
    nodes = [Node('Tile', 't0', ['a', 'r0'], ['y0']), Node('Tile', 't1', ['b', 'r1'], ['y1']),
             Node('MaxPool', 'img', ['x'], ['p'], {'kernel_shape': [1, 1]}),
             Node('Tile', 't2', ['p', 'r2'], ['y2'])]
    shapes = {'a': (2, 3, 4, 5), 'y0': (14, 18, 16, 10), 'b': (1, 16, 32, 32),
              'y1': (1, 32, 64, 64), 'x': (1, 24, 20, 20), 'p': (1, 24, 20, 20),
              'y2': (3, 24, 20, 20)}
    weights = {'r0': np.array([7, 6, 4, 2]), 'r1': np.array([1, 2, 2, 2]),
               'r2': np.array([3, 1, 1, 1])}
    graph = graph_of(nodes, shapes, ['a', 'b', 'x'], ['y0', 'y1', 'y2'], weights)
    exact(graph, {n: normal(shapes[n]) for n in graph.inputs})


@pytest.mark.parametrize('mode', ['DCR', 'CRD'])
def test_depth_to_space_sub_pixel(mode):
    """ESPCN's last layer: Conv to 27 channels (NHWC) -> DepthToSpace(3) -> 1 x 3 x 192 x 192;
    and a row-major DepthToSpace(4) alone (exact)."""
    w = normal((27, 8, 3, 3), 0.2)
    nodes = [Node('Conv', 'conv', ['x', 'w'], ['c'], {'pads': [1, 1, 1, 1]}),
             Node('DepthToSpace', 'ps', ['c'], ['y'], {'blocksize': 3, 'mode': mode})]
    graph = graph_of(nodes, {'x': (1, 8, 64, 64), 'c': (1, 27, 64, 64), 'y': (1, 3, 192, 192)},
                     ['x'], ['y'], {'w': w})
    compare(f'DepthToSpace {mode} after Conv', graph, {'x': normal((1, 8, 64, 64))})
    alone = graph_of([Node('DepthToSpace', 'd2s', ['x'], ['y'], {'blocksize': 4, 'mode': mode})],
                     {'x': (1, 48, 32, 32), 'y': (1, 3, 128, 128)}, ['x'], ['y'])
    exact(alone, {'x': normal((1, 48, 32, 32))})


@pytest.mark.parametrize('mode', ['DCR', 'CRD'])
def test_space_to_depth_focus(mode):
    """YOLOv5's Focus: 1 x 3 x 320 x 320 -> SpaceToDepth(2) -> Conv 3x3 to 32 channels (NHWC);
    and alone (exact)."""
    w = normal((32, 12, 3, 3), 0.2)
    nodes = [Node('SpaceToDepth', 'focus', ['x'], ['s'], {'blocksize': 2, 'mode': mode}),
             Node('Conv', 'conv', ['s', 'w'], ['y'], {'pads': [1, 1, 1, 1]})]
    shapes = {'x': (1, 3, 320, 320), 's': (1, 12, 160, 160), 'y': (1, 32, 160, 160)}
    graph = graph_of(nodes, shapes, ['x'], ['y'], {'w': w})
    compare(f'SpaceToDepth {mode} into Conv', graph, {'x': normal(shapes['x'])})
    alone = graph_of([nodes[0]], {'x': shapes['x'], 's': shapes['s']}, ['x'], ['s'])
    exact(alone, {'x': normal(shapes['x'])})


def test_cast_like_trilu_eye_like():
    """CastLike to float16, Trilu over attention scores (lower from the diagonal, upper from
    k = 1), EyeLike below the diagonal: exact."""
    s = (1, 12, 128, 128)
    nodes = [Node('CastLike', 'cast', ['x', 'half'], ['c']),
             Node('Trilu', 'lower', ['s'], ['lo'], {'upper': 0}),
             Node('Trilu', 'upper', ['s', 'one'], ['up'], {'upper': 1}),
             Node('EyeLike', 'eye', ['e'], ['i'], {'k': -3})]
    shapes = {'x': (4, 1000), 'c': (4, 1000), 's': s, 'lo': s, 'up': s, 'e': (64, 80),
              'i': (64, 80)}
    graph = graph_of(nodes, shapes, ['x', 's', 'e'], ['c', 'lo', 'up', 'i'],
                     {'half': np.zeros(1, np.float16), 'one': np.array(1)})
    exact(graph, {n: normal(shapes[n]) for n in graph.inputs})


def test_logic_through_the_passes():
    """Where(x > 0, x, 0.1 x) fuses into one FusedPointwise; a Mod, an IsNaN and a Sum stay
    standalone generated launches around it."""
    s = (1, 32, 40, 40)
    nodes = [Node('MaxPool', 'img', ['x'], ['p'], {'kernel_shape': [1, 1]}),
             Node('Greater', 'gt', ['p', 'zero'], ['g']), Node('Mul', 'mul', ['p', 'k'], ['m']),
             Node('Where', 'where', ['g', 'p', 'm'], ['w']),
             Node('Mod', 'mod', ['w', 'three'], ['r'], {'fmod': 1}),
             Node('IsNaN', 'nan', ['r'], ['n']), Node('Sum', 'sum', ['r', 'w', 'p'], ['y'])]
    graph = graph_of(nodes, dict({v: s for v in 'xpgmwrny'}), ['x'], ['y', 'n'],
                     {'zero': np.array(0, np.float32), 'k': np.array(0.1, np.float32),
                      'three': np.array(3.0, np.float32)}, {'g': 'bool', 'n': 'bool'})
    fused, _ = optimize(graph.copy(), POINTWISE_LEVEL)
    assert 'FusedPointwise' in [n.op for n in fused.nodes]
    assert {'Mod', 'IsNaN', 'Sum'} <= {n.op for n in fused.nodes}
    feeds = {'x': normal(s, 4)}
    got, want = run_graph(fused, feeds), reference.execute(graph, feeds)
    assert_close('passes y', got['y'], want['y'], 3e-3)
    np.testing.assert_array_equal(got['n'], want['n'].astype(np.float32))
