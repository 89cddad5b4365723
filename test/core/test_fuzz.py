"""Fuzzing the engine's inputs (generators in fuzz_cases.py): mutated real ONNX models, plan
files (byte flips, and header edits with the checksum recomputed), Darknet cfgs and camera
frames. Every outcome is success or one of the project's errors: never another exception,
a crash (model and plan cases run in a child process) or a hang. Fixed seeds: the same cases
every run; bench/fuzz_long.py runs many more."""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fuzz_cases

pytest.importorskip('cv2')
FIXED = settings(derandomize=True, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))


def assert_contract(results):
    bad = [r for r in results if r[2].startswith(('escape', 'crash', 'hang'))]
    assert not bad, f'{len(bad)} of {len(results)} cases broke the error contract: {bad[:5]}'


@pytest.mark.parametrize('kind, count', [('onnx', 120), ('plan', 120)])
def test_models_and_plans_in_a_child_process(kind, count):
    # a fixed seed range; the child reports each case, so a crash names its case
    assert_contract(fuzz_cases.run_batch([(kind, seed) for seed in range(count)]))


@pytest.fixture(scope='module')
def inputs():
    return fuzz_cases.Inputs()


@settings(FIXED, max_examples=40)
@given(seed=st.integers(0, 2**31))
def test_darknet_cfg_line_edits(inputs, seed):
    outcome = fuzz_cases.run_case('cfg', seed, inputs)
    assert not outcome.startswith(('escape', 'hang')), (seed, outcome)


@settings(FIXED, max_examples=150)
@given(seed=st.integers(0, 2**31))
def test_raw_and_compressed_frames(inputs, seed):
    pytest.importorskip('tx2_infer_ros.conversions')
    outcome = fuzz_cases.run_case('frame', seed, inputs)
    assert not outcome.startswith(('escape', 'hang')), (seed, outcome)
