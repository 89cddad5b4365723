"""TopK (``kernels/topk.cu``), GatherElements, GatherND and Gather by indices computed at run
time (``kernels/gather_nd.cu``) on the GPU against the numpy backend: every case of
``test/core/index_cases.py`` (ties, negative indices, NHWC inputs, a detector head's TopK of
1000 scores then Gather and GatherElements of the top 100 boxes), TopK over NaN and
infinities, and a wide TopK whose indices nobody reads. Every input is exact in FP16 and these
ops only move values, so the outputs must equal the numpy ones exactly, indices included.
``test/core/test_cuda_index.py`` checks the same lowerings without a GPU."""
import numpy as np
import pytest

from conftest import core_module, run_graph
from tx2_infer_core import reference

CASES = core_module('index_cases')


def compare(label, graph, feeds):
    want = reference.execute(graph, feeds)
    got = run_graph(graph, feeds)
    for name in graph.outputs:
        assert got[name].shape == want[name].shape, (label, name)
        np.testing.assert_array_equal(got[name], want[name], err_msg=f'{label} {name}')


@pytest.mark.parametrize('name', sorted(CASES.CASES))
def test_case_matches_numpy(name):
    graph, feeds = CASES.CASES[name][0](np.random.default_rng(1405))
    compare(name, graph, feeds)


@pytest.mark.parametrize('largest', [1, 0])
def test_topk_of_nan_and_infinities(largest):
    """NaN ranks above every number (first when largest, last when smallest), ties by
    index, as the numpy reference."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, (16, 70)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    x[rng.random(x.shape) < 0.03] = np.inf
    x[rng.random(x.shape) < 0.03] = -np.inf
    x[0] = np.nan
    graph = CASES.graph_of({'x': x}, [('TopK', ['x', 'k'], ['v', 'i'], {'largest': largest})],
                           ['v', 'i'], {'k': np.array([40], CASES.I64)})
    compare(f'TopK largest={largest} of NaN and inf', graph, {'x': x})


def test_wide_topk_values_and_a_deep_row():
    """A row of 20000 (values only: the indices would pass FP16's exact integers) and a row
    of 2048 with K = 2048 (every index up to the last exact one)."""
    rng = np.random.default_rng(4)
    for shape, k, outputs in (((3, 20000), 50, ('v', '')), ((2, 2048), 2048, ('v', 'i'))):
        graph, feeds = CASES.topk(rng, shape, 1, k, outputs=outputs)
        compare(f'TopK {shape} K={k}', graph, feeds)
