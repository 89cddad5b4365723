"""bench/benchlib.py, the bench scripts' shared helpers (no GPU: a fake driver and stream)."""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))

import benchlib  # noqa: E402


def test_stats_and_wall_times_count_runs_after_warmup():
    calls = []
    times = benchlib.wall_times(lambda: calls.append(1), runs=7, warmup=3)
    assert len(calls) == 10 and len(times) == 7 and min(times) >= 0
    summary = benchlib.stats([1.0, 2.0, 3.0, 4.0, 100.0], mean=True, minimum=True)
    assert summary['median_ms'] == 3.0 and summary['min_ms'] == 1.0
    assert summary['mean_ms'] == 22.0 and summary['runs'] == 5
    assert 4.0 < summary['p99_ms'] <= 100.0


class _Event:
    clock = [0.0]

    def record(self, stream):
        self.at = self.clock[0]

    def synchronize(self):
        pass

    def time_since(self, start):
        return self.at - start.at


class _Driver:
    Event = _Event


class _Stream:
    def synchronize(self):
        pass


def test_event_times_measure_each_launch_between_its_events():
    launches = []

    def launch():
        launches.append(1)
        _Event.clock[0] += len(launches)          # launch n takes n ms on the fake clock

    times = benchlib.event_times(_Driver, _Stream(), launch, runs=3, warmup=2)
    assert times == [3.0, 4.0, 5.0] and len(launches) == 5


def test_versions_cpu_name_and_json(tmp_path):
    found = benchlib.versions('numpy', 'surely-not-a-distribution')
    assert found['numpy'][0].isdigit() and found['surely-not-a-distribution'] == 'not installed'
    assert found['python'].count('.') == 2
    assert benchlib.cpu_name()
    assert benchlib.command_output(['surely-not-a-command']) == ''
    path = benchlib.write_json(tmp_path / 'a' / 'r.json', {'x': 1})
    assert json.loads(path.read_text()) == {'x': 1} and path.read_text().endswith('\n')
