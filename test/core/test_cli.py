"""The ``tx2-infer`` command line, run for real (subprocess) on real models and photos."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tx2_infer_core import assets, cli as cli_module, cli_int8, detect
from tx2_infer_core.detector import Detector
from tx2_infer_core.ir import Value

LINE = re.compile(r'^(\S+): (.+?)\s+([01]\.\d{3})  \[\s*([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)'
                  r'\s+([-\d.]+)\]$')


def cli(*args, cwd=None):
    """Run ``python -m tx2_infer_core.cli ARGS``; return the CompletedProcess."""
    return subprocess.run([sys.executable, '-m', 'tx2_infer_core.cli', *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=900)


def parse_detections(stdout):
    """Printed detection lines -> [(image, label, score, [x1, y1, x2, y2])]."""
    found = []
    for line in stdout.splitlines():
        match = LINE.match(line)
        if match:
            image, label, score, *box = match.groups()
            found.append((image, label.strip(), float(score), [float(v) for v in box]))
    return found


def assert_clean_error(result, message):
    assert result.returncode == 2, result.stderr
    assert 'Traceback' not in result.stderr
    assert re.search(message, result.stderr), result.stderr


@pytest.fixture(scope='module')
def darknet_plan(tmp_path_factory):
    cfg, _, _ = assets.yolov3_tiny()
    plan = tmp_path_factory.mktemp('plan') / 'yolov3-tiny.tx2plan'
    result = cli('build', cfg, '-o', plan, '--backend', 'cpu')
    assert result.returncode == 0, result.stderr
    assert 'arena' in result.stdout and plan.is_file()
    return plan


def test_help_lists_the_subcommands():
    result = cli('--help')
    assert result.returncode == 0
    for command in ('build', 'run', 'bench', 'inspect', 'demo'):
        assert command in result.stdout


def test_bad_arguments_and_files_give_one_line_and_status_2(tmp_path):
    assert_clean_error(cli('build', 'm.onnx', '-o', 'p', '--input-shape', '1x3xfoo'),
                       'bad shape')
    assert_clean_error(cli('build', 'm.onnx', '-o', 'p', '--precision', 'int4'),
                       "unknown precision 'int4'")
    assert_clean_error(cli('run', tmp_path / 'missing.onnx', 'x.jpg'), 'model file not found')
    garbage = tmp_path / 'broken.tx2plan'
    garbage.write_bytes(b'not a plan at all' * 10)
    for command in ('run', 'inspect', 'bench'):
        args = [command, garbage] + (['x.jpg'] if command == 'run' else [])
        result = cli(*args, '--backend', 'cpu')
        assert_clean_error(result, 'error')
        assert len(result.stderr.strip().splitlines()) == 1


def test_unreadable_image_is_a_clean_error(darknet_plan, tmp_path):
    not_an_image = tmp_path / 'notes.jpg'
    not_an_image.write_text('hello')
    assert_clean_error(cli('run', darknet_plan, not_an_image, '--backend', 'cpu',
                           '--out', tmp_path), 'cannot decode image')
    assert_clean_error(cli('run', darknet_plan, tmp_path / 'nope.jpg', '--backend', 'cpu'),
                       'image not found')


def test_run_darknet_plan_prints_and_draws_detections(darknet_plan, tmp_path):
    dog = assets.fetch('dog.jpg')
    result = cli('run', darknet_plan, dog, '--backend', 'cpu', '--out', tmp_path / 'out')
    assert result.returncode == 0, result.stderr
    labels = {label for _, label, _, _ in parse_detections(result.stdout)}
    assert {'dog', 'bicycle'} <= labels and labels & {'car', 'truck'}
    drawn = cv2.imread(str(tmp_path / 'out' / 'dog.jpg'))
    original = cv2.imread(str(dog))
    assert drawn.shape == original.shape and (drawn != original).any()
    only_dogs = parse_detections(cli('run', darknet_plan, dog, '--backend', 'cpu', '--out',
                                     tmp_path / 'o2', '--classes', '16').stdout)
    assert only_dogs and {label for _, label, _, _ in only_dogs} == {'dog'}


class OrtEngine:
    """The Engine surface a host-path Detector needs, served by ONNX Runtime (the oracle)."""

    def __init__(self, path):
        import onnxruntime as ort
        self.session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
        self.input_specs = [Value(i.name, tuple(i.shape)) for i in self.session.get_inputs()]
        self.output_specs = [Value(o.name, tuple(o.shape)) for o in self.session.get_outputs()]
        self.meta = {}

    def run(self, feeds):
        return dict(zip([o.name for o in self.output_specs], self.session.run(None, feeds)))


def test_run_yolov8_onnx_matches_onnxruntime(tmp_path):
    pytest.importorskip('onnxruntime')
    model = assets.fetch('yolov8-fall.onnx')
    photos = assets.fetch_photos(['bus.jpg', 'zidane.jpg'])
    names = tmp_path / 'names.txt'
    names.write_text('person\nfallen\n')
    result = cli('run', model, *photos, '--backend', 'cpu', '--labels', names,
                 '--out', tmp_path / 'out')
    assert result.returncode == 0, result.stderr
    ours = parse_detections(result.stdout)
    oracle = Detector(OrtEngine(model), labels=['person', 'fallen'], path='host')
    theirs = [(p.name, d.label, d.score, [d.x1, d.y1, d.x2, d.y2]) for p in photos
              for d in oracle.detect(cv2.imread(str(p)))]
    assert len(theirs) >= 4 and [t[:2] for t in ours] == [t[:2] for t in theirs]
    np.testing.assert_allclose([t[2] for t in ours], [t[2] for t in theirs], atol=2e-3)
    np.testing.assert_allclose([t[3] for t in ours], [t[3] for t in theirs], atol=0.5)
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['bus.jpg', 'zidane.jpg']


def test_inspect_reports_layers_flops_and_memory(darknet_plan):
    result = cli('inspect', darknet_plan)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r'^model: .*yolov3-tiny.cfg  \(precision fp32, head darknet_yolo\)$', out,
                     re.M)
    assert re.search(r'conv_0\s+FusedConv\s+1x16x416x416\s+149\.52\s+Conv\+bias\+LeakyRelu',
                     out)   # 2 * 3*3*3 * 16*416*416 multiply-adds
    total = float(re.search(r'total: ([\d.]+) GFLOPs', out).group(1))
    assert 5.5 < total < 5.65   # Darknet publishes 5.6 BFLOPs for YOLOv3-tiny
    assert re.search(r'memory: arena [\d.]+ MiB, lower bound [\d.]+ MiB .*naive [\d.]+ MiB',
                     out)


def test_bench_compares_with_onnxruntime(darknet_plan):
    result = cli('bench', darknet_plan, '--runs', '2', '--warmup', '1', '--compare-ort',
                 '--backend', 'cpu')
    assert result.returncode == 0, result.stderr
    assert re.search(r'tx2_infer .*median +[\d.]+ ms +p99 +[\d.]+ ms', result.stdout)
    assert re.search(r'onnxruntime .*median +[\d.]+ ms', result.stdout)
    assert 'ratio' in result.stdout


def test_demo_detects_on_the_real_photos(tmp_path):
    result = cli('demo', '--backend', 'cpu', '--out', tmp_path / 'demo')
    assert result.returncode == 0, result.stderr
    found = parse_detections(result.stdout)
    by_image = {}
    for image, label, _, _ in found:
        by_image.setdefault(image, set()).add(label)
    assert {'dog', 'bicycle'} <= by_image['dog.jpg'] and 'person' in by_image['bus.jpg']
    assert len(list((tmp_path / 'demo').iterdir())) == len(assets.PHOTOS)


def test_classifier_plan_keeps_its_input_format_and_matches_onnxruntime(tmp_path):
    import onnxruntime as ort
    model = assets.fetch('open_nsfw.onnx')
    fmt = ('{"color": "BGR", "layout": "NHWC", "mean": [104, 117, 123], "scale": 1, '
           '"resize": "stretch"}')
    plan = tmp_path / 'nsfw.tx2plan'
    assert cli('build', model, '-o', plan, '--backend', 'cpu', '--input-format', fmt
               ).returncode == 0
    photo = assets.fetch('chelsea.png')
    result = cli('run', plan, photo, '--backend', 'cpu', '--out', tmp_path / 'out')
    assert result.returncode == 0, result.stderr
    ours = parse_detections(result.stdout)
    tensor, _ = detect.preprocess(cv2.imread(str(photo)), (1, 224, 224, 3),
                                  {'color': 'BGR', 'layout': 'NHWC', 'mean': [104, 117, 123],
                                   'scale': 1, 'resize': 'stretch'})
    session = ort.InferenceSession(str(model), providers=['CPUExecutionProvider'])
    probs = session.run(None, {'input_0': tensor})[0][0]
    assert [int(label) for _, label, _, _ in ours] == np.argsort(-probs).tolist()
    np.testing.assert_allclose([score for _, _, score, _ in ours], np.sort(probs)[::-1],
                               atol=2e-3)
    assert_clean_error(cli('run', plan, photo, '--input-format', '{"color": "XYZ"}'),
                       "input_format\\['color'\\]")


def _claiming_jpeg(width, height) -> bytes:
    """A real tiny JPEG whose start-of-frame claims ``width`` x ``height``."""
    ok, buf = cv2.imencode('.jpg', np.full((8, 8, 3), 127, np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b'\xff\xc0')
    data[sof + 5:sof + 9] = height.to_bytes(2, 'big') + width.to_bytes(2, 'big')
    return bytes(data)


def test_a_huge_jpeg_header_is_refused_before_decoding(darknet_plan, tmp_path, monkeypatch):
    bomb = tmp_path / 'bomb.jpg'
    bomb.write_bytes(_claiming_jpeg(32000, 32000))
    assert bomb.stat().st_size < 1000
    result = cli('run', darknet_plan, bomb, '--backend', 'cpu', '--out', tmp_path)
    assert_clean_error(result, r'32000x32000 = 1024000000 pixels, more than the limit')
    assert len(result.stderr.strip().splitlines()) == 1
    from tx2_infer_core import cli as cli_module, image_header
    from tx2_infer_core.errors import InputError
    from tx2_infer_core.limits import Limits

    def forbidden(*args):
        raise AssertionError('decoded an image whose header is over the limit')
    monkeypatch.setattr(cv2, 'imdecode', forbidden)
    with pytest.raises(InputError, match='refused before decoding'):
        cli_module.read_image(bomb)
    png = tmp_path / 'small.png'
    cv2.imwrite(str(png), np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(InputError, match='30x20 = 600 pixels'):
        image_header.read_image(png, Limits(max_image_pixels=599))


# ---- the README's and the docstrings' command lines against the parser ------------------
ROOT = Path(__file__).resolve().parents[2]


def documented_commands(text) -> list:
    """The argv of every indented ``tx2-infer ...`` line of ``text`` (continued lines joined)."""
    text = re.sub(r'\\\\?\n\s*', ' ', text)
    return [shlex.split(line.strip())[1:] for line in text.splitlines()
            if line.startswith('    tx2-infer ')]


def test_documented_command_lines_parse_and_name_every_subcommand():
    parser = cli_module.make_parser()
    readme = (ROOT / 'README.md').read_text()
    commands = documented_commands(readme)
    for module in (cli_module, cli_int8):
        commands += documented_commands(module.__doc__)
    assert len(commands) >= 10
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f'documented command does not parse: tx2-infer {" ".join(argv)}')
    subcommands = next(a for a in parser._actions if a.dest == 'command').choices
    bullet = re.search(r'\*\*`tx2-infer`\*\* command line: (.*)', readme)[1]
    assert set(re.findall(r'`(\w+)`', bullet)) == set(subcommands)
    section = readme[readme.index('## Command line'):readme.index('## Tests')]
    options = {o for sub in subcommands.values() for a in sub._actions for o in a.option_strings}
    assert set(re.findall(r'(--[a-z][a-z0-9-]*)', section)) <= options
