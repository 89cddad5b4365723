"""The weight image: weights added with a dtype (conv and linear weights, kept as views and
cast into place in parallel by ``Lowered.weight_image``) hold the bytes of numpy's own cast in
C order, beside the weights added as bytes; the constants they view are left unchanged."""
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tx2_infer_core.cuda import lowering
from tx2_infer_core.cuda.lowering import LoweringContext, Lowered, WeightCast, lower_graph

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
import zoo_data  # noqa: E402


def expected_image(lowered):
    """The image as the chunks' arrays cast one by one with ``astype`` (the oracle)."""
    host = np.zeros(max(lowered.weight_bytes, 1), np.uint8)
    for off, data in lowered.weight_chunks:
        if isinstance(data, WeightCast):
            data = np.ascontiguousarray(data.array.astype(data.dtype)).tobytes()
        host[off:off + len(data)] = np.frombuffer(data, np.uint8)
    return host


def context():
    from tx2_infer_core.ir import Graph
    return LoweringContext(Graph([], [], [], {}, {}), 90, 'tc', 132, {})


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2 ** 32 - 1), shapes=st.lists(
    st.lists(st.integers(1, 9), min_size=1, max_size=4), min_size=1, max_size=6),
       threads=st.sampled_from([1, 3, 8]))
def test_cast_weights_are_numpys_cast_in_c_order(seed, shapes, threads):
    rng = np.random.default_rng(seed)
    lc, kept = context(), []
    for shape in shapes:
        array = (rng.standard_normal(shape) * 1e3).astype(np.float32)
        view = array.transpose(rng.permutation(len(shape)))   # any strides, as conv weights
        kept.append((view, view.copy()))
        if rng.uniform() < 0.5:
            lc.add_weight(view, np.float16)
        else:
            lc.add_weight(view.astype(np.float16))
    lowered = Lowered([], None, {}, lc.weight_chunks, lc.weight_bytes, 90, 'tc')
    saved = lowering.WEIGHT_THREADS
    lowering.WEIGHT_THREADS = threads
    try:
        image = lowered.weight_image()
    finally:
        lowering.WEIGHT_THREADS = saved
    assert image.tobytes() == expected_image(lowered).tobytes()
    for view, before in kept:
        np.testing.assert_array_equal(view, before)


@pytest.mark.parametrize('name', ['open-nsfw', 'ppocr-det', 'vit-focus'])
def test_real_models_weight_image(name):
    from tx2_infer_core.engine_build import default_meta, import_model
    from tx2_infer_core.passes import POINTWISE_LEVEL, optimize
    model = zoo_data.BY_NAME[name]
    path, weights = zoo_data.model_files(model)
    graph = import_model(path, model.input_shape, weights)
    default_meta(graph)
    graph, _ = optimize(graph, POINTWISE_LEVEL)
    lowered = lower_graph(graph, 90, sm_count=132)
    casts = [d for _, d in lowered.weight_chunks if isinstance(d, WeightCast)]
    assert casts and all(c.dtype == np.float16 for c in casts)
    assert lowered.weight_image().tobytes() == expected_image(lowered).tobytes()
