"""GridSample, AffineGrid and RoiAlign (``kernels/sampling.cu``) on the GPU against the numpy
backend on the same FP16 inputs: every GridSample mode, padding and corner alignment, a spatial
transformer's warp (1x32x64x64), RT-DETR's deformable-attention sampling (a 1x256x80x80 value
map at 300 queries x 4 points), a Mask R-CNN-sized RoiAlign. ``test/core/test_cuda_sampling.py``
runs the same kernels built for the host."""
import numpy as np
import pytest

from conftest import assert_close, fp16_round, run_graph
from tx2_infer_core import reference
from tx2_infer_core.ir import Graph, Node, Value

RNG = np.random.default_rng(1415)


def graph_of(node, acts, outs, weights=None):
    values = {n: Value(n, tuple(s), d, 'NCHW' if len(s) == 4 else '')
              for n, (s, d) in {**acts, **{k: (s, 'float32') for k, s in outs.items()}}.items()}
    return Graph([node], list(acts), list(outs), values, dict(weights or {}))


def compare(label, graph, feeds, tol=3e-3):
    feeds = {k: fp16_round(v) if v.dtype.kind == 'f' else v for k, v in feeds.items()}
    want = reference.execute(graph, feeds)
    got = run_graph(graph, feeds)
    for name in graph.outputs:
        assert_close(f'{label} {name}', got[name], want[name], tol)


def grid_sample(x_shape, grid_shape, **attrs):
    n, c = x_shape[:2]
    node = Node('GridSample', 'gs', ['x', 'g'], ['y'], attrs)
    return graph_of(node, {'x': (x_shape, 'float32'), 'g': (grid_shape, 'float32')},
                    {'y': (n, c) + tuple(grid_shape[1:3])})


@pytest.mark.parametrize('mode', ['linear', 'nearest', 'cubic'])
@pytest.mark.parametrize('pad', ['zeros', 'border', 'reflection'])
@pytest.mark.parametrize('align', [0, 1])
@pytest.mark.parametrize('channels', [3, 32])
def test_grid_sample_modes(mode, pad, align, channels):
    """2x{3,32}x20x24 sampled at 2x16x18 points in [-1.3, 1.3] (some outside)."""
    graph = grid_sample((2, channels, 20, 24), (2, 16, 18, 2), mode=mode, padding_mode=pad,
                        align_corners=align)
    feeds = {'x': RNG.standard_normal((2, channels, 20, 24)).astype(np.float32),
             'g': RNG.uniform(-1.3, 1.3, (2, 16, 18, 2)).astype(np.float32)}
    compare(f'GridSample {mode} {pad} align={align} C={channels}', graph, feeds)


def test_spatial_transformer_warp():
    """AffineGrid of a runtime theta, then a bilinear GridSample of 1x32x64x64 (an STN). The
    grid between them is FP16 in the arena (steps of 1/2048 near +-1: 0.016 px at 64 px), which
    on a white-noise image is 0.8% relative L2 (H200); the oracle keeps it FP32, hence 2e-2."""
    nodes = [Node('AffineGrid', 'ag', ['theta', 'size'], ['g'], {}),
             Node('GridSample', 'gs', ['x', 'g'], ['y'], {})]
    values = {'theta': Value('theta', (1, 2, 3), 'float32', ''),
              'x': Value('x', (1, 32, 64, 64), 'float32', 'NCHW'),
              'g': Value('g', (1, 64, 64, 2), 'float32', ''),
              'y': Value('y', (1, 32, 64, 64), 'float32', 'NCHW')}
    graph = Graph(nodes, ['theta', 'x'], ['g', 'y'], values,
                  {'size': np.array([1, 32, 64, 64], np.int64)})
    feeds = {'theta': np.array([[[0.9, -0.25, 0.1], [0.2, 0.95, -0.1]]], np.float32),
             'x': RNG.standard_normal((1, 32, 64, 64)).astype(np.float32)}
    compare('STN warp 1x32x64x64', graph, feeds, tol=2e-2)


def test_rtdetr_deformable_sampling():
    """RT-DETR's decoder: a 1x256x80x80 value map sampled at 300 queries x 4 points
    (grid = 2 * location - 1, bilinear, zeros padding, align_corners=0)."""
    graph = grid_sample((1, 256, 80, 80), (1, 300, 4, 2), mode='linear', padding_mode='zeros',
                        align_corners=0)
    feeds = {'x': RNG.standard_normal((1, 256, 80, 80)).astype(np.float32),
             'g': (2 * RNG.uniform(-0.02, 1.02, (1, 300, 4, 2)) - 1).astype(np.float32)}
    compare('RT-DETR sampling 1x256x80x80 at 300x4', graph, feeds)


@pytest.mark.parametrize('mode', ['avg', 'max'])
@pytest.mark.parametrize('coord', ['half_pixel', 'output_half_pixel'])
def test_roi_align_mask_rcnn(mode, coord):
    """100 regions of two 1/16-scale 256x50x68 feature maps, 7x7 bins, 2x2 samples."""
    r = 100
    node = Node('RoiAlign', 'roi', ['x', 'rois', 'bi'], ['y'], dict(
        mode=mode, coordinate_transformation_mode=coord, output_height=7, output_width=7,
        sampling_ratio=2, spatial_scale=1 / 16))
    graph = graph_of(node, {'x': ((2, 256, 50, 68), 'float32'), 'rois': ((r, 4), 'float32'),
                            'bi': ((r,), 'int64')}, {'y': (r, 256, 7, 7)})
    corner = RNG.uniform(-20, 1000, (r, 2))
    size = RNG.uniform(8, 300, (r, 2))
    rois = np.concatenate([corner, corner + size], axis=1).astype(np.float32)
    feeds = {'x': RNG.standard_normal((2, 256, 50, 68)).astype(np.float32),
             'rois': fp16_round(rois), 'bi': RNG.integers(0, 2, r).astype(np.int64)}
    compare(f'RoiAlign {mode} {coord} 100x256x7x7', graph, feeds)
