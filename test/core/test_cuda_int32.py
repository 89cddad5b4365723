"""Int32 index values in the CUDA arena (``cuda/int32_values.py``) without a GPU: which values
are int32 and why not, a YOLOv8/v10-like post-process over 8400 anchors (``yolo_post.py``:
TopK 300, GatherElements, GatherND, ArgMax, integer Mod/Div, Cast to float) lowered for sm_90
and sm_62 and run launch by launch on the host (``logic_emulator``, its outputs downloaded by
the backend's conversion launches) against the numpy reference exactly, and the generated
kernels reading and writing int32 compiled for every target."""
import shutil

import numpy as np
import pytest
from index_cases import I64, cast_div_mod_graph, graph_of, ties
from logic_emulator import emulate, recorded_programs
from yolo_post import yolo_post_feeds, yolo_post_graph

from tx2_infer_core import reference
from tx2_infer_core.cuda import compile as cc, layout
from tx2_infer_core.cuda.int32_values import index_range_problem, int32_values
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.planner import check_plan

INDEX_VALUES = {'idx', 'idx1', 'idx4', 'idx_c', 'cls', 'gx', 'gy', 'idx2', 'anchor2', 'label2',
                'anchor2_1', 'anchor2_4'}
NUMPY_ONLY = {'ReduceMax'}  # global_reduce over rows: its emulation takes pixel reductions


@pytest.fixture(scope='module')
def yolo(tmp_path_factory):
    return yolo_post_graph(tmp_path_factory.mktemp('yolo'))


def test_index_values_of_the_post_process_are_int32(yolo):
    found = int32_values(yolo)
    assert found.values == INDEX_VALUES and not found.blocker


def test_a_reader_without_int32_form_keeps_its_class_fp16_and_is_named():
    x = ties(np.random.default_rng(0), 2, 50)
    graph = graph_of({'x': x}, [('TopK', ['x', 'k'], ['v', 'i'], {'axis': 1}),
                                ('Unsqueeze', ['i', 'ax'], ['i1'], {}),
                                ('ReduceSum', ['i1'], ['s'], {}),
                                ('Cast', ['i'], ['f'], {'to': 1})],
                     ['v', 's', 'f'], {'k': np.array([5], I64), 'ax': np.array([2], I64)})
    found = int32_values(graph)
    assert found.values == frozenset()
    assert found.blocker == {n: "ReduceSum 'n2'" for n in ('i', 'i1', 's')}
    assert index_range_problem(graph, found, 'i', 3000) == (
        "an axis of 3000 elements with its indices read: they are FP16 in the arena, exact up "
        "to 2048, not int32 ('i' is read or written by ReduceSum 'n2', which has no int32 "
        "form)")
    assert index_range_problem(graph, found, 'i', 2048) == ''
    assert 'pass 2**24' in index_range_problem(graph, int32_values(graph), 'i', (1 << 24) + 1)


def test_int32_values_take_four_bytes_in_a_checked_plan(yolo):
    """Placed by their 4 bytes: no two values alive at once share a byte (without views,
    which ``check_plan`` does not know; int32 slots 4-byte aligned)."""
    lowered = lower_graph(yolo, 90, place_channels=False)
    int32 = int32_values(yolo).values
    assert {n for n, s in lowered.slots.items() if s.int32} == int32
    assert all(lowered.slots[n].ref.offset % 4 == 0 for n in int32)
    stored = layout.fp16_graph(yolo, int32=int32)
    assert {stored.values[n].dtype for n in int32} == {'int32'}
    assert stored.values['idx'].nbytes == 4 * 300
    check_plan(stored, lowered.plan)


@pytest.mark.parametrize('arch', [90, 62])
def test_yolo_post_process_matches_numpy(yolo, arch):
    """Every node but ReduceMax runs by its emulated launches; the outputs come back through
    the download launches (int32 ones by ``from_arena_i32``), equal to the numpy ones."""
    feeds = yolo_post_feeds(np.random.default_rng(14))
    ops = {node.op for node in yolo.nodes} - NUMPY_ONLY
    got, lowered = emulate(yolo, feeds, ops, arch=arch, staged=True)
    want = reference.execute(yolo, feeds)
    assert want['idx'].max() > 2048 and want['label2'].dtype == np.int64
    for name in yolo.outputs:
        np.testing.assert_array_equal(got[name], want[name].astype(np.float32), err_msg=name)
    kernels = {(k.node.split('_')[0], k.kernel) for k in lowered.launches}
    assert {('TopK', 'topk_rows'), ('Tile', 'copy_i32'), ('Expand', 'copy_i32'),
            ('GatherND', 'gather_nd'), ('ArgMax', 'arg_rows'), ('Mod', 'pointwise')} <= kernels
    topk = [k for k in lowered.launches if k.kernel == 'topk_rows']
    assert [k.fields['indices_i32'] for k in topk] == [1, 1]


def test_same_launches_for_the_tx2(yolo):
    a, b = (lower_graph(yolo, arch).launches for arch in (90, 62))
    assert [(k.kernel, k.grid, k.block) for k in a] == [(k.kernel, k.grid, k.block) for k in b]


def test_index_outputs_as_graph_outputs_and_inputs():
    """An int64 index graph input (fed through ``to_arena_i32``) past 2048 gathers; the
    indices of a TopK over 5000 come out by ``from_arena_i32``."""
    rng = np.random.default_rng(3)
    x = (rng.permutation(5000) / 4).astype(np.float32).reshape(1, 5000)
    feeds = {'x': x, 'i': rng.integers(-5000, 5000, (1, 40))}
    graph = graph_of(feeds, [('TopK', ['x', 'k'], ['v', 'j'], {'axis': 1}),
                             ('GatherElements', ['x', 'i'], ['g'], {'axis': 1})],
                     ['v', 'j', 'g'], {'k': np.array([64], I64)})
    got, lowered = emulate(graph, feeds, {'TopK', 'GatherElements'}, staged=True)
    want = reference.execute(graph, feeds)
    for name in graph.outputs:
        np.testing.assert_array_equal(got[name], want[name].astype(np.float32), err_msg=name)
    assert lowered.slots['i'].int32 and lowered.slots['j'].int32


def test_cast_into_int32_truncates_and_int_div_truncates():
    """Cast float -> int64 stored int32 truncates toward zero; an integer Div truncates toward
    zero, Mod takes the divisor's sign (ONNX, numpy)."""
    graph, feeds = cast_div_mod_graph()
    got, lowered = emulate(graph, feeds, {'Cast', 'Div', 'Mod', 'Gather'}, staged=True)
    want = reference.execute(graph, feeds)
    assert {n for n, s in lowered.slots.items() if s.int32} == {'n', 'q', 'r'}
    for name in graph.outputs:
        np.testing.assert_array_equal(got[name], want[name].astype(np.float32), err_msg=name)


def test_argmax_and_one_hot_of_int32_indices():
    """ArgMax/ArgMin over 3000 write int32 (``arg_rows``); OneHot reads int32 indices fed as
    an int64 graph input."""
    rng = np.random.default_rng(9)
    x = (rng.permutation(6000) / 4).astype(np.float32).reshape(2, 3000)
    feeds = {'x': x, 'h': rng.integers(-6, 6, (2, 5))}
    graph = graph_of(feeds, [('ArgMax', ['x'], ['a'], {'axis': 1}),
                             ('ArgMin', ['x'], ['b'], {'axis': 1, 'keepdims': 0}),
                             ('OneHot', ['h', 'depth', 'onoff'], ['o'], {})],
                     ['a', 'b', 'o'], {'depth': np.array([6], I64),
                                       'onoff': np.array([0.0, 2.0], np.float32)})
    got, lowered = emulate(graph, feeds, {'ArgMax', 'ArgMin', 'OneHot'}, staged=True)
    want = reference.execute(graph, feeds)
    for name in graph.outputs:
        np.testing.assert_array_equal(got[name], want[name].astype(np.float32), err_msg=name)
    assert {n for n, s in lowered.slots.items() if s.int32} == {'a', 'b', 'h'}


def test_a_pure_integer_class_stays_fp16():
    """A float truncated by a Cast to int64 and back touches no index op: FP16, one launch."""
    x = ties(np.random.default_rng(1), 4, 6)
    graph = graph_of({'x': x}, [('Cast', ['x'], ['n'], {'to': 7}),
                                ('Cast', ['n'], ['y'], {'to': 1})], ['y'])
    lowered = lower_graph(graph, 90)
    assert not any(s.int32 for s in lowered.slots.values())
    assert [k.kernel for k in lowered.launches] == ['pointwise']


def test_an_index_past_2048_kept_fp16_is_refused_by_name():
    x = ties(np.random.default_rng(0), 1, 3000)
    graph = graph_of({'x': x}, [('TopK', ['x', 'k'], ['v', 'i'], {'axis': 1}),
                                ('ReduceSum', ['i'], ['s'], {})],
                     ['v', 's'], {'k': np.array([5], I64)})
    with pytest.raises(UnsupportedOpError, match=r"'TopK' at node 'n0' .*ReduceSum 'n1'"):
        lower_graph(graph, 90)


def _generated_modules(graph) -> set:
    with recorded_programs():
        launches = lower_graph(graph, 90).launches
    return {k.module for k in launches if k.module.startswith('pw_')}


@pytest.mark.skipif(shutil.which('nvcc') is None, reason='nvcc (CUDA toolkit) not installed')
def test_generated_int32_kernels_compile_sm90(yolo):
    for module in sorted(_generated_modules(yolo)):
        assert cc.compile_cached(module, 90, compiler='nvcc')[:4] == b'\x7fELF', module


@pytest.mark.skipif(not cc.nvrtc_available(), reason='nvidia-cuda-nvrtc-cu12 not installed')
@pytest.mark.parametrize('arch', [62, 87])
def test_generated_int32_kernels_compile_nvrtc(yolo, arch):
    for module in sorted(_generated_modules(yolo)):
        assert cc.compile_cached(module, arch, compiler='nvrtc')[:4] == b'\x7fELF', module
