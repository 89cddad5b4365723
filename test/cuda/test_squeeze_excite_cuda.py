"""``squeeze_excite`` (kernels/pool.cu, cuda/squeeze_excite.py) against the numpy oracle and
ONNX Runtime: small blocks (batch 2, a channel count off the 32-channel blocks, a map large
enough to split its pixels, replayed twice: the tickets reset) and ppocr-cls (a real
MobileNetV3) on its real photo."""
import numpy as np
import pytest

from conftest import assert_close, assert_engine_matches_onnxruntime, assert_replays_the_same
from conftest import core_module, zoo_model_path
from tx2_infer_core import reference
from tx2_infer_core.backends.cuda_backend import CudaBackend

se_cases = core_module('test_squeeze_excite')

CASES = {'batch2': dict(c=40, hidden=10, n=2), 'split': dict(c=16, hidden=4, n=1, h=64, w=96),
         'wide': dict(c=128, hidden=64, n=1, h=5, w=7)}


@pytest.mark.parametrize('case', sorted(CASES))
def test_block_matches_the_oracle(case):
    graph = se_cases.se_graph(**CASES[case])
    feeds = {'x': np.random.default_rng(5).standard_normal(graph.values['x'].shape)
             .astype(np.float32)}
    backend = CudaBackend()
    backend.prepare(graph)
    try:
        assert [k.kernel for k in backend.launches].count('squeeze_excite') == 1
        out = backend.run(feeds)
    finally:
        backend.close()
    assert_close(f'squeeze_excite {case}', out['y'], reference.execute(graph, feeds)['y'], 5e-3)
    assert_replays_the_same(graph, feeds)


@pytest.mark.parametrize('name', ['ppocr-cls'])
def test_zoo_blocks_match_onnxruntime(name, tmp_path):
    import zoo_data
    model = zoo_data.BY_NAME[name]
    assert_engine_matches_onnxruntime(f'{name} squeeze_excite', zoo_model_path(name, tmp_path),
                                      model)
