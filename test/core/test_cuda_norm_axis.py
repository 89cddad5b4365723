"""The normalisations (``cuda/lower_norm.py``), ArgMax/ArgMin/Hardmax and CumSum/CumProd
(``cuda/lower_axis.py``), ReduceProd/L1/L2/SumSquare/LogSum/LogSumExp and the Lp pools
(``cuda/lower_nn.py``) without a GPU: their launches run on the host (``launch_emulator.py``,
``rows_emulator.py``: each kernel's index maths, numpy's arithmetic) against the numpy ops, on
row-major tensors, NHWC images, mixed storage and channel slices; every ONNX node case of these
ops lowers and matches its expected output, or is refused by name; the refusals name the node
and the value; ``arg.cu``'s comparison, built for the host, picks numpy's index."""
import subprocess
from pathlib import Path

import numpy as np
import pytest
from launch_emulator import emulate
from norm_axis_cases import (S, CASES, case_graph, feeds, sample, scale_bias, small_net,
                             storages)
from unary_cases import build_host, device_function, host_compiler

import test_onnx_node_conformance as cpu
from node_cases import GPU, data_sets
from tx2_infer_core import reference
from tx2_infer_core.cuda import rows
from tx2_infer_core.cuda.lift_1d import lift_1d
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Graph, Node, Value

ROOT = Path(__file__).resolve().parents[2]
OPS = {c[0] for c in CASES.values()} | {'Unsqueeze', 'Squeeze'}  # run by their launches
KERNEL = {'InstanceNormalization': 'norm_rows', 'GroupNormalization': 'norm_rows',
          'MeanVarianceNormalization': 'norm_rows', 'LpNormalization': 'norm_rows',
          'RMSNormalization': 'norm_rows', 'LRN': 'lrn', 'ArgMax': 'arg_rows',
          'ArgMin': 'arg_rows', 'Hardmax': 'arg_rows', 'CumSum': 'scan_rows',
          'CumProd': 'scan_rows', 'LpPool': 'pool2d'}
VARIANTS = [(name, before, after) for name in sorted(CASES) for before, after in storages(name)]


def run_emulated(graph, x):
    """(emulated outputs, numpy outputs, launches) of ``graph`` on feeds ``x``."""
    got, launches = emulate(lift_1d(graph)[0], OPS, x)
    return got, reference.execute(graph, x), launches


@pytest.mark.parametrize('name,before,after', VARIANTS)
def test_case_matches_numpy(name, before, after):
    """Each case with its input and output stored row-major or NHWC."""
    graph = case_graph(name, before, after)
    got, want, launches = run_emulated(graph, feeds(name))
    for out in graph.outputs:
        assert got[out].shape == want[out].shape
        np.testing.assert_allclose(got[out], want[out], rtol=1e-4, atol=1e-5, err_msg=name)
    op = CASES[name][0]
    kernels = [k.kernel for k in launches if k.node == 'op']
    assert kernels[-1] == KERNEL.get(op, 'global_reduce') or kernels == ['pool2d'], kernels


@pytest.mark.parametrize('name', sorted(CASES))
def test_case_lowers_alike_for_the_tx2(name):
    """The same launches (kernels, grids, blocks) for sm_62 as for sm_90."""
    graph = case_graph(name, *storages(name)[-1])
    tx2, h100 = ([(k.kernel, k.grid, k.block) for k in lower_graph(graph, arch=arch).launches]
                 for arch in (62, 90))
    assert tx2 == h100


def test_mixed_storage_is_walked_in_place():
    """An NHWC input normalised into a row-major output, the reduced and kept dims interleaved
    in memory: one launch, no copy (three row dims, two element dims)."""
    for name in ('l2 norm last', 'argmin rows last', 'mvn', 'rms norm', 'cumsum channels'):
        kernels = [k.kernel for k in run_emulated(case_graph(name, True), feeds(name))[2]
                   if k.node == 'op']
        assert len(kernels) == 1, (name, kernels)


def test_walk_merges_dims_and_declines_past_its_dims():
    nhwc, plain = (240, 1, 48, 8), (240, 30, 6, 1)
    dims = [(n, (a, b)) for n, a, b in zip(S, nhwc, plain)]
    walk, _ = rows.row_walk(dims[:3], dims[3:])
    assert [int(walk[k]) for k in ('rows', 'n', 'r2', 'r3', 'xr2', 'yr2')] == [80, 6, 8, 5, 1, 30]
    nhwc_image = [(2, (48,)), (4, (12,)), (3, (1,)), (4, (3,))]  # N, C, H, W of (2, 3, 4, 4)
    assert rows.merge(nhwc_image) == [(96, (1,))]
    assert rows.merge(nhwc_image[1:3]) == [(4, (12,)), (3, (1,))]
    five = [(2, (1000, 1)), (3, (1, 2)), (4, (30, 6)), (5, (300, 24))]
    assert rows.row_walk(five[:1], five[1:]) is None  # three element dims that do not merge


def test_channel_slices_read_and_written_in_place():
    """A channel Split feeding InstanceNormalization and LRN, their outputs Concat inputs: each
    reads its slice of the split tensor and writes its slice of the concat (no copies)."""
    shape, half = (2, 16, 5, 6), (2, 8, 5, 6)
    consts = scale_bias(8)
    nodes = [Node('MaxPool', 'img', ['x'], ['b'], {'kernel_shape': [1, 1]}),
             Node('Split', 'split', ['b'], ['b1', 'b2'], {'axis': 1}),
             Node('InstanceNormalization', 'op', ['b1', 'scale', 'bias'], ['y1'], {}),
             Node('LRN', 'lrn', ['b2'], ['y2'], {'size': 3}),
             Node('Concat', 'cat', ['y1', 'y2'], ['c'], {'axis': 1}),
             Node('MaxPool', 'img2', ['c'], ['z'], {'kernel_shape': [1, 1]})]
    shapes = {'x': shape, 'b': shape, 'b1': half, 'b2': half, 'y1': half, 'y2': half,
              'c': shape, 'z': shape}
    values = {n: Value(n, s, 'float32', 'NCHW') for n, s in shapes.items()}
    graph = Graph(nodes, ['x'], ['z'], values, consts)
    x = {'x': sample('', shape)}
    got, launches = emulate(graph, OPS | {'Split', 'Concat'}, x)
    np.testing.assert_allclose(got['z'], reference.execute(graph, x)['z'], rtol=1e-4, atol=1e-5)
    slots = lower_graph(graph, arch=90).slots
    assert slots['b2'].channel_off == 8 and slots['y2'].channel_off == 8
    assert slots['y1'].strides[3] == 16 and slots['b1'].strides[3] == 16
    assert [k.kernel for k in launches if k.node in ('split', 'cat')] == []


REFUSED = {
    'scale computed at run time': (
        lambda: _graph('InstanceNormalization', S, extra=['s'],
                       consts={'bias': scale_bias(8)['bias']}),
        'the scale must be a constant'),
    'groups': (lambda: _graph('GroupNormalization', S, {'num_groups': 3}, consts=scale_bias(8)),
               'num_groups=3 for \\(8,\\) channels'),
    'lp order': (lambda: _graph('LpNormalization', S, {'p': 3}), 'p=3: only 1 and 2'),
    'scan axis at run time': (lambda: _graph('CumSum', (4, 5), extra=['ax']),
                              'the axis must be a constant'),
    'integer data': (lambda: _graph('ReduceL1', (4, 5), out=(1, 1), dtype='int64'),
                     'int64 data: float only'),
    'empty': (lambda: _graph('LpNormalization', (2, 0, 4)), 'an input of shape \\(2, 0, 4\\)'),
    'lp pool order': (lambda: _graph('LpPool', S, {'kernel_shape': [2, 2], 'p': 0},
                                     out=(2, 8, 4, 5)), 'p=0: 1 or more'),
}


def _graph(op, shape, attrs=None, out=None, consts=None, extra=(), dtype='float32'):
    """x and the activations ``extra`` (one value a channel) -> op(consts) -> y."""
    consts = dict(consts or {})
    values = {n: Value(n, shape if n == 'x' else (shape[1],), dtype, '') for n in
              ['x'] + list(extra)}
    values['y'] = Value('y', out or shape, 'float32', '')
    node = Node(op, 'op', ['x'] + list(extra) + list(consts), ['y'], dict(attrs or {}))
    return Graph([node], ['x'] + list(extra), ['y'], values, consts)


@pytest.mark.parametrize('name', sorted(REFUSED))
def test_refusals_name_node_and_value(name):
    make, why = REFUSED[name]
    graph = make()
    with pytest.raises(UnsupportedOpError, match=f"'{graph.nodes[0].op}' at node 'op' .*{why}"):
        lower_graph(graph, arch=90)


# The ONNX node cases -------------------------------------------------------------------------

NODE_OPS = sorted({c[0] for c in CASES.values()})
REFUSED_CASES = {  # what the GPU conformance run counts as refused, with the reason
    'empty_set': 'an empty input', 'test_lppool_3d_default': '3-D pooling'}


@pytest.fixture(scope='module')
def node_cases():
    found = cpu.collect_cases()
    return {op: found.get(op, []) for op in NODE_OPS}


def test_node_cases_lower_and_match(node_cases):
    """Every float ONNX node case of these ops, built as the GPU conformance test builds it,
    lowers for sm_90 and its emulated launches give the expected outputs within that test's
    FP16 tolerance, or it is refused for a reason listed in REFUSED_CASES."""
    passed, refused = 0, 0
    for op, folders in node_cases.items():
        for folder in folders:
            status = _node_case(folder)
            if status == 'refused':
                refused += 1
            passed += status == 'pass'
    assert passed >= 100 and refused == 7, (passed, refused)  # onnx 1.23: 104 and 7


def _node_case(folder) -> str:
    status = 'n/a'
    for graph, acts, expected in data_sets(folder):
        if graph is None:
            return 'n/a'
        reason = next((r for k, r in REFUSED_CASES.items() if k in folder.name), None)
        if reason:
            with pytest.raises(UnsupportedOpError, match=reason):
                lower_graph(lift_1d(graph)[0], arch=90)
            return 'refused'
        got, _ = emulate(lift_1d(graph)[0], OPS, acts)
        for out, want in expected.items():
            assert GPU.close(got[out], want), (folder.name, out)
        status = 'pass'
    return status


# arg.cu's comparison on the host -------------------------------------------------------------

HARNESS = r'''
#include <cstdio>
#include <cmath>
#include <vector>
#define __device__
#define __forceinline__ inline
{better}
// the kernel's team: lane l takes j = l, l + T, ...; then a butterfly over the lanes
int pick(const std::vector<float> &x, int team, bool least, bool last) {{
    std::vector<float> best(team, 0.f);
    std::vector<int> at(team, -1);
    for (int l = 0; l < team; ++l)
        for (int j = l; j < (int)x.size(); j += team)
            if (arg_better(x[j], j, best[l], at[l], least, last)) best[l] = x[j], at[l] = j;
    for (int o = team / 2; o > 0; o /= 2) {{
        std::vector<float> b2 = best;
        std::vector<int> a2 = at;
        for (int l = 0; l < team; ++l)
            if (arg_better(best[l ^ o], at[l ^ o], best[l], at[l], least, last))
                b2[l] = best[l ^ o], a2[l] = at[l ^ o];
        best = b2, at = a2;
    }}
    return at[0];
}}
int main() {{
    int rows, n;
    std::fread(&rows, 4, 1, stdin);
    std::fread(&n, 4, 1, stdin);
    std::vector<float> x(n);
    for (int r = 0; r < rows; ++r) {{
        std::fread(x.data(), 4, n, stdin);
        for (int team : {{1, 2, 8, 32}})
            for (int mode = 0; mode < 4; ++mode) {{
                int k = pick(x, team, mode & 1, mode >> 1);
                std::fwrite(&k, 4, 1, stdout);
            }}
    }}
}}
'''


@pytest.mark.skipif(host_compiler() is None, reason='no host C++ compiler')
def test_arg_comparison_picks_numpys_index(tmp_path):
    """``arg_better`` of kernels/arg.cu in the kernel's team reduction, built for the host:
    ArgMax/ArgMin (select_last_index 0 and 1) of rows with ties and NaN give numpy's index
    for teams of 1, 2, 8 and 32 threads."""
    source = (ROOT / 'kernels' / 'arg.cu').read_text()
    exe = build_host(tmp_path, 'arg',
                     HARNESS.format(better=device_function(source, 'arg_better')))
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, (300, 37)).astype(np.float32)
    x[rng.random(x.shape) < 0.03] = np.nan
    x[:5] = [np.nan] * 37
    x[5] = -np.inf
    header = np.array(x.shape, np.int32).tobytes()
    out = subprocess.run([str(exe)], input=header + x.tobytes(), check=True,
                         capture_output=True).stdout
    got = np.frombuffer(out, np.int32).reshape(len(x), 4, 4)
    for mode in range(4):
        fn = np.argmin if mode & 1 else np.argmax
        want = x.shape[1] - 1 - fn(x[:, ::-1], axis=1) if mode >> 1 else fn(x, axis=1)
        for team in range(4):
            np.testing.assert_array_equal(got[:, team, mode], want, err_msg=(team, mode))


# A small network of them ---------------------------------------------------------------------

def test_small_net_lowers_and_matches(tmp_path):
    """``small_net`` imported and optimised as a cuda build is (pass level 3): it lowers for
    sm_90 and sm_62, a launch of the expected kernel for each of these ops, and its emulated
    launches (the convolutions by numpy) give the numpy outputs."""
    from tx2_infer_core.engine_build import import_model
    from tx2_infer_core.passes import POINTWISE_LEVEL, optimize
    graph = import_model(small_net(tmp_path / 'net.onnx'))
    optimised, _ = optimize(graph.copy(), POINTWISE_LEVEL)
    for arch in (90, 62):
        kernels = [k.kernel for k in lower_graph(optimised, arch).launches]
        for kernel in ('norm_rows', 'lrn', 'pool2d', 'arg_rows', 'scan_rows', 'global_reduce'):
            assert kernel in kernels, (arch, kernel, kernels)
    x = {'x': sample('', (1, 3, 32, 32))}
    got, _ = emulate(optimised, OPS, x)
    want = reference.execute(graph, x)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-3, atol=1e-4, err_msg=name)
