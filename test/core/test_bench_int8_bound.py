"""bench/int8_bound.py: the best per-layer pick of fp16 mma, int8 mma and int8 dp4a, summed
per model with each layer's repeat count, over the FP16 sum."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
from int8_bound import model_bounds  # noqa: E402


def row(model, count, fp16, mma, dp4a):
    return {'model': model, 'count': count, 'fp16_mma': {'ms': fp16},
            'int8_mma': {'ms': mma}, 'int8_dp4a': {'ms': dp4a}}


def test_each_layer_takes_its_fastest_path_times_its_count():
    got = model_bounds([row('a', 2, 0.010, 0.008, 0.012),    # int8 mma, twice
                        row('a', 1, 0.005, 0.006, 0.007),    # fp16 stays
                        row('a', 1, 0.020, 0.015, 0.011),    # dp4a
                        row('b', 1, 0.004, 0.002, 0.003)])
    a = got['a']
    assert a['fp16_ms'] == pytest.approx(0.045)
    assert a['best_ms'] == pytest.approx(0.016 + 0.005 + 0.011)
    assert a['bound'] == pytest.approx(0.032 / 0.045, abs=1e-3)
    assert (a['int8_layers'], a['layers']) == (2, 3)
    assert got['b']['bound'] == pytest.approx(0.5)
