"""TopK (``cuda/lower_topk.py``, ``kernels/topk.cu``), GatherElements, GatherND and Gather by
indices computed at run time (``cuda/lower_index.py``, ``kernels/gather_nd.cu``) without a GPU:
the cases of ``index_cases.py`` lowered for sm_90 and their launches run on the host
(``launch_emulator.py``, ``index_emulator.py``) against the numpy ops, exactly; the same
launches for the TX2's sm_62; the refusals, each naming the op, the node and why; and
``topk.cu``'s comparison and rounds, built for the host, give numpy's TopK on ties and NaN."""
import subprocess
from pathlib import Path

import numpy as np
import pytest
from index_cases import CASES, I64, gather, graph_of, ties, topk
from launch_emulator import emulate
from unary_cases import build_host, device_function, host_compiler

import test_onnx_node_conformance as cpu
from node_cases import GPU, data_sets

from tx2_infer_core import reference
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Node
from tx2_infer_core.ops import run_node

ROOT = Path(__file__).resolve().parents[2]
OPS = {'TopK', 'GatherElements', 'GatherND', 'Gather'}  # run by their launches


@pytest.mark.parametrize('name', sorted(CASES))
def test_case_matches_numpy(name):
    build, kernel = CASES[name]
    graph, feeds = build(np.random.default_rng(14))
    got, launches = emulate(graph, OPS, feeds)
    want = reference.execute(graph, feeds)
    for out in graph.outputs:
        assert got[out].shape == want[out].shape, (name, out)
        np.testing.assert_array_equal(got[out], want[out], err_msg=f'{name} {out}')
    ours = {node.name for node in graph.nodes if node.op in OPS}
    assert kernel in [k.kernel for k in launches if k.node in ours], name


@pytest.mark.parametrize('name', sorted(CASES))
def test_case_lowers_alike_for_the_tx2(name):
    """The same launches (kernels, grids, blocks) for sm_62 as for sm_90."""
    graph, _ = CASES[name][0](np.random.default_rng(14))
    a, b = (lower_graph(graph, arch).launches for arch in (90, 62))
    assert [(k.kernel, k.grid, k.block) for k in a] == [(k.kernel, k.grid, k.block) for k in b]


def test_topk_launch_and_its_unused_indices():
    """One block per row, a power of two of threads from 32; an Indices output nobody reads
    is not written (NULL), so its axis may pass 2048."""
    graph, _ = topk(np.random.default_rng(0), (6, 1000), 1, 10)
    (launch,) = lower_graph(graph, 90).launches
    assert (launch.kernel, launch.grid, launch.block) == ('topk_rows', (6, 1, 1), (256, 1, 1))
    assert launch.fields['k_count'] == 10 and launch.fields['largest'] == 1
    graph, _ = topk(np.random.default_rng(0), (2, 3000), 1, 5, outputs=('v', ''))
    (launch,) = lower_graph(graph, 90).launches
    assert launch.fields['indices'].base == 'null' and launch.fields['values'].base == 'arena'


def test_constant_indices_become_a_non_negative_table():
    graph, _ = gather(np.random.default_rng(0), 'GatherND', (2, 3, 4),
                      [[1, -3], [-1, 2]], {}, const=True)
    lowered = lower_graph(graph, 90)
    (launch,) = lowered.launches
    table = launch.fields['table']
    image = lowered.weight_image().tobytes()
    assert np.frombuffer(image, np.int32, 4, table.offset).tolist() == [1, 0, 1, 2]
    assert launch.fields['idx'].base == 'null'


def _refused(graph, match):
    with pytest.raises(UnsupportedOpError, match=match):
        lower_graph(graph, 90)


def _summed(graph):
    """``graph`` with its index value 'i' also read by a ReduceSum (no int32 form: 'i' stays
    FP16)."""
    graph.nodes.append(Node('ReduceSum', 'sum', ['i'], ['s'], {}))
    reference.infer_shapes(graph)
    graph.outputs.append('s')
    return graph


def test_refusals_name_the_op_node_and_why():
    """Indices past 2048 kept FP16 by a reader with no int32 form (test_cuda_int32.py has the
    int32 ones) are refused, naming that reader."""
    rng = np.random.default_rng(0)
    _refused(_summed(topk(rng, (2, 3000), 1, 5)[0]),
             r"'TopK' at node 'n0' \(an axis of 3000 elements with its indices read: they are "
             r"FP16 in the arena, exact up to 2048, not int32 \('i' is read or written by "
             r"ReduceSum 'sum', which has no int32 form\)\)")
    _refused(_summed(gather(rng, 'GatherElements', (2, 3000), np.zeros((2, 3)),
                            {'axis': 1})[0]),
             r"'GatherElements' at node 'n0' \(indices computed at run time into a dim of "
             r"3000 elements: FP16 indices are exact up to 2048, and these are not int32 "
             r"\('i' is read or written by ReduceSum 'sum'")
    _refused(_summed(gather(rng, 'Gather', (3000, 2), np.zeros(3), {})[0]),
             r"'Gather' at node 'n0' \(indices computed at run time into a dim of 3000")
    _refused(_summed(gather(rng, 'GatherND', (4, 3000), np.zeros((2, 2)), {})[0]),
             r"'GatherND' at node 'n0' \(indices computed at run time into a dim of 3000")
    bad = gather(rng, 'GatherElements', (3, 5), np.zeros((3, 2)), {'axis': 1}, const=True)[0]
    bad.weights['i'] = np.array([[0, 5], [0, 0], [0, 0]], I64)
    _refused(bad, r"'GatherElements' at node 'n0' \(index 5 out of range for a dim of size 5")
    bad = gather(rng, 'GatherND', (2, 3, 4), np.zeros((1, 2)), {}, const=True)[0]
    bad.weights['i'] = np.array([[1, -4]], I64)
    _refused(bad, r"'GatherND' at node 'n0' \(index -4 out of range for a dim of size 3")
    ids = graph_of({'x': np.arange(6, dtype=I64) * 1000}, [('TopK', ['x', 'k'], ['v', 'i'], {})],
                   ['v', 'i'], {'k': np.array([2], I64)})
    _refused(ids, r"'TopK' at node 'n0' \(int64 data fed as a graph input: its values past "
                  r"2048 are not exact\)")


def test_topk_with_k_at_run_time_is_refused():
    x = ties(np.random.default_rng(0), 2, 6)
    graph = graph_of({'x': x, 'k': np.array([2], I64)},
                     [('TopK', ['x', 'k'], ['v', 'i'], {})], ['v', 'i'])
    _refused(graph, r"'TopK' at node 'n0' \(K must be a constant\)")


def test_exported_detector_head_lowers_and_matches(tmp_path):
    """test_ops_index's RT-DETR-style head as exported (Conv, Reshape, Split, Sigmoid, TopK,
    Expand + GatherElements, Transpose + Reshape + GatherND with batch_dims 1), imported and
    optimised as a cuda build is: every index op lowers, and their emulated launches (the
    rest by the numpy ops) give the numpy outputs."""
    import onnx
    import test_ops_index
    from tx2_infer_core.engine_build import import_model
    from tx2_infer_core.passes import POINTWISE_LEVEL, optimize
    onnx.save(test_ops_index.detector_head(), tmp_path / 'head.onnx')
    graph, _ = optimize(import_model(tmp_path / 'head.onnx', (2, 3, 4, 5)), POINTWISE_LEVEL)
    feeds = {'x': ties(np.random.default_rng(2), 2, 3, 4, 5)}
    got, launches = emulate(graph, OPS, feeds)
    want = reference.execute(graph, feeds)
    for out in graph.outputs:
        np.testing.assert_array_equal(got[out], want[out], err_msg=out)
    kernels = {k.node: k.kernel for k in launches}
    assert [kernels[n] for n in ('topk', 'gather_elements', 'gather_nd')] == \
        ['topk_rows', 'gather_nd', 'gather_nd']


def test_float_node_cases_lower_and_match():
    """The float ONNX node cases of GatherElements and GatherND (the TopK ones have integer
    outputs: not applicable), built as the GPU conformance test builds them (indices
    constants), lowered for sm_90 and emulated, within that test's FP16 tolerance."""
    found = cpu.collect_cases()
    passed = []
    for folder in found.get('GatherElements', []) + found.get('GatherND', []):
        for graph, acts, expected in data_sets(folder):
            if graph is None:
                break
            got, launches = emulate(graph, OPS, acts)
            assert [k.kernel for k in launches] == ['gather_nd'], folder.name
            for out, want in expected.items():
                assert GPU.close(got[out], want), (folder.name, out)
            passed.append(folder.name)
    assert {'test_gather_elements_0', 'test_gather_elements_1',
            'test_gather_elements_negative_indices',
            'test_gathernd_example_float32'} <= set(passed), passed


# topk.cu's comparison and rounds on the host --------------------------------------------------

HARNESS = r'''
#include <cstdio>
#include <vector>
#define __device__
#define __forceinline__ inline
{before}
// the kernel's rounds: thread t of T takes j = t, t + T, ...; a butterfly over each warp of 32,
// then every thread folds the warps' picks
void rounds(const std::vector<float> &x, int threads, int k_count, bool largest, int *out) {{
    float last = 0.f;
    int last_j = -1;
    for (int k = 0; k < k_count; ++k) {{
        std::vector<float> best(threads, 0.f);
        std::vector<int> at(threads, -1);
        for (int t = 0; t < threads; ++t)
            for (int j = t; j < (int)x.size(); j += threads) {{
                const bool after = last_j < 0 || topk_before(last, last_j, x[j], j, largest);
                if (after && topk_before(x[j], j, best[t], at[t], largest))
                    best[t] = x[j], at[t] = j;
            }}
        for (int o = 16; o > 0; o >>= 1) {{
            std::vector<float> b2 = best;
            std::vector<int> a2 = at;
            for (int t = 0; t < threads; ++t)
                if (topk_before(best[t ^ o], at[t ^ o], best[t], at[t], largest))
                    b2[t] = best[t ^ o], a2[t] = at[t ^ o];
            best = b2, at = a2;
        }}
        float pick = best[threads - 1];
        int pick_j = at[threads - 1];  // the last thread's fold (any thread's is the same)
        for (int q = 0; q < threads; q += 32)
            if (topk_before(best[q], at[q], pick, pick_j, largest)) pick = best[q], pick_j = at[q];
        out[k] = pick_j;
        last = pick, last_j = pick_j;
    }}
}}
int main() {{
    int rows, n, k_count;
    std::fread(&rows, 4, 1, stdin);
    std::fread(&n, 4, 1, stdin);
    std::fread(&k_count, 4, 1, stdin);
    std::vector<float> x(n);
    std::vector<int> out(k_count);
    for (int r = 0; r < rows; ++r) {{
        std::fread(x.data(), 4, n, stdin);
        for (int threads : {{32, 64, 256}})
            for (int largest = 0; largest < 2; ++largest) {{
                rounds(x, threads, k_count, largest, out.data());
                std::fwrite(out.data(), 4, k_count, stdout);
            }}
    }}
}}
'''


@pytest.mark.skipif(host_compiler() is None, reason='no host C++ compiler')
def test_topk_rounds_give_numpys_indices(tmp_path):
    """``topk_before`` of kernels/topk.cu in the kernel's rounds and reductions, built for the
    host: rows with ties, NaN and infinities give the numpy TopK's indices (largest and
    smallest) for blocks of 32, 64 and 256 threads."""
    source = (ROOT / 'kernels' / 'topk.cu').read_text()
    exe = build_host(tmp_path, 'topk',
                     HARNESS.format(before=device_function(source, 'topk_before')))
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, (60, 70)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    x[rng.random(x.shape) < 0.03] = np.inf
    x[rng.random(x.shape) < 0.03] = -np.inf
    x[0] = np.nan
    k = 40
    header = np.array(x.shape + (k,), np.int32).tobytes()
    out = subprocess.run([str(exe)], input=header + x.tobytes(), check=True,
                         capture_output=True).stdout
    got = np.frombuffer(out, np.int32).reshape(len(x), 3, 2, k)
    for largest in (0, 1):
        node = Node('TopK', 't', ['x', 'k'], ['v', 'i'], {'largest': largest})
        _, want = run_node(node, [x, np.array([k], I64)])
        for threads in range(3):
            np.testing.assert_array_equal(got[:, threads, largest], want,
                                          err_msg=(threads, largest))
