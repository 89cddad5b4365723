"""INT8 calibration (tx2_infer_core/int8/calibrate.py, frames.py): thresholds on known
distributions against independent oracles, the cache, the frame sets and their errors."""
import numpy as np
import pytest

import int8_cases

from tx2_infer_core.int8 import calibrate as cal
from tx2_infer_core.int8 import frames as fr


def naive_entropy_threshold(hist, top, levels):
    """The KL search written bin by bin, as the TensorRT slides and MXNet describe it."""
    n = len(hist)
    best = (np.inf, n)
    for i in range(levels, n + 1):
        p = [float(h) for h in hist[:i]]
        p[-1] += float(sum(hist[i:]))
        merged = i // levels
        q = [0.0] * i
        for j in range(levels):
            lo, hi = j * merged, (i if j == levels - 1 else (j + 1) * merged)
            nonzero = [k for k in range(lo, hi) if hist[k] != 0]
            total = float(sum(hist[lo:hi]))
            for k in nonzero:
                q[k] = total / len(nonzero)

        def smoothed(d):
            zeros = sum(1 for v in d if v == 0)
            take = 1e-4 * zeros / (len(d) - zeros) if zeros else 0.0
            return [1e-4 if v == 0 else max(v - take, 1e-7) for v in d]
        if sum(q) == 0:
            continue
        ps, qs = smoothed(p), smoothed(q)
        sp, sq = sum(ps), sum(qs)
        kl = sum(a / sp * np.log((a / sp) / (b / sq)) for a, b in zip(ps, qs) if a > 0)
        if kl < best[0]:
            best = (kl, i)
    return best[1] * top / n


def gaussian(n=400_000, seed=0):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


def test_entropy_matches_the_bin_by_bin_search():
    x = gaussian(50_000)
    top = float(np.abs(x).max())
    hist = cal.abs_histogram(x, top, bins=256)
    assert cal.entropy_threshold(hist, top, levels=32) == pytest.approx(
        naive_entropy_threshold(hist, top, 32), rel=1e-9)


def test_entropy_of_a_gaussian_clips_its_tail():
    x = gaussian(2_000_000)
    top = float(np.abs(x).max())                # 5.35 sigma for this sample
    t = cal.entropy_threshold(cal.abs_histogram(x, top), top)
    # 128 levels of a unit Gaussian: KL keeps about 4.7 sigma and drops the sparse tail
    assert 4.4 < t < 5.0 < top
    assert cal.threshold(cal.abs_histogram(x, top), top, 'minmax') == top


def test_entropy_ignores_an_outlier_spike_minmax_does_not():
    x = np.concatenate([gaussian(), np.full(20, 100.0, np.float32)])
    top = float(np.abs(x).max())
    hist = cal.abs_histogram(x, top)
    assert top == 100.0
    assert cal.threshold(hist, top, 'minmax') == 100.0
    t = cal.threshold(hist, top, 'entropy')
    # the search starts at 128 of 2048 bins (6.25 here); the spike must not drag it to 100
    assert 6.25 <= t < 20.0, t


@pytest.mark.parametrize('percentile', [50.0, 99.0, 99.99])
def test_percentile_agrees_with_numpy_within_one_bin(percentile):
    x = np.concatenate([gaussian(), 8 * gaussian(1000, seed=1)])
    top = float(np.abs(x).max())
    hist = cal.abs_histogram(x, top)
    got = cal.threshold(hist, top, 'percentile', percentile)
    # the sample where the empirical CDF reaches the percentile lies in the returned bin
    want = np.percentile(np.abs(x), percentile, method='inverted_cdf')
    assert got == pytest.approx(want, abs=top / cal.NUM_BINS)


@pytest.mark.parametrize('percentile', [10.0, 62.5, 99.99])
def test_percentile_interpolates_inside_its_bin(percentile):
    x = ((np.arange(204_800) + 0.5) / 204_800).astype(np.float32)    # 100 per bin on [0, 1]
    got = cal.threshold(cal.abs_histogram(x, 1.0), 1.0, 'percentile', percentile)
    assert got == pytest.approx(percentile / 100, abs=1e-6)


def test_bad_method_and_percentile_are_calibration_errors():
    with pytest.raises(cal.CalibrationError, match='entropy, minmax, percentile'):
        cal.threshold(np.ones(4), 1.0, 'kl')
    with pytest.raises(cal.CalibrationError, match='percentile'):
        cal.percentile_threshold(np.ones(4), 1.0, 101)


def test_histogram_counts_every_value_once():
    x = np.array([0.0, -0.5, 0.49, 1.0, -2.0], np.float32)     # 2.0 lands in the last bin
    hist = cal.abs_histogram(x, 1.0, bins=4)
    assert hist.tolist() == [1, 1, 1, 2]


@pytest.fixture(scope='module')
def tiny():
    """YOLOv3-tiny at 128x128, optimised (FusedConv), and 3 + 2 real frames."""
    from tx2_infer_core.engine import model_digest
    graph, cfg, weights = int8_cases.yolov3_tiny()
    frames = fr.default_frames(video_frames_each=1).limit(3, 2)
    return graph, frames, model_digest(cfg, weights)


def test_onnx_runtime_intermediates_match_the_reference(tiny):
    from tx2_infer_core.reference import execute
    graph, frames, _ = tiny
    feeds = fr.input_feeds(frames.calibration[:1], graph)[0]
    tensors = cal.conv_inputs(graph)
    assert len(tensors) == 12 and tensors[0] == graph.inputs[0]
    got = cal.tensor_runner(graph, tensors)(feeds)
    want = execute(graph, feeds, keep_all=True)
    for name in tensors:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)


def test_cache_hits_only_for_the_same_model_frames_and_method(tiny, tmp_path):
    graph, frames, digest = tiny
    feeds = fr.input_feeds(frames.calibration, graph)
    runs = []

    def counting(items, desc, total=None):
        runs.append(desc)
        return items

    def go(model=digest, frames_digest=frames.digest, method='entropy'):
        runs.clear()
        result, info = cal.calibrate(graph, feeds, method, model, frames_digest,
                                     cache_dir=tmp_path, show=counting)
        assert info['cached'] == (not runs)
        return result, info['cached']

    first, cached = go()
    assert not cached and set(first) == set(cal.conv_inputs(graph))
    again, cached = go()
    assert cached and again == first
    assert not go(model='0' * 64)[1]
    assert not go(frames_digest=frames.limit(2).digest)[1]
    assert not go(method='minmax')[1]
    assert go(method='minmax')[1]


def test_a_small_or_missing_folder_is_a_calibration_error(tmp_path):
    import cv2
    from tx2_infer_core import assets
    with pytest.raises(cal.CalibrationError, match='does not exist'):
        fr.folder_frames(tmp_path / 'nope')
    photo = cv2.imread(str(assets.fetch('dog.jpg')))
    for k in range(3):
        cv2.imwrite(str(tmp_path / f'{k}.jpg'), photo)
    with pytest.raises(cal.CalibrationError, match='has 3 images; at least 8'):
        fr.folder_frames(tmp_path)
    for k in range(3, 9):
        cv2.imwrite(str(tmp_path / f'{k}.jpg'), photo)
    frames = fr.folder_frames(tmp_path)
    assert [n for n, _ in frames.held_out] == ['3.jpg', '7.jpg']
    assert len(frames.calibration) == 7
    assert issubclass(cal.CalibrationError, __import__('tx2_infer_core.errors').errors
                      .Tx2InferError)


def test_default_frames_are_real_and_split():
    frames = fr.default_frames(video_frames_each=2)
    cal_names = [n for n, _ in frames.calibration]
    held_names = [n for n, _ in frames.held_out]
    assert not set(cal_names) & set(held_names)
    assert 'vtest#0' in cal_names and 'vtest#25' in held_names
    assert all(img.dtype == np.uint8 and img.ndim == 3 for _, img in frames.calibration)
    assert frames.digest == fr.default_frames(video_frames_each=2).digest
