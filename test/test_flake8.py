"""The ROS flake8 line (99 columns) over the whole project, as ament_flake8 would run it."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_flake8_clean():
    paths = ['tx2_infer_core', 'tx2_infer_ros', 'launch', 'test', 'bench', 'setup.py']
    result = subprocess.run([sys.executable, '-m', 'flake8', '--max-line-length', '99',
                             *[p for p in paths if (ROOT / p).exists()]],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
