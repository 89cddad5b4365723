"""Jetsons run older Pythons (JetPack 5: 3.8, JetPack 6 with ROS 2 Humble: 3.10): vermin checks
that the engine, the ROS node and the launch file need at most Python 3.8."""
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip('vermin', reason='vermin is not installed (pip install vermin)')
ROOT = Path(__file__).resolve().parents[1]
PATHS = ('tx2_infer_core', 'tx2_infer_ros', 'launch')
RUN_VERMIN = 'import sys; from vermin import main; sys.argv[0] = "vermin"; sys.exit(main())'


def vermin(*paths):
    return subprocess.run([sys.executable, '-c', RUN_VERMIN, '--target=3.8-', '--violations',
                           '--no-tips', '--eval-annotations', '--feature', 'union-types',
                           *paths], cwd=ROOT, capture_output=True, text=True)


def test_code_runs_on_python_3_8():
    result = vermin(*PATHS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_vermin_catches_newer_code(tmp_path):
    newer = tmp_path / 'newer.py'
    newer.write_text('def f(x: int | None) -> list[int]:\n    return "a".removeprefix("b")\n')
    result = vermin(str(newer))
    assert result.returncode != 0 and 'removeprefix' in result.stdout, result.stdout
