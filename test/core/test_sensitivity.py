"""Per-layer sensitivity and the mixed schedule (tx2_infer_core/int8/sensitivity.py) on
YOLOv3-tiny at 128x128 and real frames; the greedy rule on known numbers."""
import numpy as np
import pytest

import int8_cases

from tx2_infer_core.int8 import calibrate as cal
from tx2_infer_core.int8 import frames as fr
from tx2_infer_core.int8 import sensitivity as sens
from tx2_infer_core.int8.build import build_quantized
from tx2_infer_core.reference import execute


@pytest.fixture(scope='module')
def tiny():
    graph, _, _ = int8_cases.yolov3_tiny()
    frames = fr.default_frames(video_frames_each=1)
    calib = fr.input_feeds(frames.calibration[:2] + frames.calibration[-1:], graph)
    held = fr.input_feeds(frames.held_out[:1] + frames.held_out[-1:], graph)
    thresholds = cal.calibrate(graph, calib, 'minmax', show=lambda it, *a: it)[0]
    return graph, calib, held, thresholds


def test_changed_only_execution_is_exact(tiny):
    graph, calib, _, thresholds = tiny
    full = sens.full_schedule(graph, thresholds)
    assert len(full) == 13
    keys = {sens.node_key(n) for n in graph.nodes}
    env = execute(graph, calib[0], keep_all=True)
    for names in (['conv_4'], ['conv_13', 'conv_22'], list(full)):
        quantized, _ = build_quantized(graph, {n: full[n] for n in names})
        want = execute(quantized, calib[0])
        got = sens.execute_changed(quantized, env, keys)
        for name in graph.outputs:
            np.testing.assert_array_equal(got[name], want[name])
            assert not np.array_equal(got[name], env[name])      # the change reached it


def test_agreement_is_one_for_fp32_and_lower_for_all_int8(tiny):
    graph, calib, _, thresholds = tiny
    evaluator = sens.Evaluator(graph, calib)
    assert evaluator.metric(evaluator.truth) == 1.0
    assert evaluator.agreement({}) == 1.0
    entropy = cal.calibrate(graph, calib, 'entropy', show=lambda it, *a: it)[0]
    loss = 1 - evaluator.agreement(sens.full_schedule(graph, entropy))
    assert 0 < loss <= 1        # entropy on every layer of a detector: known to hurt


def test_greedy_takes_best_gain_per_loss_within_budget():
    gains = {'a': 10.0, 'b': 10.0, 'c': 1.0, 'd': 0.0, 'e': 5.0}
    losses = {'a': 0.004, 'b': 0.001, 'c': 0.0, 'd': 0.0, 'e': 0.003}
    decisions = []
    chosen = sens.greedy(list(gains), gains, losses, 0.005, decisions)
    # ratios: c inf (loss 0), b 1e4, a 2.5e3, e 1.7e3; a fits (0.005), e would not; d saves 0
    assert chosen == ['c', 'b', 'a']
    assert [d['layer'] for d in decisions] == ['c', 'b', 'a', 'e', 'd']
    assert 'no speed gain' in decisions[-1]['why'] and 'budget' in decisions[3]['why']


def test_mixed_schedule_honours_its_budget_on_held_out_frames(tiny):
    graph, calib, held, thresholds = tiny
    schedule, report = sens.choose_schedule(graph, thresholds, calib, held, budget=0.005)
    assert report['gain_source'] == 'flops'
    assert report['held_out_loss'] <= 0.005
    measured = 1 - sens.Evaluator(graph, held).agreement(schedule)
    assert measured == pytest.approx(report['held_out_loss'])
    logged = {d['layer'] for d in report['decisions']}
    assert logged == {row['layer'] for row in report['layers']}
    assert {row['layer'] for row in report['layers'] if row['int8']} == set(schedule)


def test_measured_timings_replace_flops(tiny):
    graph, _, _, thresholds = tiny
    names = list(sens.full_schedule(graph, thresholds))
    gains, source = sens.layer_gains(graph, names, {'conv_12': 0.3, 'conv_0': -0.1})
    assert source == 'measured'
    assert gains['conv_12'] == 0.3 and gains['conv_0'] == -0.1 and gains['conv_2'] == 0.0


def test_each_layer_takes_the_method_that_loses_least_then_disturbs_least():
    """Per layer the calibration method of least loss alone; among equal losses (most layers
    of a detector on a few frames) the one that changes the raw outputs least."""
    class Fixed:
        table = {('m1', 'a'): (1.0, 0.3), ('m2', 'a'): (1.0, 0.1),
                 ('m1', 'b'): (0.99, 0.0), ('m2', 'b'): (1.0, 0.5),
                 ('m1', 'c'): (1.0, 0.2), ('m2', 'c'): (1.0, 0.2)}

        def measure(self, schedule):
            [(name, method)] = schedule.items()
            return self.table[(method, name)]

    schedules = {m: {n: m for n in 'abc'} for m in ('m1', 'm2')}
    best, losses, errors, methods = sens.best_per_layer(Fixed(), schedules)
    assert methods == {'a': 'm2', 'b': 'm2', 'c': 'm1'}       # c: a tie, the first method
    assert losses == {'a': 0.0, 'b': 0.0, 'c': 0.0} and errors == {'a': 0.1, 'b': 0.5,
                                                                   'c': 0.2}


class PrefixLosses:
    """A held-out evaluator whose loss depends on how many layers are INT8."""

    def __init__(self, losses):
        self.losses, self.asked = losses, []

    def agreement(self, schedule):
        self.asked.append(len(schedule))
        return 1.0 - self.losses[len(schedule)]


@pytest.mark.parametrize('losses, kept', [
    ([0, 0, 0.001, 0.004, 0.006, 0.01, 0.02, 0.02, 0.03], 3),
    ([0, 0.006, 0.006, 0.007, 0.01], 0),
    ([0, 0, 0, 0, 0.0049, 0.0051], 4)])
def test_back_off_keeps_the_longest_prefix_within_budget_by_bisection(losses, kept):
    order = [f'l{i}' for i in range(len(losses) - 1)]
    held, decisions = PrefixLosses(losses), []
    chosen, loss = sens.longest_prefix(held, {n: n for n in order}, order, 0.005, decisions)
    assert chosen == order[:kept] and loss == pytest.approx(losses[kept])
    assert len(held.asked) <= len(order).bit_length()          # a bisection, not a walk
    assert [d['layer'] for d in decisions] == order[kept:]      # each dropped layer logged
    assert all(d['step'] == 'back-off' and not d['int8'] for d in decisions)
