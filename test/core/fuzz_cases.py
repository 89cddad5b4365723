"""Mutation fuzzing of the engine's inputs: generators and one runner, shared by
test/core/test_fuzz.py (a fixed-seed few hundred cases) and bench/fuzz_long.py (many).

A case is ``(kind, seed)``; ``make_case`` builds its input deterministically from the seed and
``run_case`` feeds it to the public API. The oracle: the outcome is 'ok' or the name of one of
the project's error classes (``errors.py``, or the ROS ``ConversionError``); anything else is
an escape ('escape:<type>'), and a case over its time bound is a 'hang'. ``run_batch`` runs a
list of cases in a child process (a crash there is reported with the case that caused it).

Kinds: 'onnx' (field mutations of real small models: dims, dtypes, attributes, node inputs,
op types, opset, initializers), 'plan' (byte flips, and header edits with the sha256
recomputed: anywhere, or only in node attributes and the detector head), 'cfg' (line edits
of the real yolov3-tiny.cfg), 'frame' (raw and compressed images: encodings, sizes, steps,
data lengths).
"""
import copy
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

KINDS = ('onnx', 'plan', 'cfg', 'frame')
CASE_SECONDS = 20           # a case running longer is a hang
PNET_SHAPE = (1, 24, 24, 3)
WORK = Path(tempfile.gettempdir()) / f'tx2_infer_fuzz_{os.getuid()}'
ODD_INTS = [-(1 << 62), -2_000_000_000, -7, -1, 0, 1, 2, 3, 5, 255, 65536, 2_000_000_000,
            1 << 40]
ODD_VALUES = ODD_INTS + [None, '', 'x', 'object', '<f8', '>f4', 1.5, float('inf'), [], {},
                         [[]], {'a': 1}, True]


# ONNX models ----------------------------------------------------------------------------------

def base_models():
    """Real small models: mtcnn-pnet whole, and the first nodes of yolov8-fall."""
    import onnx
    from tx2_infer_core import assets
    pnet = onnx.load(str(assets.fetch('mtcnn-pnet.onnx')))
    for dim, size in zip(pnet.graph.input[0].type.tensor_type.shape.dim, PNET_SHAPE):
        dim.dim_value = size                    # NHWC, dynamic: fixed to a small size
    return [pnet, _prefix(onnx.load(str(assets.fetch('yolov8-fall.onnx'))), 6)]


def _prefix(model, count):
    """The model cut after its first ``count`` nodes (their last output the graph output)."""
    from onnx import helper
    g = model.graph
    nodes = list(g.node[:count])
    used = {i for n in nodes for i in n.input}
    inits = [t for t in g.initializer if t.name in used]
    out = helper.make_tensor_value_info(nodes[-1].output[0], 1, None)
    graph = helper.make_graph(nodes, 'prefix', [g.input[0]], [out], inits)
    small = helper.make_model(graph, opset_imports=list(model.opset_import))
    small.ir_version = model.ir_version
    return small


def _mutate_onnx(model, rng):
    g = model.graph
    choice = rng.integers(9)
    node = g.node[rng.integers(len(g.node))]
    if choice == 0 and node.attribute:
        attr = node.attribute[rng.integers(len(node.attribute))]
        if attr.ints:
            attr.ints[rng.integers(len(attr.ints))] = int(rng.choice(ODD_INTS[1:-1]))
        else:
            attr.i = int(rng.choice(ODD_INTS[1:-1]))
            attr.f = float(rng.choice([-1.0, 0.0, 1e30, float('nan')]))
    elif choice == 1:
        dims = g.input[0].type.tensor_type.shape.dim
        if len(dims):
            dims[rng.integers(len(dims))].dim_value = int(rng.choice([0, 1, 2, 3, 7, 100000]))
    elif choice == 2:
        g.input[0].type.tensor_type.elem_type = int(rng.integers(0, 25))
    elif choice == 3 and node.input:
        names = [i for n in g.node for i in n.output] + [''] + ['nope']
        node.input[rng.integers(len(node.input))] = str(rng.choice(names))
    elif choice == 4:
        node.op_type = str(rng.choice(['Relu', 'Add', 'Concat', 'Reshape', 'Pad', 'Conv',
                                       'Gather', 'Softmax', 'Split', 'Tile', 'NoSuchOp']))
    elif choice == 5:
        model.opset_import[0].version = int(rng.choice([1, 6, 7, 9, 10, 12, 13, 17, 21, 30]))
    elif choice == 6 and g.initializer:
        t = g.initializer[rng.integers(len(g.initializer))]
        if t.dims:
            t.dims[rng.integers(len(t.dims))] = int(rng.choice([0, 1, 2, 3, 1 << 20]))
    elif choice == 7 and g.initializer:
        t = g.initializer[rng.integers(len(g.initializer))]
        t.data_type = int(rng.integers(0, 25))
    else:
        del node.output[:]
        node.output.append(str(rng.choice([g.input[0].name, node.input[0] if node.input
                                          else 'x', 'fresh'])))


def onnx_case(seed, models):
    rng = np.random.default_rng(seed)
    model = copy.deepcopy(models[seed % len(models)])
    for _ in range(1 + rng.integers(3)):
        _mutate_onnx(model, rng)
    return model.SerializeToString()


# Plan files -----------------------------------------------------------------------------------

PREFIX = struct.Struct('<8sIQ')


def base_plan():
    """Bytes of the mtcnn-pnet plan (numpy backend), built once per process."""
    from tx2_infer_core import assets
    from tx2_infer_core.engine import Engine
    WORK.mkdir(exist_ok=True)
    path = WORK / 'base.tx2plan'
    if not path.is_file():
        Engine.build(assets.fetch('mtcnn-pnet.onnx'), input_shape=PNET_SHAPE).save(path)
    return path.read_bytes()


def _paths(tree, prefix=()):
    """Every (path of keys, value) in a JSON tree."""
    yield prefix, tree
    items = tree.items() if isinstance(tree, dict) else (
        enumerate(tree) if isinstance(tree, list) else ())
    for key, value in items:
        yield from _paths(value, prefix + (key,))


def plan_case(seed, data):
    rng = np.random.default_rng(seed)
    if seed % 3 == 0:                       # byte flips (the checksum's job)
        raw = bytearray(data)
        for _ in range(1 + rng.integers(4)):
            raw[rng.integers(len(raw))] ^= 1 << int(rng.integers(8))
        return bytes(raw)
    _, _, length = PREFIX.unpack_from(data)
    start = PREFIX.size
    header = json.loads(data[start:start + length])
    blobs = data[start + length:-32]
    spots = list(_paths(header))[1:]
    if seed % 3 == 2:                       # node attributes and the detector head only
        spots = [s for s in spots if 'attrs' in s[0] or s[0][:3] == ('graph', 'meta', 'head')]
    for _ in range(1 + rng.integers(3)):
        path, old = spots[rng.integers(len(spots))]
        parent = header
        try:                                # an earlier edit may have replaced the path
            for key in path[:-1]:
                parent = parent[key]
        except (TypeError, KeyError, IndexError):
            continue
        new = copy.deepcopy(ODD_VALUES[rng.integers(len(ODD_VALUES))])
        if isinstance(old, int) and not isinstance(old, bool) and rng.integers(2):
            new = old + int(rng.choice([-256, -1, 1, 64, 256, 1 << 20]))
        try:
            parent[path[-1]] = new
        except (TypeError, IndexError):
            continue
    raw = json.dumps(header).encode()
    from tx2_infer_core import plan_file
    body = PREFIX.pack(data[:8], plan_file.FORMAT_VERSION, len(raw)) + raw + blobs
    return body + plan_file.checksum(body)


# Darknet cfgs ---------------------------------------------------------------------------------

CFG_VALUES = ['0', '-1', '1', '3', '100000', '1000000', 'nan', 'inf', '', ',', '1,', 'x',
              '-3,-1', '0,0,0', '99', '2.5', 'leaky', 'mish', '[', '[[[[', '=']


def cfg_case(seed, text):
    rng = np.random.default_rng(seed)
    lines = text.splitlines()
    for _ in range(1 + rng.integers(3)):
        k = int(rng.integers(len(lines)))
        action = rng.integers(4)
        if action == 0 and '=' in lines[k]:
            key = lines[k].split('=')[0]
            lines[k] = f'{key}={rng.choice(CFG_VALUES)}'
        elif action == 1:
            del lines[k]
        elif action == 2:
            lines.insert(k, lines[int(rng.integers(len(lines)))])
        else:
            lines[k] = str(rng.choice(['[convolutional]', '[route]', '[yolo]', '[maxpool]',
                                       '[shortcut]', '[upsample]', '[net]', 'layers=-100',
                                       'mask=0,1,2,99', 'stride=0', 'size=1000000']))
    return '\n'.join(lines) + '\n'


# Frames ---------------------------------------------------------------------------------------

def frame_case(seed, photo_jpeg):
    """A raw ``Image``- or ``CompressedImage``-like message (fields only)."""
    from tx2_infer_ros import conversions
    rng = np.random.default_rng(seed)
    if seed % 2:
        data = bytearray(photo_jpeg[:int(rng.integers(1, len(photo_jpeg) + 1))])
        for _ in range(rng.integers(4)):
            data[rng.integers(min(len(data), 400))] = int(rng.integers(256))
        if rng.integers(4) == 0:
            data = bytearray(b'\x89PNG\r\n\x1a\n\0\0\0\rIHDR') + bytearray(
                struct.pack('>II', *rng.integers(0, 1 << 31, 2).tolist())) + data[:50]
        return types.SimpleNamespace(format=str(rng.choice(['jpeg', 'png', 'bgr8', ''])),
                                     data=bytes(data))
    encoding = str(rng.choice(list(conversions.RAW_ENCODINGS) + ['weird', 'BGR8', '']))
    width, height = (int(rng.choice([0, 1, 2, 3, 7, 64, 65, 641, 1 << 20])) for _ in '..')
    channels, depth = conversions.RAW_ENCODINGS.get(encoding.lower(), (3, 1))
    step = width * channels * depth + int(rng.choice([0, 0, 0, 1, 3, -1, -width - 1]))
    size = max(0, height * step + int(rng.choice([0, 0, 0, 1, -1, -step])))
    size = min(size, 1 << 22)
    return types.SimpleNamespace(encoding=encoding, width=width, height=height, step=step,
                                 is_bigendian=int(rng.integers(2)),
                                 data=rng.integers(0, 256, size, dtype=np.uint8).tobytes())


# Running --------------------------------------------------------------------------------------

class _Hang(BaseException):
    """Raised by the alarm when a case runs past ``CASE_SECONDS``."""


def _alarm(signum, frame):
    raise _Hang()


def _project_errors():
    from tx2_infer_core.errors import Tx2InferError
    errors = (Tx2InferError,)
    try:
        from tx2_infer_ros.conversions import ConversionError
        errors += (ConversionError,)
    except ImportError:
        pass
    return errors


class Inputs:
    """The real inputs the generators mutate, loaded once (lazily, per kind)."""

    def __init__(self):
        self._cache = {}

    def get(self, kind):
        if kind not in self._cache:
            from tx2_infer_core import assets
            self._cache[kind] = {
                'onnx': base_models, 'plan': base_plan,
                'cfg': lambda: assets.fetch('yolov3-tiny.cfg').read_text(),
                'frame': lambda: assets.fetch('dog.jpg').read_bytes()}[kind]()
        return self._cache[kind]


def _exercise(kind, seed, inputs):
    """Feed case (kind, seed) to the public API; returns nothing, raises what it raises."""
    from tx2_infer_core.engine import Engine
    WORK.mkdir(exist_ok=True)
    if kind == 'frame':
        from tx2_infer_ros import conversions
        msg = frame_case(seed, inputs.get('frame'))
        if hasattr(msg, 'format'):
            conversions.compressed_to_bgr(msg)
        else:
            conversions.image_to_bgr(msg)
        return
    if kind == 'cfg':
        from tx2_infer_core import assets
        from tx2_infer_core.darknet import load_darknet
        path = WORK / f'case_{os.getpid()}.cfg'
        path.write_text(cfg_case(seed, inputs.get('cfg')))
        load_darknet(path, assets.fetch('yolov3-tiny.weights'))
        return
    if kind == 'onnx':                  # the importer's own contract first, then the engine's
        from tx2_infer_core.onnx_import import load_onnx
        path = WORK / f'case_{os.getpid()}.onnx'
        path.write_bytes(onnx_case(seed, inputs.get('onnx')))
        load_onnx(path)
        engine = Engine.build(path, backend='numpy')
    else:
        from tx2_infer_core.plan_file import load_plan
        path = WORK / f'case_{os.getpid()}.tx2plan'
        path.write_bytes(plan_case(seed, inputs.get('plan')))
        load_plan(path)
        engine = Engine.load(path, backend='numpy')
    feeds = {s.name: np.zeros(s.shape, s.dtype) for s in engine.input_specs}
    engine.run(feeds)
    engine.close()


def run_case(kind, seed, inputs) -> str:
    """The outcome class of one case (see the module docstring)."""
    errors = _project_errors()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    try:
        _exercise(kind, seed, inputs)
        return 'ok'
    except _Hang:
        return 'hang'
    except errors as exc:
        return type(exc).__name__
    except Exception as exc:  # the oracle: anything else escaped the public API
        return f'escape:{type(exc).__name__}: {str(exc)[:160]}'
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run_batch(cases, timeout=600) -> list:
    """Outcomes of ``cases`` [(kind, seed)] run in one child process: a list of
    (kind, seed, outcome); a case that kills the child is 'crash:<signal or status>' and the
    batch goes on after it in a new child."""
    results, todo = [], list(cases)
    while todo:
        proc = subprocess.run(
            [sys.executable, __file__, json.dumps(todo)], capture_output=True, text=True,
            timeout=timeout, cwd=Path(__file__).resolve().parents[2])
        done = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('[')]
        results += [tuple(d) for d in done]
        todo = todo[len(done):]
        if todo and proc.returncode != 0:
            kind, seed = todo.pop(0)
            results.append((kind, seed, f'crash:{proc.returncode}: {proc.stderr[-300:]}'))
        elif todo:
            raise RuntimeError(f'fuzz child stopped early: {proc.stderr[-2000:]}')
    return results


def _child(cases):
    import logging
    logging.disable(logging.WARNING)
    inputs = Inputs()
    for kind, seed in cases:
        print(json.dumps([kind, seed, run_case(kind, seed, inputs)]), flush=True)


if __name__ == '__main__':
    _child(json.loads(sys.argv[1]))
