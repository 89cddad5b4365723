"""The cuda backend's no-copy run: ``input_buffers()`` are its pinned staging arrays (filled
in place, ``run`` copies no input) and ``out=`` receives the outputs; both give exactly the
results of a plain ``run`` on real YOLOv3-tiny, and ``out`` is refilled by every call."""
import numpy as np
import pytest

from tx2_infer_core import assets
from tx2_infer_core.engine import Engine


@pytest.fixture(scope='module')
def engine():
    cfg, _weights, _ = assets.yolov3_tiny()
    with Engine.build(cfg, backend='cuda', precision='fp16') as built:
        yield built


def photo(shape, name='dog.jpg'):
    import cv2
    image = cv2.resize(cv2.imread(str(assets.fetch(name))), shape[2:][::-1])
    return np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1)[None] / 255.0,
                                dtype=np.float32)


def test_pinned_inputs_and_out_match_plain_run(engine):
    name, shape = engine.graph.inputs[0], engine.input_specs[0].shape
    buffers = engine.input_buffers()
    assert buffers[name] is engine.backend.stage_in[name][0]     # the pinned staging array
    out = {s.name: np.full(s.shape, np.nan, np.float32) for s in engine.output_specs}
    for photo_name in ('dog.jpg', 'bus.jpg'):
        x = photo(shape, photo_name)
        plain = engine.run(x)
        buffers[name][...] = x
        engine.run({name: buffers[name]}, out=out)
        for key in plain:
            np.testing.assert_array_equal(out[key], plain[key])
