"""The pure parts of bench_cuda.py's race against torch (issue 12 item 4), no GPU or torch:
the shared inputs (a real photo letterboxed, fixed BERT tokens), the output comparison, the
median of the rounds' medians and its spread, the interleaved rounds with max-autotune run
once when capped, and a real child killed at its cap reporting how far it got."""
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))

import race  # noqa: E402
import race_run  # noqa: E402

from tx2_infer_core.assets import fetch  # noqa: E402
from tx2_infer_core.errors import InputError  # noqa: E402


def test_compare_against_brute_force():
    rng = np.random.default_rng(0)
    ref = [rng.standard_normal((2, 5)), rng.standard_normal(7) * 10]
    ours = [ref[0] + 0.0, ref[1].copy()]
    ours[0][1, 2] += 0.5      # the largest error sits in the output of small values
    ours[1][3] -= 0.25
    got = race.compare(ours, ref)
    big = max(abs(v) for r in ref for v in r.ravel())
    assert got['max_rel_error'] == pytest.approx(0.5 / big)
    norm = np.sqrt(sum(float(v) ** 2 for r in ref for v in r.ravel()))
    assert got['rel_l2'] == pytest.approx(np.hypot(0.5, 0.25) / norm)
    assert got['max_abs_error'] == pytest.approx(0.5) and got['finite']
    assert race.compare(ref, ref)['max_rel_error'] == 0.0
    ours[1][0] = np.nan
    assert not race.compare(ours, ref)['finite']
    with pytest.raises(InputError, match='output 1'):
        race.compare([ref[0], ref[1][:3]], ref)
    with pytest.raises(InputError, match='1 outputs'):
        race.compare(ref[:1], ref)


def test_accuracy_block_and_saved_outputs_round_trip(tmp_path):
    ref = [np.linspace(-1, 1, 12).reshape(3, 4), np.ones(5)]
    eager = [r + 0.01 for r in ref]
    race.save_outputs(tmp_path / 'e.npz', eager)
    back = race.load_outputs(tmp_path / 'e.npz')
    assert [b.dtype for b in back] == [np.float32] * 2
    acc = race.accuracy(ref, ref, {'eager': back, 'cuda_graph': back})
    assert acc['vs_fp32']['ours']['max_rel_error'] == 0.0
    assert acc['vs_fp32']['eager']['max_rel_error'] == pytest.approx(0.01, rel=1e-4)
    assert acc['ours_vs']['cuda_graph']['max_rel_error'] == pytest.approx(0.01 / 1.01, 1e-4)
    assert race.accuracy(None, ref, {'eager': back})['ours_vs'] == {}


def test_photo_input_is_the_letterboxed_real_photo(tmp_path):
    photo = fetch('bus.jpg')
    img = cv2.imread(str(photo))
    x = race.race_input('yolov5s', photo.parent)
    assert x.shape == (1, 3, 640, 640) and x.dtype == np.float32
    h, w = img.shape[:2]
    new_w = round(w * 640 / h)  # portrait photo: full height, padded left and right
    left = (640 - new_w) // 2
    expect = cv2.resize(img, (new_w, 640), interpolation=cv2.INTER_LINEAR)[:, :, ::-1] / 255
    np.testing.assert_allclose(x[0, :, :, left:left + new_w],
                               expect.transpose(2, 0, 1), atol=1e-6)
    np.testing.assert_allclose(x[0, :, :, :left], 114 / 255, atol=1e-6)
    r = race.race_input('resnet50', photo.parent)  # ImageNet-normalised, RGB order
    assert r.shape == (1, 3, 224, 224)
    assert r[0, 0, 0, 0] == pytest.approx((114 / 255 - 0.485) / 0.229, abs=1e-5)
    with pytest.raises(InputError, match='cannot read'):
        race.photo_tensor(tmp_path / 'missing.jpg', (64, 64))


def test_bert_input_is_a_fixed_token_sequence():
    tokens = race.bert_tokens()
    assert tokens[0] == race.CLS and tokens[-1] == race.SEP and len(tokens) == 128
    a, b = race.race_input('bert_tiny', None), race.race_input('bert_tiny', None)
    assert a.shape == (1, 128, 128) and np.array_equal(a, b) and np.isfinite(a).all()
    assert len({row.tobytes() for row in a[0]}) == 128


def _timing(median, **extra):
    return dict(median_ms=median, p99_ms=median * 1.5, min_ms=median * 0.9, runs=100, **extra)


def test_median_of_medians_spread_and_ratio():
    ours = race.combine_rounds([_timing(1.0), _timing(1.2), _timing(0.9)])
    assert ours['median_ms'] == 1.0 and ours['spread_ms'] == [0.9, 1.2]
    assert ours['repeats'] == 3 and ours['runs'] == 300
    assert ours['spread_pct'] == pytest.approx(30.0)
    graph = race.combine_rounds([_timing(0.5), dict(error='child failed'), _timing(0.6),
                                 _timing(0.56)])
    assert graph['median_ms'] == 0.56 and graph['failed_rounds'] == [dict(error='child failed')]
    ro = race.combine_rounds([_timing(2.0, compile_s=30.0), _timing(2.0, compile_s=5.0)])
    assert ro['compile_s'] == 30.0 and ro['round_compile_s'] == [30.0, 5.0]
    r = race.ratios(dict(contenders={'ours': ours, 'cuda_graph': graph, 'reduce-overhead': ro}))
    assert r['ours/best_torch'] == pytest.approx(1.0 / 0.56)
    assert r['ours/best_compile'] == pytest.approx(0.5)
    capped = race.combine_rounds([dict(finished=False, capped_s=540)])
    assert capped['finished'] is False and capped['repeats'] == 0


class _Res:
    def __init__(self):
        self.meta, self.models = dict(notes=[]), {}

    def model(self, name):
        return self.models.setdefault(name, dict(contenders={}))

    def write(self):
        pass


def _fake_run(ma_finishes, calls):
    def run(phase, name, rnd, cap, args, work):
        calls.append((rnd, name, phase))
        if phase == 'ma' and not ma_finishes:
            return {'max-autotune': dict(finished=False, capped_s=cap, progress={})}
        return {c: _timing(1.0 + rnd / 10, finished=True) for c in race_run.PHASES[phase]}
    return run


@pytest.mark.parametrize('ma_finishes', [False, True])
def test_rounds_are_interleaved_and_a_capped_max_autotune_runs_once(ma_finishes):
    args = SimpleNamespace(phases=['ours', 'fast', 'ma'], torch_models=['bert_tiny'],
                           repeats=3, ours_cap=60, fast_cap=150, ma_cap=540)
    clock = SimpleNamespace(left=lambda: 1e4, elapsed=lambda: 1.0)
    res, calls = _Res(), []
    race_run.rounds(args, clock, None, res, ['bert_tiny', 'yolov8'],
                    run=_fake_run(ma_finishes, calls))
    r1 = [(1, 'bert_tiny', 'ours'), (1, 'bert_tiny', 'fast'), (1, 'bert_tiny', 'ma'),
          (1, 'yolov8', 'ours')]
    assert calls[:4] == r1 and calls[4] == (2, 'bert_tiny', 'ours')
    ma_runs = [c for c in calls if c[2] == 'ma']
    assert len(ma_runs) == (3 if ma_finishes else 1)
    assert len(calls) == 3 * 3 + len(ma_runs)
    bert = res.models['bert_tiny']
    assert bert['contenders']['eager']['median_ms'] == pytest.approx(1.2)
    assert bert['contenders']['eager']['spread_ms'] == pytest.approx([1.1, 1.3])
    assert bert['contenders']['max-autotune'].get('finished') is ma_finishes
    assert 'eager' not in res.models['yolov8']['contenders']


def test_a_child_killed_at_its_cap_says_how_far_it_got(tmp_path, monkeypatch):
    script = ("import json, sys, time\n"
              "json.dump({'contenders': {'max-autotune': {'stage': 'compiling'}}},"
              " open(sys.argv[1], 'w'))\n"
              "print('AUTOTUNE convolution(1x64x56x56)\\nAUTOTUNE addmm(1x2048)', flush=True)\n"
              "time.sleep(60)\n")
    out = tmp_path / 'ma.json'
    monkeypatch.setattr(race_run, 'child_cmd', lambda *a: (
        [sys.executable, '-c', script, str(out)], out))
    args = SimpleNamespace(torch_log=tmp_path / 'torch.log')
    args.torch_log.write_text('AUTOTUNE from_an_earlier_child\n')
    got = race_run.run_round('ma', 'resnet50', 1, 3, args, tmp_path)
    ma = got['max-autotune']
    assert ma['finished'] is False and ma['capped_s'] == 3
    assert ma['progress'] == dict(autotuned_ops=2, last_autotuned='addmm(1x2048)',
                                  stage='compiling')
    assert json.loads(out.read_text())['contenders']['max-autotune']['stage'] == 'compiling'
