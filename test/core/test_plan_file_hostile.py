"""Crafted plan files: a header edited with its sha256 recomputed passes the checksum, so every
field must be validated. Each case must end in PlanFileError naming the field, never in a crash,
a traceback of another class or a run with different outputs."""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from tx2_infer_core import assets, plan_file
from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import PlanFileError

PREFIX = struct.Struct('<8sIQ')


@pytest.fixture(scope='module')
def plan(tmp_path_factory):
    """YOLOv3-tiny built and saved (it has a placed concat, route_20)."""
    cfg, weights, _ = assets.yolov3_tiny()
    path = tmp_path_factory.mktemp('hostile') / 'good.tx2plan'
    Engine.build(cfg, weights_path=weights).save(path)
    return path


def split(data: bytes):
    """(header dict, weight blobs) of a plan file's bytes."""
    magic, version, length = PREFIX.unpack_from(data)
    start = PREFIX.size
    return json.loads(data[start:start + length]), data[start + length:-32]


def join(header: dict, blobs: bytes, text=None) -> bytes:
    """A plan file with a valid checksum around ``header`` (or raw header ``text``)."""
    raw = text if text is not None else json.dumps(header).encode()
    body = PREFIX.pack(plan_file.MAGIC, plan_file.FORMAT_VERSION, len(raw)) + raw + blobs
    return body + plan_file.checksum(body)


def crafted(plan, tmp_path, edit, blobs_edit=None):
    """Write the plan with ``edit(header)`` applied (checksum recomputed); returns its path."""
    header, blobs = split(plan.read_bytes())
    edit(header)
    path = tmp_path / 'crafted.tx2plan'
    path.write_bytes(join(header, blobs_edit(blobs) if blobs_edit else blobs))
    return path


def nodes(header):
    return header['graph']['nodes']


def node(header, name):
    return next(n for n in nodes(header) if n['name'] == name)


def value(header, name):
    return next(v for v in header['graph']['values'] if v[0] == name)


def weight(header, name):
    return next(w for w in header['weights'] if w['name'] == name)


def offsets(header):
    return header['memory_plan']['offsets']


def swap_first_nodes(header):
    nodes(header)[0], nodes(header)[1] = nodes(header)[1], nodes(header)[0]


def unalign(header):
    """Move the value at the lowest offset 16 bytes up (still inside the arena)."""
    name = min(offsets(header), key=offsets(header).get)
    offsets(header)[name] += 16


def set_in(getter, key, new):
    def edit(header):
        getter(header)[key] = new
    return edit


CASES = {
    'negative weight offset': (set_in(lambda h: h['weights'][0], 'offset', -64), 'offset'),
    'weight past the blobs': (set_in(lambda h: h['weights'][-1], 'offset', 1 << 40), 'offset'),
    'weight nbytes lie': (set_in(lambda h: h['weights'][0], 'nbytes', 4), 'nbytes'),
    'overlapping weights': (lambda h: h['weights'][1].update(offset=h['weights'][0]['offset']),
                            'overlap'),
    'weight big-endian': (set_in(lambda h: weight(h, 'conv_0.w'), 'dtype', '>f4'), 'dtype'),
    'weight dtype lie': (set_in(lambda h: weight(h, 'conv_0.w'), 'dtype', '<i4'),
                         "reads 'conv_0.w' as int32"),
    'value dtype object': (set_in(lambda h: value(h, 'leaky_0'), 2, 'object'), 'dtype'),
    'value dtype lie': (set_in(lambda h: value(h, 'leaky_0'), 2, 'int32'), 'int32'),
    'input big-endian': (set_in(lambda h: value(h, 'images'), 2, '>f4'), 'dtype'),
    'huge value': (set_in(lambda h: value(h, 'leaky_0'), 1, [1 << 20] * 4), 'limit'),
    'reordered nodes': (swap_first_nodes, 'topological order'),
    'value produced twice': (set_in(lambda h: nodes(h)[1], 'outputs', ['leaky_0']),
                             'produced twice'),
    'unknown op': (set_in(lambda h: nodes(h)[1], 'op', 'Eval'), "'Eval' is not an op"),
    'duplicate node name': (set_in(lambda h: nodes(h)[0], 'name', 'route_20'),
                            'not a new node name'),
    'negative plan offset': (set_in(offsets, 'leaky_0', -256), 'outside the arena'),
    'overlapping plan offsets': (lambda h: offsets(h).update(pool_1=offsets(h)['leaky_0']),
                                 'overlap'),
    'unaligned plan offset': (unalign, 'aligned'),
    'fake placed concat': (lambda h: h['memory_plan']['placed_concats'].append('pool_1'),
                           'not contiguous'),
    'placed concat input moved': (
        lambda h: offsets(h).update({node(h, 'route_20')['inputs'][1]: 0}), 'slice'),
    'huge arena': (set_in(lambda h: h['memory_plan'], 'arena_bytes', 1 << 40), 'arena_bytes'),
    'memory plan missing': (lambda h: h.pop('memory_plan'), 'memory_plan'),
    'infinite offset': (set_in(offsets, 'leaky_0', float('inf')), 'memory_plan'),
    'attrs not an object': (set_in(lambda h: nodes(h)[0], 'attrs', []), 'attrs'),
    'array attr of objects': (set_in(lambda h: nodes(h)[0]['attrs'], 'kernel_shape', {
        '__ndarray__': {'dtype': '|O', 'shape': [1], 'data': 'AAAAAAAAAAA='}}), 'dtype'),
    'graph output undeclared': (set_in(lambda h: h['graph'], 'outputs', ['nowhere']),
                                'produced by no node'),
    'meta not an object': (set_in(lambda h: h['graph'], 'meta', [1]), 'meta'),
}


def test_the_good_plan_loads_and_runs(plan):
    engine = Engine.load(plan)
    x = np.zeros(engine.input_specs[0].shape, np.float32)
    assert all(np.isfinite(y).all() for y in engine.run(x).values())


@pytest.mark.parametrize('case', sorted(CASES))
def test_crafted_header_is_refused_naming_the_problem(plan, tmp_path, case):
    edit, message = CASES[case]
    path = crafted(plan, tmp_path, edit)
    with pytest.raises(PlanFileError, match=message) as info:
        Engine.load(path)
    assert str(path) in str(info.value)


def test_crafted_headers_never_crash_the_process(plan, tmp_path):
    """The cases that used to segfault or abort, each in a child process."""
    for case in ('negative plan offset', 'value dtype object'):
        path = crafted(plan, tmp_path, CASES[case][0])
        code = ('from tx2_infer_core.engine import Engine\n'
                'from tx2_infer_core.errors import PlanFileError\n'
                f'try:\n    Engine.load({str(path)!r}).run\nexcept PlanFileError:\n'
                '    print("refused")\n')
        done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0 and done.stdout.strip() == 'refused', (case, done.stderr)


def test_deeply_nested_header(plan, tmp_path):
    path = tmp_path / 'nested.tx2plan'
    path.write_bytes(join(None, b'', text=b'[' * 100000))
    with pytest.raises(PlanFileError, match='not valid JSON'):
        Engine.load(path)


def test_header_length_past_the_end(plan, tmp_path):
    header, blobs = split(plan.read_bytes())
    raw = json.dumps(header).encode()
    body = PREFIX.pack(plan_file.MAGIC, plan_file.FORMAT_VERSION, 1 << 40) + raw + blobs
    path = tmp_path / 'long.tx2plan'
    path.write_bytes(body + plan_file.checksum(body))
    with pytest.raises(PlanFileError, match='past the end'):
        Engine.load(path)


def test_fifo_and_oversized_files_are_refused_without_reading(plan, tmp_path):
    fifo = tmp_path / 'fifo.tx2plan'
    os.mkfifo(fifo)
    with pytest.raises(PlanFileError, match='not a regular file'):
        Engine.load(fifo)
    with pytest.raises(PlanFileError, match='limit'):
        plan_file.load_plan(plan, max_bytes=1000)
    with pytest.raises(PlanFileError, match='limit'):
        plan_file.load_plan(plan, max_arena_bytes=1 << 20)
