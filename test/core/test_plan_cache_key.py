"""The plan cache key: a cached int8/mixed plan is reused only for the same calibration."""
from tx2_infer_core.engine_build import cache_key


def key(**options):
    return cache_key('digest', (1, 3, 416, 416), 'mixed', 'cuda-sm90', options or None)


def test_the_key_follows_the_calibration_options(tmp_path):
    folder = tmp_path / 'frames'
    folder.mkdir()
    (folder / 'a.jpg').write_bytes(b'1')
    first = key(calibration_images=str(folder), accuracy_budget=0.005)
    assert first == key(calibration_images=str(folder), accuracy_budget=0.005)
    assert first != key(calibration_images=str(folder), accuracy_budget=0.01)
    (folder / 'b.jpg').write_bytes(b'22')
    assert first != key(calibration_images=str(folder), accuracy_budget=0.005)


def test_float_plans_keep_their_key():
    assert cache_key('digest', (1, 3, 416, 416), 'fp16', 'cuda-sm90') == \
        cache_key('digest', (1, 3, 416, 416), 'fp16', 'cuda-sm90', None)
    assert key() != key(accuracy_budget=0.005)
