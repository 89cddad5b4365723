"""GridSample, AffineGrid and RoiAlign on CUDA (``cuda/lower_sampling.py``) without a GPU.

Their launches run ``kernels/sampling.cu`` itself, built for the host (``sampling_host.py``),
over the FP16 arena: every mode, padding and corner alignment against the numpy ops, the
8-channel and 1-channel kernels, channel slices in and out, grids and regions as activations
or constants, and every ONNX node case of these ops (passed, or refused by name). The lowering
is the same for sm_62 as for sm_90; what the kernels cannot do is refused naming the node.
"""
from pathlib import Path

import numpy as np
import pytest
import sampling_host
from unary_cases import host_compiler

import test_onnx_node_conformance as cpu
from node_cases import GPU, data_sets
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops import run_node

ROOT = Path(__file__).resolve().parents[2]
RNG = np.random.default_rng(1414)
needs_compiler = pytest.mark.skipif(host_compiler() is None, reason='no host C++ compiler')


@pytest.fixture(scope='module')
def binary(tmp_path_factory):
    return sampling_host.build(host_compiler(), tmp_path_factory.mktemp('sampling'))


def f16(a):
    return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


def value(name, shape, dtype='float32', image=None):
    image = len(shape) == 4 if image is None else image
    return Value(name, tuple(shape), dtype, 'NCHW' if image else '')


def graph_of(nodes, acts, out_shapes, weights=None):
    """Nodes over activations ``acts`` {name: (shape, dtype)}; ``out_shapes`` {name: shape}
    of the values they make (graph outputs: those of the last node)."""
    values = {n: value(n, s, d) for n, (s, d) in acts.items()}
    values.update({n: value(n, s) for n, s in out_shapes.items()})
    return Graph(nodes, list(acts), list(nodes[-1].outputs), values, dict(weights or {}))


def grid_sample_graph(c, mode, pad, align, grid_const=None, size=(2, 7, 9), out=(5, 6)):
    n, h, w = size
    node = Node('GridSample', 'gs', ['x', 'g'], ['y'],
                dict(mode=mode, padding_mode=pad, align_corners=align))
    acts = {'x': ((n, c, h, w), 'float32')}
    if grid_const is None:
        acts['g'] = ((n,) + out + (2,), 'float32')
    return graph_of([node], acts, {'y': (n, c) + out}, {'g': grid_const} if grid_const
                    is not None else None)


def check(got, want, tol=1e-3):
    """FP16 output: within an FP16 step of the numpy result (rounded to FP16)."""
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, f16(want), rtol=tol, atol=tol * scale)


MODES = [(m, p, a) for m in ('linear', 'nearest', 'cubic')
         for p in ('zeros', 'border', 'reflection') for a in (0, 1)]


@needs_compiler
@pytest.mark.parametrize('channels,kernel', [(3, 'grid_sample'), (16, 'grid_sample_v8')])
@pytest.mark.parametrize('mode,pad,align', MODES)
def test_grid_sample_matches_numpy(binary, channels, kernel, mode, pad, align):
    """Points inside, on the border and past it (grid in [-1.4, 1.4]); nearest exactly."""
    graph = grid_sample_graph(channels, mode, pad, align)
    x = f16(RNG.standard_normal((2, channels, 7, 9)))
    g = f16(RNG.uniform(-1.4, 1.4, (2, 5, 6, 2)))
    g[0, 0, :3] = [[-1, -1], [1, 1], [0.5, -0.5]]  # corners and half-pixel ties
    got, lowered = sampling_host.run(binary, graph, {'x': x, 'g': g})
    assert [k.kernel for k in lowered.launches] == [kernel]
    want = run_node(graph.nodes[0], [x, g])[0]
    check(got['y'], want, 0 if mode == 'nearest' else 1e-3)


SLICES = [([8, 16], 1, 'grid_sample_v8'), ([5, 19], 1, 'grid_sample'),
          ([12, 12], 0, 'grid_sample'), ([4, 8, 12], 1, 'grid_sample')]


@needs_compiler
@pytest.mark.parametrize('split,read,kernel', SLICES)
def test_grid_sample_of_a_constant_grid_and_a_channel_slice(binary, split, read, kernel):
    """x slice ``read`` of a Split of 24 channels (16-byte vectors only where its channel
    count and offset are multiples of 8), the grid a constant, the output placed first in a
    Concat with the other slices resized."""
    parts = [f'p{i}' for i in range(len(split))]
    offsets = np.cumsum([0] + split)
    c = split[read]
    g = f16(RNG.uniform(-1.2, 1.2, (1, 4, 5, 2)))
    others = [k for k in range(len(split)) if k != read]
    nodes = [Node('Split', 'split', ['x'], parts, dict(axis=1, split=split))]
    nodes += [Node('Resize', f'rs{k}', [parts[k], '', 'scales'], [f'r{k}'],
                   dict(mode='nearest')) for k in others]
    nodes += [Node('GridSample', 'gs', [parts[read], 'g'], ['s'], dict(mode='linear')),
              Node('Concat', 'cat', ['s'] + [f'r{k}' for k in others], ['y'], dict(axis=1))]
    shapes = {p: (1, n, 8, 10) for p, n in zip(parts, split)}
    shapes.update({f'r{k}': (1, split[k], 4, 5) for k in others})
    shapes.update({'s': (1, c, 4, 5), 'y': (1, 24, 4, 5)})
    graph = graph_of(nodes, {'x': ((1, 24, 8, 10), 'float32')}, shapes,
                     {'g': g, 'scales': np.array([1, 1, 0.5, 0.5], np.float32)})
    x = f16(RNG.standard_normal((1, 24, 8, 10)))
    got, lowered = sampling_host.run(binary, graph, {'x': x})
    launch = next(k for k in lowered.launches if k.node == 'gs')
    assert launch.kernel == kernel and launch.fields['x_off'] == offsets[read]
    assert launch.fields['x_pix'] == 24 and launch.fields['y_pix'] == 24
    want = run_node(nodes[-2], [x[:, offsets[read]:offsets[read + 1]], g])[0]
    check(got['y'][:, :c], want)


@needs_compiler
@pytest.mark.parametrize('align', [0, 1])
def test_affine_grid_then_grid_sample(binary, align):
    """A spatial transformer: AffineGrid of a runtime theta, then GridSample (bilinear)."""
    theta = f16([[[0.9, -0.2, 0.1], [0.3, 1.1, -0.05]], [[1.2, 0.0, 0.0], [0.0, 0.7, 0.2]]])
    nodes = [Node('AffineGrid', 'ag', ['theta', 'size'], ['g'], dict(align_corners=align)),
             Node('GridSample', 'gs', ['x', 'g'], ['y'], dict(align_corners=align))]
    graph = graph_of(nodes, {'theta': ((2, 2, 3), 'float32'), 'x': ((2, 8, 12, 10), 'float32')},
                     {'g': (2, 12, 10, 2), 'y': (2, 8, 12, 10)},
                     {'size': np.array([2, 8, 12, 10], np.int64)})
    graph.outputs = ['g', 'y']
    x = f16(RNG.standard_normal((2, 8, 12, 10)))
    got, lowered = sampling_host.run(binary, graph, {'theta': theta, 'x': x})
    assert [k.kernel for k in lowered.launches] == ['affine_grid', 'grid_sample_v8']
    grid = run_node(nodes[0], [theta, graph.weights['size']])[0]
    check(got['g'], grid)
    check(got['y'], run_node(nodes[1], [x, f16(grid)])[0], 3e-3)


def roi_graph(c, attrs, rois_const=None, index_const=None, rois=4, size=(2, 10, 12)):
    n, h, w = size
    acts = {'x': ((n, c, h, w), 'float32')}
    weights = {}
    for name, const, shape, dtype in (('rois', rois_const, (rois, 4), 'float32'),
                                      ('bi', index_const, (rois,), 'int64')):
        if const is None:
            acts[name] = (shape, dtype)
        else:
            weights[name] = const
    p, q = attrs.get('output_height', 1), attrs.get('output_width', 1)
    node = Node('RoiAlign', 'roi', ['x', 'rois', 'bi'], ['y'], dict(attrs))
    return graph_of([node], acts, {'y': (rois, c, p, q)}, weights)


ROIS = f16([[1.0, 1.5, 8.5, 7.0], [-2.0, 3.0, 5.0, 12.5], [4.0, 4.0, 4.25, 4.5],
            [0.0, 0.0, 11.0, 9.0]])
BATCH = np.array([1, 0, 1, 0], np.int64)
ROI_ATTRS = [dict(mode=m, coordinate_transformation_mode=t, output_height=3, output_width=4,
                  sampling_ratio=r, spatial_scale=s)
             for m in ('avg', 'max') for t in ('half_pixel', 'output_half_pixel')
             for r, s in ((0, 1.0), (2, 0.5))]


@needs_compiler
@pytest.mark.parametrize('channels,kernel', [(5, 'roi_align'), (8, 'roi_align_v8')])
@pytest.mark.parametrize('attrs', ROI_ATTRS, ids=lambda a: '-'.join(
    str(a[k]) for k in ('mode', 'coordinate_transformation_mode', 'sampling_ratio')))
def test_roi_align_matches_numpy(binary, channels, kernel, attrs):
    """Regions of both images, one partly outside, one thinner than a pixel; rois and batch
    indices as activations."""
    graph = roi_graph(channels, attrs)
    x = f16(RNG.standard_normal((2, channels, 10, 12)))
    got, lowered = sampling_host.run(binary, graph, {'x': x, 'rois': ROIS, 'bi': BATCH})
    assert [k.kernel for k in lowered.launches] == [kernel]
    check(got['y'], run_node(graph.nodes[0], [x, ROIS, BATCH])[0], 2e-3)


@needs_compiler
def test_roi_align_of_constant_regions(binary):
    attrs = ROI_ATTRS[0]
    graph = roi_graph(16, attrs, ROIS, BATCH)
    x = f16(RNG.standard_normal((2, 16, 10, 12)))
    got, _ = sampling_host.run(binary, graph, {'x': x})
    check(got['y'], run_node(graph.nodes[0], [x, ROIS, BATCH])[0], 2e-3)


@needs_compiler
def test_a_planted_bug_is_caught(binary, tmp_path):
    """The host build runs the kernel source as it stands: nearest rounding half away from
    zero instead of numpy's half to even changes an answer."""
    text = (ROOT / 'kernels' / 'sampling.cu').read_text()
    assert 'c = rintf(c)' in text
    planted = sampling_host.build(host_compiler(), tmp_path, text.replace('c = rintf(c)',
                                                                          'c = roundf(c)'))
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 1, 4)
    g = np.array([[[[-0.5, 0.0]]]], np.float32)  # x = 0.5 pixels: 0 (even), not 1
    graph = grid_sample_graph(1, 'nearest', 'zeros', 0, size=(1, 1, 4), out=(1, 1))
    want = run_node(graph.nodes[0], [x, g])[0]
    got, _ = sampling_host.run(binary, graph, {'x': x, 'g': g})
    assert got['y'].item() == want.item() == 0
    got, _ = sampling_host.run(planted, graph, {'x': x, 'g': g})
    assert got['y'].item() == 1


# Lowering without running ----------------------------------------------------------------------

def test_lowering_is_the_same_for_the_tx2():
    graph = grid_sample_graph(16, 'cubic', 'reflection', 0)
    for a, b in zip(lower_graph(graph, 90).launches, lower_graph(graph, 62).launches):
        assert (a.module, a.kernel, a.grid, a.block) == (b.module, b.kernel, b.grid, b.block)
        assert a.module == 'sampling' and a.fields['mode'] == 2 and a.fields['padding'] == 2


REFUSED = {
    'volumetric': (lambda: graph_of([Node('GridSample', 'gs', ['x', 'g'], ['y'])],
                                    {'x': ((1, 2, 3, 4, 5), 'float32'),
                                     'g': ((1, 2, 2, 2, 3), 'float32')}, {'y': (1, 2, 2, 2, 2)}),
                   '3-D \\(volumetric\\) sampling'),
    'grid mode': (lambda: _with(grid_sample_graph(3, 'linear', 'zeros', 0), mode='area'),
                  'mode=area'),
    'padding': (lambda: _with(grid_sample_graph(3, 'linear', 'zeros', 0), padding_mode='wrap'),
                'padding_mode=wrap'),
    'affine 3-D': (lambda: graph_of([Node('AffineGrid', 'ag', ['t', 's'], ['g'])],
                                    {'t': ((1, 3, 4), 'float32')}, {'g': (1, 2, 3, 4, 3)},
                                    {'s': np.array([1, 1, 2, 3, 4], np.int64)}),
                   'only 2-D grids'),
    'roi mode': (lambda: roi_graph(3, dict(mode='median')), 'mode=median'),
    'roi coordinates': (lambda: roi_graph(3, dict(coordinate_transformation_mode='tf')),
                        'coordinate_transformation_mode=tf'),
}


def _with(graph, **attrs):
    graph.nodes[0].attrs.update(attrs)
    return graph


@pytest.mark.parametrize('name', sorted(REFUSED))
def test_refusals_name_node_and_value(name):
    make, why = REFUSED[name]
    graph = make()
    node = graph.nodes[0]
    with pytest.raises(UnsupportedOpError, match=f"'{node.op}' at node '{node.name}' .*{why}"):
        lower_graph(graph, arch=90)


# The ONNX node cases ---------------------------------------------------------------------------

REFUSED_CASES = {'volumetric': 'volumetric', 'affine_grid_3d': 'only 2-D grids'}


@needs_compiler
def test_node_cases_lower_and_match(binary):
    """Every ONNX node case of these ops, built as the GPU conformance test builds it (the
    first input an activation, the others constants), matches its expected output within that
    test's FP16 tolerance on the host-built kernels, or is refused by name (volumetric)."""
    found = cpu.collect_cases()
    counts = {'pass': 0, 'refused': 0}
    for op in sampling_host.OPS:
        for folder in found.get(op, []):
            status = _node_case(binary, folder)
            counts[status] = counts.get(status, 0) + 1
    assert counts == {'pass': 19, 'refused': 6}, counts  # onnx 1.23: 14 + 2 + 3 pass


def _node_case(binary, folder) -> str:
    for graph, acts, expected in data_sets(folder):
        assert graph is not None, folder.name
        reason = next((r for k, r in REFUSED_CASES.items() if k in folder.name), None)
        if reason:
            with pytest.raises(UnsupportedOpError, match=reason):
                lower_graph(graph, arch=90)
            return 'refused'
        got, _ = sampling_host.run(binary, graph, acts)
        for out, want in expected.items():
            assert GPU.close(got[out], want), (folder.name, out, got[out], want)
    return 'pass'
