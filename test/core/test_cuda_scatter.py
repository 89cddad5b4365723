"""Cast to integers and bools, ScatterND / ScatterElements with constant indices and OneHot on
CUDA (``cuda/lower_logic.py`` ``lower_cast``, ``cuda/lower_scatter.py``, ``kernels/scatter.cu``),
without a GPU.

The scatter tables; small graphs lowered for sm_90 and run over the emulated arena
(``logic_emulator``: copies and the scatter kernel as launched, the generated launches by their
programs) against the numpy ops, with the launches each gets; the ONNX node cases as the GPU
conformance test builds them; the Cast C expressions built for the host against numpy
(saturation included); the refusals; a Cast chain fused into one launch; slanet, whose decoder
needed all of it, lowering whole and its decoder's scatters and one-hots as launched.
"""
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import test_onnx_node_conformance as cpu
from scatter_cases import (CASTS, I64, ONE_HOTS, SCATTER_ELEMENTS, SCATTER_ND, cast_graph,
                           graph_of, one_hot_graph, scatter_elements_graph, scatter_nd_graph,
                           yolov5_head)
from logic_emulator import case_graph, emulate
from node_cases import GPU, data_sets
from onnx import helper, numpy_helper
from unary_cases import device_compilers, host_compiler, host_program

from tx2_infer_core import reference
from tx2_infer_core.cuda import compile as cc
from tx2_infer_core.cuda.lower_scatter import nd_coords, scatter_tables
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.engine_build import default_meta, import_model
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Node
from tx2_infer_core.passes import POINTWISE_LEVEL, optimize

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402
import zoo_launches  # noqa: E402

RNG = np.random.default_rng(1403)
LAUNCHED = {'ScatterND', 'ScatterElements', 'Scatter', 'OneHot', 'Cast'}


def run(graph, feeds, launched=LAUNCHED):
    """(emulated outputs, numpy outputs, {node: kernels})."""
    got, lowered = emulate(graph, feeds, launched)
    want = reference.execute(graph, feeds)
    kernels = {}
    for k in lowered.launches:
        kernels.setdefault(k.node, []).append(k.kernel)
    return got, want, kernels


# The scatter tables ------------------------------------------------------------------------

def test_scatter_tables_keep_the_last_update_or_list_them_all():
    coords = np.array([[0, 2], [1, 0], [0, 2], [1, 1]])
    dst, first, src = scatter_tables(coords, (5, 1), 3, 'none')
    assert dst.tolist() == [5, 8, 9] and first.tolist() == [0, 1, 2, 3]
    assert src.tolist() == [2, 1, 3]  # element 5 (coordinate (0, 2)): the later update 2
    dst, first, src = scatter_tables(coords, (5, 1), 3, 'add')
    assert dst.tolist() == [5, 8, 9] and first.tolist() == [0, 2, 3, 4]
    assert src.tolist() == [0, 2, 1, 3]  # update order kept within an element


def test_nd_coords_walk_the_slices_row_major():
    idx = np.array([[2], [0]])
    assert nd_coords(idx, (3, 2)).tolist() == [[2, 0], [2, 1], [0, 0], [0, 1]]
    assert nd_coords(np.array([[1, 0]]), (3, 2)).tolist() == [[1, 0]]


# Scatter over the emulated arena -----------------------------------------------------------

@pytest.mark.parametrize('reduction', ['none', 'add', 'mul', 'max', 'min'])
@pytest.mark.parametrize('case', SCATTER_ELEMENTS, ids=[str(c[0]) for c in SCATTER_ELEMENTS])
def test_scatter_elements_matches_numpy(case, reduction):
    graph, feeds = scatter_elements_graph(*case, reduction)
    got, want, kernels = run(graph, feeds)
    np.testing.assert_allclose(got['y'], want['y'], rtol=1e-6, atol=1e-6)
    assert kernels['scatter'] == ['unary', 'scatter']  # the data's copy, then the scatter


def test_scatter_elements_of_constant_data():
    graph, feeds = scatter_elements_graph((1, 501, 4), np.full((1, 1, 4), 3, I64), 1, 'none',
                                          data_const=True)
    got, want, kernels = run(graph, feeds)
    np.testing.assert_allclose(got['y'], want['y'], rtol=1e-3, atol=1e-3)  # FP16 weights
    assert kernels['scatter'] == ['unary', 'scatter']


@pytest.mark.parametrize('reduction', ['none', 'add', 'mul', 'max', 'min'])
@pytest.mark.parametrize('case', SCATTER_ND, ids=[str(c[0]) for c in SCATTER_ND])
def test_scatter_nd_matches_numpy(case, reduction):
    graph, feeds = scatter_nd_graph(*case, reduction)
    got, want, kernels = run(graph, feeds)
    np.testing.assert_allclose(got['y'], want['y'], rtol=1e-6, atol=1e-6)
    assert kernels['scatter'] == ['unary', 'scatter']


def test_scatter_into_an_nhwc_image_between_convolutions():
    """Conv (NHWC) -> ScatterElements along the channels -> Conv: the output offsets follow
    the NHWC strides."""
    w1 = RNG.standard_normal((6, 3, 1, 1)).astype(np.float32)
    w2 = RNG.standard_normal((2, 6, 1, 1)).astype(np.float32)
    idx = RNG.integers(-6, 6, (1, 2, 2, 3))
    shapes = {'x': (1, 3, 2, 3), 'c': (1, 6, 2, 3), 'u': idx.shape, 's': (1, 6, 2, 3),
              'y': (1, 2, 2, 3)}
    nodes = [Node('Conv', 'c1', ['x', 'w1'], ['c']),
             Node('ScatterElements', 'scatter', ['c', 'i', 'u'], ['s'], {'axis': 1}),
             Node('Conv', 'c2', ['s', 'w2'], ['y'])]
    graph = graph_of(nodes, shapes, ['x', 'u'], ['y'], {'w1': w1, 'w2': w2, 'i': idx},
                     {'u': 'float32'})
    feeds = {'x': RNG.standard_normal(shapes['x']).astype(np.float32),
             'u': RNG.standard_normal(idx.shape).astype(np.float32)}
    got, want, kernels = run(graph, feeds)
    np.testing.assert_allclose(got['y'], want['y'], rtol=1e-4, atol=1e-4)
    slots = lower_graph(graph, 90).slots
    assert slots['c'].nhwc and slots['s'].nhwc and slots['c'] == slots['s']
    assert kernels['scatter'] == ['scatter']  # written over c, which dies there


def test_yolov5_scatter_nd_head(tmp_path):
    graph = yolov5_head(tmp_path)
    assert 'ScatterND' in [n.op for n in graph.nodes]
    feeds = {graph.inputs[0]: RNG.standard_normal((1, 3, 4, 4, 7)).astype(np.float32)}
    got, want, kernels = run(graph, feeds)
    out = graph.outputs[0]
    np.testing.assert_allclose(got[out], want[out], rtol=2e-3, atol=2e-3)
    scatter = next(n.name for n in graph.nodes if n.op == 'ScatterND')
    assert kernels[scatter][-1] == 'scatter'


# OneHot and Cast over the emulated arena ---------------------------------------------------

@pytest.mark.parametrize('float_indices', [False, True], ids=['int64', 'float'])
@pytest.mark.parametrize('case', ONE_HOTS, ids=[f'{c[0]}-axis{c[3]}' for c in ONE_HOTS])
def test_one_hot_matches_numpy(case, float_indices):
    got, want, kernels = run(*one_hot_graph(*case, float_indices))
    np.testing.assert_array_equal(got['y'], want['y'])
    assert kernels['hot'] == ['pointwise']
    assert kernels.get('cast', ['pointwise']) == ['pointwise']


@pytest.mark.parametrize('to, dtype', CASTS, ids=[c[1] for c in CASTS])
def test_cast_truncates_or_tests_non_zero_then_casts_back(to, dtype):
    """A generated launch (truncation toward zero, x != 0) writing the output's bytes: the
    Cast back keeps the values (no launch, ``cuda/views.py``)."""
    got, want, kernels = run(*cast_graph(to, dtype))
    np.testing.assert_array_equal(got['y'], want['y'])
    assert kernels == {'to_int': ['pointwise']}


def test_int_to_bool_is_generated_and_int_to_int_a_view():
    nodes = [Node('Cast', 'to_int', ['x'], ['k'], {'to': 7}),
             Node('Cast', 'narrow', ['k'], ['n'], {'to': 6}),
             Node('Cast', 'to_bool', ['n'], ['b'], {'to': 9}),
             Node('Cast', 'back', ['b'], ['y'], {'to': 1})]
    graph = graph_of(nodes, {n: (15,) for n in 'xknby'}, ['x'], ['y'],
                     dtypes={'k': 'int64', 'n': 'int32', 'b': 'bool'})
    x = RNG.uniform(-2, 2, 15).astype(np.float32)
    got, want, kernels = run(graph, {'x': x})
    np.testing.assert_array_equal(got['y'], want['y'])
    assert kernels == {'to_int': ['pointwise'], 'to_bool': ['pointwise']}


needs_cxx = pytest.mark.skipif(host_compiler() is None, reason='no host C++ compiler')


@needs_cxx
def test_cast_c_expressions_on_the_host(tmp_path):
    """The generated C of Cast, built for the host: truncation toward zero saturated to
    +-65504 for every integer type, ``x != 0`` for bool (NaN is true), the value for floats."""
    x = np.concatenate([RNG.uniform(-3000, 3000, 500), np.arange(-4, 4.5, 0.5),
                        [1e5, -1e5, np.inf, -np.inf, 65504, -65504, 0.0, -0.0]]).astype(
        np.float32)
    targets = [6, 7, 5, 12, 9, 1, 10]
    out = host_program([[('Cast', ['x0'], {'to': t})] for t in targets], tmp_path)(x)
    ints = np.clip(np.trunc(x), -65504, 65504)
    for row in out[:4]:
        np.testing.assert_array_equal(row, ints)
    np.testing.assert_array_equal(out[4], (x != 0).astype(np.float32))
    np.testing.assert_array_equal(out[5], x)
    np.testing.assert_array_equal(out[6], x)
    nan = host_program([[('Cast', ['x0'], {'to': 9})]], tmp_path)(np.array([np.nan], 'f4'))
    assert nan[0, 0] == 1.0


@pytest.mark.skipif(not device_compilers(), reason='neither NVRTC nor nvcc installed')
def test_generated_kernels_and_scatter_compile():
    """The generated kernels of Cast and OneHot, and kernels/scatter.cu, for sm_90 (nvcc) and
    sm_62/72/87 (NVRTC) where those compilers are installed."""
    graphs = [cast_graph(6, 'int32')[0], cast_graph(9, 'bool')[0],
              one_hot_graph((2, 3), 5, [0.0, 2.5], 0, True)[0]]
    modules = {k.module for g in graphs for k in lower_graph(g, 90).launches
               if k.kernel == 'pointwise'}
    assert len(modules) == 3
    for arch, compiler in device_compilers():
        for module in sorted(modules) + ['scatter']:
            assert cc.compile_cached(module, arch, compiler=compiler)[:4] == b'\x7fELF'


# ONNX node cases as the GPU conformance test builds them ------------------------------------

CASES = {f.name: (f, op) for op, found in cpu.collect_cases().items()
         if op in LAUNCHED - {'Cast'} for f in found}


VARIANTS = [(name, 'as the GPU conformance test') for name in sorted(CASES)] + [
    (name, 'integers as float32') for name in sorted(CASES) if CASES[name][1] == 'OneHot']


@pytest.mark.parametrize('name, variant', VARIANTS)
def test_onnx_node_case_passes(name, variant):
    """Every scatter case passes within the GPU tolerance; OneHot's int64 indices are no float
    case for the conformance test ('n/a' there), as float32 they pass (bfloat16: no numpy)."""
    folder, op = CASES[name]
    conformance = variant == 'as the GPU conformance test'

    def floats(node, proto, feeds, expected):
        return case_graph(node, proto, feeds, expected, 1, True)
    ran = 0
    for graph, acts, expected in data_sets(folder, None if conformance else floats):
        if graph is None:
            continue
        got, _ = emulate(graph, acts, {op})
        for out, want in expected.items():
            assert GPU.close(got[out], np.asarray(want, np.float64)), (name, out)
        ran += 1
    assert ran or (op == 'OneHot' and (conformance or 'bfloat16' in name))


# Refusals ---------------------------------------------------------------------------------

def _one(op, inputs, out_shape, weights, attrs=None, dtypes=None, activations=('x',)):
    shapes = {n: s for n, s in inputs.items()}
    shapes['y'] = out_shape
    node = Node(op, 'n0', list(inputs), ['y'], dict(attrs or {}))
    return graph_of([node], {n: s for n, s in shapes.items() if n not in weights},
                    list(activations), ['y'], weights, dtypes)


REFUSALS = {
    'Cast to int8': (_one('Cast', {'x': (3,)}, (3,), {}, {'to': 3}), 'to=3'),
    'Cast to uint8': (_one('Cast', {'x': (3,)}, (3,), {}, {'to': 2}), 'to=2'),
    'Cast to float8': (_one('Cast', {'x': (3,)}, (3,), {}, {'to': 17}), 'to=17'),
    'Cast of an int64 input to bool': (_one('Cast', {'x': (3,)}, (3,), {}, {'to': 9},
                                            {'x': 'int64', 'y': 'bool'}), 'graph input'),
    'ScatterElements, runtime indices': (_one(
        'ScatterElements', {'x': (3, 4), 'i': (1, 4), 'u': (1, 4)}, (3, 4), {},
        dtypes={'i': 'int64'}, activations=('x', 'i', 'u')), 'indices computed at run time'),
    'ScatterND, runtime indices': (_one(
        'ScatterND', {'x': (3, 4), 'i': (1, 1), 'u': (1, 4)}, (3, 4), {},
        dtypes={'i': 'int64'}, activations=('x', 'i', 'u')), 'indices computed at run time'),
    'ScatterElements, index out of range': (_one(
        'ScatterElements', {'x': (3, 4), 'i': (1, 4), 'u': (1, 4)}, (3, 4),
        {'i': np.array([[0, 2, -4, 1]])}, activations=('x', 'u')), 'index -4 out of range'),
    'ScatterND, index out of range': (_one(
        'ScatterND', {'x': (3, 4), 'i': (1, 2), 'u': (1,)}, (3, 4),
        {'i': np.array([[2, 4]])}, activations=('x', 'u')), 'index 4 out of range'),
    'ScatterElements, float indices': (_one(
        'ScatterElements', {'x': (3, 4), 'i': (1, 4), 'u': (1, 4)}, (3, 4),
        {'i': np.zeros((1, 4), np.float32)}, activations=('x', 'u')), 'indices of dtype'),
    'OneHot, depth 4096': (_one('OneHot', {'x': (3,), 'd': (1,), 'v': (2,)}, (3, 4096),
                                {'d': np.array([4096]), 'v': np.array([0.0, 1.0])}),
                           'depth 4096'),
    'OneHot, values at run time': (_one('OneHot', {'x': (3,), 'd': (1,), 'v': (2,)}, (3, 4),
                                        {'d': np.array([4])}, activations=('x', 'v')),
                                   'depth and values must be constants'),
    'OneHot, values past 2048': (_one('OneHot', {'x': (3,), 'd': (1,), 'v': (2,)}, (3, 4),
                                      {'d': np.array([4]), 'v': np.array([0, 5000])}),
                                 'holds 5000'),
}


@pytest.mark.parametrize('name', sorted(REFUSALS))
def test_refusals_name_the_node_and_the_reason(name):
    graph, reason = REFUSALS[name]
    with pytest.raises(UnsupportedOpError, match=f"'{graph.nodes[0].op}' at node 'n0'") as err:
        lower_graph(graph, arch=90)
    assert reason in str(err.value).split('; supported:')[0]


# A Cast chain fuses ------------------------------------------------------------------------

def test_cast_chain_fuses_into_one_launch(tmp_path):
    """x * 2.5 -> Cast(int32) -> Cast(float) -> + 1 (a truncation as exporters write it): one
    FusedPointwise node, one generated launch, equal to the unfused numpy graph."""
    consts = {'s': np.array(2.5, np.float32), 'one': np.array(1.0, np.float32)}
    nodes = [helper.make_node('Mul', ['x', 's'], ['a']),
             helper.make_node('Cast', ['a'], ['b'], to=6),
             helper.make_node('Cast', ['b'], ['c'], to=1),
             helper.make_node('Add', ['c', 'one'], ['y'])]
    model = helper.make_model(helper.make_graph(
        nodes, 'g', [helper.make_tensor_value_info('x', 1, [4, 8])],
        [helper.make_tensor_value_info('y', 1, [4, 8])],
        [numpy_helper.from_array(v, k) for k, v in consts.items()]),
        opset_imports=[helper.make_opsetid('', 17)])
    onnx.save(model, tmp_path / 'm.onnx')
    graph = import_model(tmp_path / 'm.onnx', (4, 8))
    default_meta(graph)
    fused = optimize(graph.copy(), POINTWISE_LEVEL)[0]
    assert [n.op for n in fused.nodes] == ['FusedPointwise']
    assert [k.kernel for k in lower_graph(fused, 90).launches] == ['pointwise']
    x = RNG.uniform(-8, 8, (4, 8)).astype(np.float16).astype(np.float32)
    got, _ = emulate(fused, {'x': x}, {'FusedPointwise'})
    np.testing.assert_array_equal(got['y'], reference.execute(graph, {'x': x})['y'])


# slanet ------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def slanet():
    """(graph, photo feeds, emulated outputs, Lowered): the decoder's Casts, Squeezes,
    Unsqueezes, scatters and one-hots as launched, the rest by numpy through the slots."""
    model = zoo_data.BY_NAME['slanet']
    graph = zoo_launches.cuda_graph(model)
    feeds = {graph.inputs[0]: zoo_data.photo_tensor(model)}
    got, lowered = emulate(graph, feeds, LAUNCHED | {'Squeeze', 'Unsqueeze'})
    return graph, feeds, got, lowered


def test_slanet_lowers_whole(slanet):
    """The table decoder's 500 unrolled steps: each an ArgMax -> Cast -> OneHot feedback and
    two ScatterElements writes of its outputs, all lowered; the integer Casts (and Squeezes,
    Unsqueezes) are views, the scatters write over their dying data (but the first step's,
    a constant: copied) (15104 launches before, 12104 since)."""
    graph, _, _, lowered = slanet
    ops = {n.name: n.op for n in graph.nodes}
    count = {}
    for k in lowered.launches:
        count[(ops[k.node], k.kernel)] = count.get((ops[k.node], k.kernel), 0) + 1
    assert count[('ScatterElements', 'scatter')] == 1002
    assert count[('ScatterElements', 'unary')] == 2
    assert count[('OneHot', 'pointwise')] == 500
    assert not any(op in ('Cast', 'Squeeze', 'Unsqueeze') for op, _ in count)


def test_slanet_decoder_as_launched_matches_numpy(slanet):
    """The scatters written in place and the integer views compute what the graph does."""
    graph, feeds, got, _ = slanet
    want = reference.execute(graph, feeds)
    for name in graph.outputs:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-5, err_msg=name)
