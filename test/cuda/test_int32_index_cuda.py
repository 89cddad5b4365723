"""Int32 index values (``cuda/int32_values.py``) on the GPU against the numpy reference: the
YOLOv8/v10-like post-process of ``test/core/yolo_post.py`` (TopK 300 of 8400 anchors, then
GatherElements, GatherND, ArgMax, integer Mod/Div, Cast to float; a second TopK over 24000),
on the tensor-core and SIMT paths and replayed; integer graph inputs and outputs past 2048;
Cast into int32 and integer Div/Mod. Every input is exact in FP16 and these ops move or count
values, so the outputs must equal the numpy ones exactly, indices included.
``test/core/test_cuda_int32.py`` checks the same lowerings without a GPU."""
import numpy as np
import pytest

from conftest import assert_replays_the_same, core_module, run_graph
from tx2_infer_core import reference

YOLO = core_module('yolo_post')
CASES = core_module('index_cases')


def compare(label, graph, feeds, **options):
    want = reference.execute(graph, feeds)
    got = run_graph(graph, feeds, **options)
    for name in graph.outputs:
        assert got[name].shape == want[name].shape, (label, name)
        np.testing.assert_array_equal(got[name], want[name].astype(np.float32),
                                      err_msg=f'{label} {name}')


@pytest.fixture(scope='module')
def yolo(tmp_path_factory):
    return YOLO.yolo_post_graph(tmp_path_factory.mktemp('yolo'))


@pytest.mark.parametrize('conv_path', ['auto', 'simt'])
def test_yolo_post_process_matches_numpy(yolo, conv_path):
    feeds = YOLO.yolo_post_feeds(np.random.default_rng(1405))
    assert reference.execute(yolo, feeds)['idx'].max() > 2048
    compare(f'yolo post {conv_path}', yolo, feeds, conv_path=conv_path)


def test_yolo_post_process_replays_the_same(yolo):
    assert_replays_the_same(yolo, YOLO.yolo_post_feeds(np.random.default_rng(7)))


def test_index_graph_input_and_output_past_2048():
    rng = np.random.default_rng(3)
    # 5000 distinct FP16 numbers (0.25 up): the arena stores them exactly, so the values and
    # the order TopK finds are the float32 reference's
    fp16_grid = np.arange(0x3400, 0x3400 + 5000, dtype=np.uint16).view(np.float16)
    x = rng.permutation(fp16_grid).astype(np.float32).reshape(1, 5000)
    feeds = {'x': x, 'i': rng.integers(-5000, 5000, (1, 40))}
    graph = CASES.graph_of(feeds, [('TopK', ['x', 'k'], ['v', 'j'], {'axis': 1}),
                                   ('GatherElements', ['x', 'i'], ['g'], {'axis': 1})],
                           ['v', 'j', 'g'], {'k': np.array([64], CASES.I64)})
    compare('int32 graph input and output', graph, feeds)


def test_cast_into_int32_and_integer_div_mod():
    graph, feeds = CASES.cast_div_mod_graph()
    compare('cast and integer maths', graph, feeds)


def test_argmax_and_one_hot_of_int32_indices():
    rng = np.random.default_rng(9)
    x = (rng.permutation(6000) / 4).astype(np.float32).reshape(2, 3000)
    feeds = {'x': x, 'h': rng.integers(-6, 6, (2, 5))}
    graph = CASES.graph_of(feeds, [('ArgMax', ['x'], ['a'], {'axis': 1}),
                                   ('ArgMin', ['x'], ['b'], {'axis': 1, 'keepdims': 0}),
                                   ('OneHot', ['h', 'depth', 'onoff'], ['o'], {})],
                           ['a', 'b', 'o'], {'depth': np.array([6], CASES.I64),
                                             'onoff': np.array([0.0, 2.0], np.float32)})
    compare('ArgMax/ArgMin over 3000, OneHot of int32', graph, feeds)
