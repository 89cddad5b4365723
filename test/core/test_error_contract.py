"""One error contract: bad parameters, models and plans end in the project's errors; the CLI
turns them (and unreadable files) into exit status 2 and one line."""
import json
import math
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tx2_infer_core.cli import main
from tx2_infer_core.detect import load_labels
from tx2_infer_core.detect_params import DetectParams
from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import InputError, PlanFileError
from tx2_infer_core import plan_file
from tx2_infer_core.plan_file import _PREFIX as PREFIX


@pytest.mark.parametrize('kw', [dict(conf_threshold=math.nan), dict(conf_threshold=-0.1),
                                dict(iou_threshold=1.5), dict(iou_threshold='0.5'),
                                dict(max_detections=-1), dict(max_detections=2.5),
                                dict(classes=['cat']), dict(classes=[-3])])
def test_bad_detect_params_are_input_errors(kw):
    with pytest.raises(InputError, match=next(iter(kw))):
        DetectParams(**kw)


def test_good_detect_params_keep_numpy_numbers():
    params = DetectParams(np.float32(0.3), 0.5, np.int64(7), [np.int64(2), 1])
    assert params.classes == (1, 2) and params.max_detections == 7


@pytest.fixture
def relu_model(tmp_path):
    graph = helper.make_graph(
        [helper.make_node('Relu', ['x'], ['y'])], 'g',
        [helper.make_tensor_value_info('x', TensorProto.FLOAT, ['N', 3, 'H', 'W'])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)])
    path = tmp_path / 'relu.onnx'
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)]), str(path))
    return path


@pytest.mark.parametrize('argv', [
    ['build', '{model}', '--input-shape', '1x3x20000x20000', '-o', '{tmp}/p.tx2plan'],
    ['build', '{tmp}', '-o', '{tmp}/p.tx2plan'],                   # a folder, not a model
    ['run', '{model}', '--input-shape', '1x3x8x8', '{tmp}/missing.jpg']])
def test_cli_exits_2_with_one_line(relu_model, tmp_path, capsys, argv):
    argv = [a.format(model=relu_model, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()   # progress lines may come first
    assert lines[-1].startswith(f'tx2-infer {argv[0]}: error: '), lines
    assert sum(': error: ' in line for line in lines) == 1, lines


def test_a_plan_declaring_a_shape_its_op_does_not_compute_is_refused(relu_model, tmp_path):
    path = tmp_path / 'relu.tx2plan'
    Engine.build(relu_model, input_shape=(1, 3, 8, 8)).save(path)
    data = path.read_bytes()
    _, _, length = PREFIX.unpack_from(data)
    header = json.loads(data[PREFIX.size:PREFIX.size + length])
    for value in header['graph']['values']:     # y declared (1, 3, 4, 16): same bytes
        if value[0] == 'y':
            value[1] = [1, 3, 4, 16]
    raw = json.dumps(header).encode()
    version = plan_file.FORMAT_VERSION
    body = PREFIX.pack(data[:8], version, len(raw)) + raw + data[PREFIX.size + length:-32]
    path.write_bytes(body + plan_file.checksum(body))
    with pytest.raises(PlanFileError, match="value 'y' is declared"):
        Engine.load(path)


def test_labels_from_a_fifo_or_a_device_are_refused_without_reading(tmp_path):
    fifo = tmp_path / 'labels.fifo'
    os.mkfifo(fifo)
    for path in (fifo, '/dev/zero', tmp_path / 'missing.names'):
        with pytest.raises(InputError, match='labels file'):
            load_labels(path)
    names = tmp_path / 'ok.names'
    names.write_text('cat\n\ndog\n')
    assert load_labels(names) == ['cat', 'dog']


@pytest.mark.parametrize('feeds', [None, 'x', 3, [np.zeros((1, 3, 8, 8), np.float32)]])
def test_run_with_feeds_that_are_not_a_dict_is_an_input_error(relu_model, feeds):
    engine = Engine.build(relu_model, input_shape=(1, 3, 8, 8))
    with pytest.raises(InputError, match='feeds must be a dict'):
        engine.run(feeds)
