"""Plan files: a built engine saved and loaded without rebuilding gives identical outputs."""
import cv2
import numpy as np
import pytest

from tx2_infer_core import assets, detect, engine as engine_module
from tx2_infer_core.engine import Engine, cache_key
from tx2_infer_core.errors import PlanFileError


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    cfg, weights, _ = assets.yolov3_tiny()
    engine = Engine.build(cfg, weights_path=weights)
    path = tmp_path_factory.mktemp('plan') / 'yolov3-tiny.tx2plan'
    engine.save(path)
    return engine, path


def photo_tensor(engine, name='dog.jpg'):
    image = cv2.imread(str(assets.fetch(name)))
    tensor, _ = detect.preprocess(image, engine.input_specs[0].shape, engine.meta['input_format'])
    return tensor


def test_loaded_plan_gives_identical_outputs(built):
    engine, path = built
    loaded = Engine.load(path)
    tensor = photo_tensor(engine)
    a, b = engine.run(tensor), loaded.run(tensor)
    for name in engine.graph.outputs:
        assert np.array_equal(a[name], b[name])
    assert loaded.meta['head'] == engine.meta['head']
    assert loaded.meta['labels'][:3] == ['person', 'bicycle', 'car']
    assert loaded.memory_plan.arena_bytes == engine.memory_plan.arena_bytes


def test_loaded_weights_are_views_of_the_file_bytes_not_copies(built):
    """load_plan keeps one buffer (the file's bytes) under every weight: a 100 MB plan is not
    copied twice more (checksum slice, weight slices) on a robot's boot."""
    from tx2_infer_core import plan_file

    def root(array):
        base = array
        while isinstance(base, (np.ndarray, memoryview)):
            base = base.base if isinstance(base, np.ndarray) else base.obj
        return base

    _, path = built
    graph, _, _ = plan_file.load_plan(path)
    roots = {id(root(w)) for w in graph.weights.values()}
    assert len(graph.weights) > 10 and len(roots) == 1
    assert all(not w.flags.writeable for w in graph.weights.values())


def test_plan_with_float16_weights_loads_and_runs(built, tmp_path):
    """A plan kept with its weight matrices stored float16 (what bench/cuda_accuracy.py carries
    to the GPU machine) passes the header checks and runs within float16 rounding; a weight
    stored as another kind (int32) is still refused as a dtype lie."""
    engine, path = built
    loaded = Engine.load(path)
    for name, array in list(loaded.graph.weights.items()):
        if array.dtype == np.float32 and array.ndim >= 2:
            loaded.graph.weights[name] = array.astype(np.float16)
    half = tmp_path / 'half.tx2plan'
    loaded.save(half)
    tensor = photo_tensor(engine)
    ref, out = engine.run(tensor), Engine.load(half).run(tensor)
    for name in engine.graph.outputs:
        err = np.linalg.norm(out[name] - ref[name]) / np.linalg.norm(ref[name])
        assert err < 1e-2, (name, err)
    name = next(n for n, a in loaded.graph.weights.items() if a.ndim == 4)
    loaded.graph.weights[name] = loaded.graph.weights[name].view(np.int16).astype(np.int32)
    loaded.save(tmp_path / 'lie.tx2plan')
    with pytest.raises(PlanFileError, match="reads"):
        Engine.load(tmp_path / 'lie.tx2plan')


def test_loading_does_not_import_or_optimise(built, monkeypatch):
    _, path = built

    def forbidden(*args, **kwargs):
        raise AssertionError('load must not rebuild')
    monkeypatch.setattr(engine_module, 'import_model', forbidden)
    Engine.load(path)


def test_cache_key_covers_model_shape_precision_target():
    base = cache_key('abc', (1, 3, 416, 416), 'fp32', 'cpu')
    assert base == cache_key('abc', (1, 3, 416, 416), 'fp32', 'cpu')
    others = [cache_key('abd', (1, 3, 416, 416), 'fp32', 'cpu'),
              cache_key('abc', (1, 3, 320, 320), 'fp32', 'cpu'),
              cache_key('abc', (1, 3, 416, 416), 'fp16', 'cpu'),
              cache_key('abc', (1, 3, 416, 416), 'fp32', 'cuda-sm_62')]
    assert len({base, *others}) == 5


def test_build_cached_builds_once_then_loads(tmp_path, monkeypatch):
    cfg, weights, _ = assets.yolov3_tiny()
    first = Engine.build_cached(cfg, weights_path=weights, cache_dir=tmp_path)
    plans = list(tmp_path.glob('*.tx2plan'))
    assert len(plans) == 1

    def forbidden(*args, **kwargs):
        raise AssertionError('a cached plan must not be rebuilt')
    monkeypatch.setattr(engine_module, 'import_model', forbidden)
    second = Engine.build_cached(cfg, weights_path=weights, cache_dir=tmp_path)
    tensor = photo_tensor(first)
    out = first.graph.outputs[0]
    assert np.array_equal(first.run(tensor)[out], second.run(tensor)[out])


def test_load_check_accepts_float16_weights_of_a_float32_graph():
    """``verify_shapes`` (run on every load) recomputes dtypes: an elementwise op over a weight
    stored float16 computes float16 where the plan declares float32. Allowed (a narrower
    float); an int result where float is declared, or another shape, is refused."""
    from tx2_infer_core.ir import Graph, Node, Value
    from tx2_infer_core.limits import DEFAULT_LIMITS

    def graph(weight):
        values = {'x': Value('x', (1, 4), 'float32', ''), 'y': Value('y', (1, 4), 'float32', '')}
        return Graph([Node('Sub', 'n0', ['w', 'x'], ['y'], {})], ['x'], ['y'], values,
                     {'w': weight})

    engine_module.verify_shapes(graph(np.ones((1, 4), np.float16)), DEFAULT_LIMITS, 'half')
    lie = graph(np.ones((1, 4), np.float32))
    lie.values['y'].dtype = 'int32'
    with pytest.raises(PlanFileError, match="value 'y'"):
        engine_module.verify_shapes(lie, DEFAULT_LIMITS, 'lie')
    wide = graph(np.ones((3, 4), np.float16))
    with pytest.raises(PlanFileError, match="value 'y'"):
        engine_module.verify_shapes(wide, DEFAULT_LIMITS, 'wide')


def test_shape_check_runs_once_per_plan(built, tmp_path, monkeypatch):
    """Loading re-runs the graph once to check its declared shapes (seconds on a robot's
    CPU); the check is remembered by the plan's sha256, so a later boot skips it, and a
    plan saved by this engine needs none. Another file (another digest) is checked."""
    engine, _ = built
    monkeypatch.setenv('TX2_INFER_CACHE', str(tmp_path / 'cache'))
    calls = []
    real = engine_module.verify_shapes
    monkeypatch.setattr(engine_module, 'verify_shapes',
                        lambda *args: calls.append(args[2]) or real(*args))
    path = tmp_path / 'own.tx2plan'
    engine.save(path)
    Engine.load(path)
    assert calls == []                                   # saved by us: trusted
    engine_module.verified_marker(path).unlink()
    Engine.load(path)
    Engine.load(path)
    assert calls == [path]                               # checked once, then remembered


def test_checksum_covers_every_chunk_in_order(built, tmp_path, monkeypatch):
    """The chunked checksum (4 MiB chunks hashed side by side; here 4 KiB, so the plan has
    many): a byte flipped in the first, a middle or the last chunk, or two chunks swapped, is a
    checksum mismatch; the unchanged file loads."""
    from tx2_infer_core import plan_file
    engine = Engine.load(built[1])
    monkeypatch.setattr(plan_file, 'CHUNK_BYTES', 4096)
    plan = tmp_path / 'p.tx2plan'
    engine.save(plan)
    data = plan.read_bytes()
    body = data[:-32]
    assert len(body) > 8 * 4096 and plan_file.checksum(body) == data[-32:]
    plan_file.load_plan(plan)
    swapped = body[:4096] + body[2 * 4096:3 * 4096] + body[4096:2 * 4096] + body[3 * 4096:]
    edits = [body[:100] + bytes([body[100] ^ 1]) + body[101:], body[:len(body) // 2] + b'\x55' +
             body[len(body) // 2 + 1:], body[:-1] + bytes([body[-1] ^ 0x80]), swapped]
    for bad in edits:
        assert bad != body
        plan.write_bytes(bad + data[-32:])
        with pytest.raises(PlanFileError, match='checksum mismatch'):
            plan_file.load_plan(plan)


def test_cache_key_changes_with_the_plan_format(monkeypatch):
    """A cached plan of an older file format is rebuilt (a new key), not refused at boot."""
    from tx2_infer_core import plan_file
    old = cache_key('abc', (1, 3, 8, 8), 'fp16', 'cuda')
    monkeypatch.setattr(plan_file, 'FORMAT_VERSION', plan_file.FORMAT_VERSION + 1)
    assert cache_key('abc', (1, 3, 8, 8), 'fp16', 'cuda') != old
