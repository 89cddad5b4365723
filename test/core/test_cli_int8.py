"""``tx2-infer calibrate`` and the INT8 build flags, run for real (subprocess) on YOLOv3-tiny
at 128x128 and real photos; the engine's int8 plans through save and load."""
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tx2_infer_core import assets, plan_file


def cli(*args):
    return subprocess.run([sys.executable, '-m', 'tx2_infer_core.cli', *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def assert_clean_error(result, message):
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    assert 'Traceback' not in result.stderr


@pytest.fixture(scope='module')
def photos_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp('calib')
    for path in assets.fetch_photos()[:8]:
        shutil.copy(path, folder / path.name)
    return folder


def test_calibrate_writes_the_report_and_a_plan_that_loads(photos_dir, tmp_path):
    from tx2_infer_core.engine import Engine
    cfg, weights, _ = assets.yolov3_tiny()
    plan = tmp_path / 'tiny-int8.tx2plan'
    result = cli('calibrate', cfg, '--weights', weights, '--input-shape', '1x3x128x128',
                 '--backend', 'numpy', '--precision', 'int8', '--calibration-method', 'minmax',
                 '--calibration-images', photos_dir, '--report', tmp_path / 'rep', '-o', plan)
    assert result.returncode == 0, result.stderr
    assert 'int8: 13 layers in INT8 (flops gains)' in result.stdout
    table = (tmp_path / 'rep' / 'yolov3-tiny-int8.csv').read_text().splitlines()
    assert table[0] == 'layer,method,x_scale,sensitivity,output_error,gain,int8'
    assert len(table) == 14
    assert '| conv_0 | minmax |' in (tmp_path / 'rep' / 'yolov3-tiny-int8.md').read_text()
    options = plan_file.load_plan(plan)[2]
    assert options['precision'] == 'int8'
    with Engine.load(plan, 'numpy') as engine:
        info = engine.meta['int8']
        assert info['methods'] == ['minmax'] and info['gpu'] == 'flops'
        assert info['frames'] == {'calibration': 6, 'held_out': 2}
        assert len(info['schedule']) == 13
        assert sum(n.op == 'FusedConvInt8' for n in engine.graph.nodes) == 13
        x = np.full((1, 3, 128, 128), 0.5, np.float32)
        assert all(np.isfinite(v).all() for v in engine.run(x).values())


def test_too_few_calibration_images_is_one_clear_line(tmp_path, photos_dir):
    cfg, weights, _ = assets.yolov3_tiny()
    few = tmp_path / 'few'
    few.mkdir()
    for path in sorted(photos_dir.iterdir())[:3]:
        shutil.copy(path, few / path.name)
    result = cli('build', cfg, '--weights', weights, '-o', tmp_path / 'p.tx2plan',
                 '--backend', 'numpy', '--precision', 'mixed', '--calibration-images', few)
    assert_clean_error(result, 'has 3 images; at least 8 are needed')
    result = cli('build', cfg, '-o', 'p', '--precision', 'mixed', '--accuracy-budget', '2')
    assert_clean_error(result, "bad accuracy budget '2'")


def test_int8_options_are_checked_before_any_work():
    from tx2_infer_core.engine import PRECISIONS, Engine
    from tx2_infer_core.int8.calibrate import CalibrationError
    assert PRECISIONS == ('fp32', 'fp16', 'int8', 'mixed')
    cfg, weights, _ = assets.yolov3_tiny()
    for options, words in (({'accuracy_budget': -1}, 'accuracy_budget'),
                           ({'method': 'kl'}, "unknown calibration method 'kl'"),
                           ({'budget': 0.1}, "unknown int8 option(s) ['budget']")):
        with pytest.raises(CalibrationError) as info:
            Engine.build(cfg, (1, 3, 128, 128), 'int8', 'numpy', weights, int8_options=options)
        assert words in str(info.value)
