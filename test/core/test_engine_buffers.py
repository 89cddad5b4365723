"""``Engine.run(feeds, out=...)`` and ``Engine.input_buffers()``: filled in place, the results
equal a plain ``run`` on every CPU backend (the cuda backend: test/cuda/test_run_buffers.py),
and bad ``out`` arrays are refused with the engine's error."""
import numpy as np
import pytest

from tx2_infer_core import assets
from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import InputError


@pytest.fixture(scope='module', params=['numpy', 'ort'])
def engine(request):
    cfg, _weights, _ = assets.yolov3_tiny()
    with Engine.build(cfg, backend=request.param) as built:
        yield built


def photo_input(engine):
    import cv2
    spec = engine.input_specs[0]
    image = cv2.resize(cv2.imread(str(assets.fetch('dog.jpg'))), spec.shape[2:][::-1])
    return np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1)[None] / 255.0,
                                dtype=np.float32)


def preallocated(engine):
    return {s.name: np.full(s.shape, np.nan, np.float32) for s in engine.output_specs}


def test_out_and_input_buffers_give_the_plain_results(engine):
    x = photo_input(engine)
    plain = engine.run(x)
    buffers = engine.input_buffers()
    assert set(buffers) == set(engine.graph.inputs)
    name = engine.graph.inputs[0]
    buffers[name][...] = x
    out = preallocated(engine)
    got = engine.run({name: buffers[name]}, out=out)
    assert got is out
    for key in plain:
        np.testing.assert_array_equal(out[key], plain[key])
    assert engine.input_buffers()[name] is buffers[name]     # the same memory every call


def test_out_is_overwritten_by_the_next_run(engine):
    x = photo_input(engine)
    out = preallocated(engine)
    engine.run(x, out=out)
    first = {k: v.copy() for k, v in out.items()}
    engine.run(np.zeros_like(x), out=out)
    assert any(not np.array_equal(first[k], out[k]) for k in out)
    np.testing.assert_array_equal(engine.run(np.zeros_like(x))[engine.graph.outputs[0]],
                                  out[engine.graph.outputs[0]])


@pytest.mark.parametrize('change', ['missing', 'shape', 'dtype', 'readonly', 'not_dict'])
def test_bad_out_is_refused(engine, change):
    out = preallocated(engine)
    name = engine.graph.outputs[0]
    if change == 'missing':
        del out[name]
    elif change == 'shape':
        out[name] = out[name][..., :-1].copy()
    elif change == 'dtype':
        out[name] = out[name].astype(np.float64)
    elif change == 'readonly':
        out[name].flags.writeable = False
    else:
        out = list(out.values())
    with pytest.raises(InputError, match='out'):
        engine.run(photo_input(engine), out=out)
