"""Indexing, scatter and sequence-free tensor ops through the importer and the engine.

Each tiny model holds the op between real ops (``Neg`` before and after, so nothing folds);
the engine on the numpy and ort backends must match onnxruntime on the original model. Two
heads as detectors export them: Conv -> Reshape -> TopK -> GatherElements / GatherND
(RT-DETR style) and YOLOv5's ScatterND write of a box slice. A K, depth, k or axis that is not
known at build time is refused naming the node; constant inputs fold.
"""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tx2_infer_core import onnx_import
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.engine import Engine
from tx2_infer_core.errors import ModelFormatError, UnsupportedOpError
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops import run_node, traits
from tx2_infer_core.passes.fold_constants import fold_constants

ort = pytest.importorskip('onnxruntime')
RNG = np.random.default_rng(7)
BACKENDS = ['numpy', 'ort']
I64 = np.int64


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def halves(*shape):
    """Random multiples of 0.5 in -2..2: many ties."""
    return (RNG.integers(-4, 5, shape) / 2).astype(np.float32)


def info(name, array=None, elem=TensorProto.FLOAT):
    if array is None:
        return helper.make_tensor_value_info(name, elem, None)
    return helper.make_tensor_value_info(
        name, helper.np_dtype_to_tensor_dtype(array.dtype), list(array.shape))


def make_model(nodes, feeds, outputs, consts, opset=18):
    """A model of ``nodes``: graph inputs ``feeds`` {name: array}, initializers ``consts``."""
    graph = helper.make_graph(
        nodes, 'g', [info(k, v) for k, v in feeds.items()],
        [helper.make_empty_tensor_value_info(name) for name in outputs],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])


def assert_engine_matches_ort(model, feeds, backend, tmp_path, ops):
    """The engine's outputs (built from ``model`` on ``backend``, still holding nodes of
    ``ops``) equal onnxruntime's."""
    path = tmp_path / 'model.onnx'
    onnx.save(model, path)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    want = dict(zip(names, session.run(None, feeds)))
    first = next(iter(feeds.values()))
    engine = Engine.build(path, input_shape=first.shape, backend=backend)
    try:
        assert set(ops) <= {node.op for node in engine.graph.nodes}
        got = engine.run(feeds)
    finally:
        engine.close()
    assert sorted(got) == sorted(want)
    for name, ref in want.items():
        assert got[name].shape == ref.shape, name
        if ref.dtype.kind == 'f':
            np.testing.assert_allclose(got[name], ref, rtol=1e-5, atol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], ref, err_msg=name)


# (id, op, attrs, data (the runtime input), constant inputs, output count, opset)
def _case(case_id, op, data, consts=(), outputs=1, opset=18, **attrs):
    return pytest.param(op, attrs, data, list(consts), outputs, opset, id=case_id)


SCATTER_IDX = np.array([[1, -1, 0, 2], [0, 2, 0, -3]], I64)     # repeats for the reductions
CASES = [
    _case('topk-largest', 'TopK', halves(3, 9), [np.array([4], I64)], 2),
    _case('topk-smallest-axis0', 'TopK', halves(6, 5), [np.array([3], I64)], 2,
          axis=0, largest=0),
    _case('topk-int', 'TopK', RNG.integers(-3, 3, (2, 8)).astype(I64), [np.array([5], I64)],
          2, axis=1),
    _case('gathernd', 'GatherND', randn(2, 3, 4), [np.array([[1, 2], [0, -1], [1, 0]], I64)]),
    _case('gathernd-batch', 'GatherND', randn(2, 3, 4),
          [np.array([[[2], [0]], [[1], [-1]]], I64)], batch_dims=1),
    _case('scatternd', 'ScatterND', randn(4, 5), [np.array([[0], [2], [-1]], I64),
                                                  randn(3, 5)]),
    _case('scatternd-elements', 'ScatterND', randn(3, 4), [np.array([[0, 1], [2, 3]], I64),
                                                           randn(2)]),
    *[_case(f'scatternd-{r}', 'ScatterND', randn(4, 5), [np.array([[1], [3], [1]], I64),
                                                         randn(3, 5)], reduction=r)
      for r in ('add', 'mul', 'max', 'min')],
    _case('scatterelements', 'ScatterElements', randn(3, 4),
          [np.array([[1, 0, 2, -1], [0, 2, 1, 0]], I64), randn(2, 4)]),
    *[_case(f'scatterelements-{r}', 'ScatterElements', randn(2, 5),
            [SCATTER_IDX, randn(2, 4)], axis=1, reduction=r)
      for r in ('add', 'mul', 'max', 'min')],
    _case('onehot', 'OneHot', np.array([[0, 3, -1], [7, 2, -5]], I64),
          [np.array([5], I64), np.array([0.0, 2.5], np.float32)]),
    _case('onehot-axis0-int', 'OneHot', np.array([[1, -2], [4, 0]], I64),
          [np.array(4.0, np.float32), np.array([-1, 3], np.int32)], axis=0),
    _case('onehot-axis1', 'OneHot', np.array([2, 0, 1], I64),
          [np.array([3], np.int32), np.array([0.5, 1], np.float32)], axis=1),
    _case('reversesequence', 'ReverseSequence', randn(5, 3, 2), [np.array([5, 2, 1], I64)]),
    _case('reversesequence-batch0', 'ReverseSequence', randn(3, 4, 2),
          [np.array([1, 4, 3], I64)], batch_axis=0, time_axis=1),
    *[_case(f'cumsum-{axis}-{e}{r}', 'CumSum', randn(3, 4), [np.array(axis, I64)],
            exclusive=e, reverse=r) for axis in (0, -1) for e in (0, 1) for r in (0, 1)],
    _case('cumsum-int32', 'CumSum', RNG.integers(-9, 9, (2, 5)).astype(np.int32),
          [np.array([1], np.int32)], exclusive=1),
    _case('triu', 'Trilu', randn(2, 4, 5)),
    _case('triu-k1', 'Trilu', randn(2, 4, 5), [np.array(1, I64)]),
    _case('tril-k-2', 'Trilu', randn(5, 3), [np.array(-2, I64)], upper=0),
    _case('eyelike', 'EyeLike', randn(4, 6)),
    _case('eyelike-int32-k2', 'EyeLike', randn(4, 6), dtype=TensorProto.INT32, k=2),
    _case('eyelike-k-1', 'EyeLike', randn(5, 3), k=-1),
    _case('einsum-bmm', 'Einsum', randn(2, 3, 4), [randn(2, 4, 5)], equation='bij,bjk->bik'),
    _case('einsum-attention', 'Einsum', randn(1, 2, 3, 4), [randn(1, 2, 5, 4)],
          equation='bhqd,bhkd->bhqk'),
    _case('einsum-outer', 'Einsum', randn(3), [randn(4)], equation='i,j->ij'),
    _case('einsum-diagonal', 'Einsum', randn(4, 4), equation='ii->i'),
    _case('einsum-implicit', 'Einsum', randn(3, 4), [randn(4, 2)], equation='ij,jk'),
]


def op_model(op, attrs, data, consts, outputs, opset):
    """x -> Neg -> op(., constants) -> Neg per output."""
    names = [f'c{k}' for k in range(len(consts))]
    outs = [f'o{k}' for k in range(outputs)]
    nodes = [helper.make_node('Neg', ['x'], ['a'], name='pre'),
             helper.make_node(op, ['a'] + names, outs, name='op', **attrs)]
    nodes += [helper.make_node('Neg', [o], [f'y{k}'], name=f'post{k}')
              for k, o in enumerate(outs)]
    return make_model(nodes, {'x': data}, [f'y{k}' for k in range(outputs)],
                      dict(zip(names, consts)), opset)


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('op, attrs, data, consts, outputs, opset', CASES)
def test_op_matches_onnxruntime(op, attrs, data, consts, outputs, opset, backend, tmp_path):
    model = op_model(op, attrs, data, consts, outputs, opset)
    assert_engine_matches_ort(model, {'x': data}, backend, tmp_path, [op])


@pytest.mark.parametrize('op, attrs, data, consts, outputs, opset', CASES)
def test_constant_inputs_fold(op, attrs, data, consts, outputs, opset):
    """fold_constants runs the op through the registry when every input is a constant."""
    weights = {'x': -data, **{f'c{k}': c for k, c in enumerate(consts)}}
    node = Node(op, 'op', list(weights), [f'o{k}' for k in range(outputs)], attrs)
    graph = Graph(nodes=[node, Node('Neg', 'post', ['o0'], ['y'])], inputs=['r'],
                  outputs=['y'], values={}, weights=dict(weights))
    assert fold_constants(graph) == 1 and [n.name for n in graph.nodes] == ['post']
    want = run_node(node, list(weights.values()))
    for k, array in enumerate(want):
        np.testing.assert_array_equal(graph.weights[f'o{k}'], array)


def detector_head(k=6):
    """RT-DETR-style selection: Conv -> Reshape -> scores and boxes -> TopK of the scores ->
    the boxes of the top K by GatherElements (N, 4, K) and by GatherND (N, K, 4)."""
    consts = {'w': randn(5, 3, 1, 1), 'b': randn(5), 'flat': np.array([0, 5, -1], I64),
              'split': np.array([1, 4], I64), 'k': np.array([k], I64),
              'wide': np.array([1, 4, k], I64), 'col': np.array([0, k, 1], I64)}
    nodes = [
        helper.make_node('Conv', ['x', 'w', 'b'], ['c'], name='conv'),
        helper.make_node('Reshape', ['c', 'flat'], ['r'], name='flatten'),
        helper.make_node('Split', ['r', 'split'], ['logit', 'boxes'], axis=1, name='split'),
        helper.make_node('Sigmoid', ['logit'], ['score'], name='sigmoid'),
        helper.make_node('TopK', ['score', 'k'], ['top', 'idx'], axis=-1, name='topk'),
        helper.make_node('Expand', ['idx', 'wide'], ['idx4'], name='expand'),
        helper.make_node('GatherElements', ['boxes', 'idx4'], ['picked'], axis=2,
                         name='gather_elements'),
        helper.make_node('Transpose', ['boxes'], ['rows'], perm=[0, 2, 1], name='rows'),
        helper.make_node('Reshape', ['idx', 'col'], ['idx_nd'], name='idx_nd'),
        helper.make_node('GatherND', ['rows', 'idx_nd'], ['picked_nd'], batch_dims=1,
                         name='gather_nd'),
    ]
    return make_model(nodes, {'x': randn(2, 3, 4, 5)}, ['top', 'idx', 'picked', 'picked_nd'],
                      consts)


@pytest.mark.parametrize('backend', BACKENDS)
def test_detector_head_topk_then_gather(backend, tmp_path):
    feeds = {'x': randn(2, 3, 4, 5)}
    assert_engine_matches_ort(detector_head(), feeds, backend, tmp_path,
                              ['TopK', 'GatherElements', 'GatherND'])


def yolov5_scatter_head():
    """YOLOv5's older export of ``y[..., 0:2] = (y[..., 0:2] * 2 - 0.5 + grid) * stride``:
    Sigmoid -> Slice -> arithmetic -> ScatterND into the slice, indices spelt out."""
    shape = (1, 3, 4, 4, 7)
    grid = np.indices(shape[:4] + (2,))
    indices = np.stack(list(grid), axis=-1).astype(I64)            # (1, 3, 4, 4, 2, 5)
    consts = {'idx': indices, 'starts': np.array([0], I64), 'ends': np.array([2], I64),
              'axes': np.array([-1], I64), 'two': np.array(2, np.float32),
              'half': np.array(0.5, np.float32), 'grid': randn(1, 1, 4, 4, 2)}
    nodes = [
        helper.make_node('Sigmoid', ['x'], ['y'], name='sigmoid'),
        helper.make_node('Slice', ['y', 'starts', 'ends', 'axes'], ['xy'], name='slice'),
        helper.make_node('Mul', ['xy', 'two'], ['xy2'], name='mul'),
        helper.make_node('Sub', ['xy2', 'half'], ['xy3'], name='sub'),
        helper.make_node('Add', ['xy3', 'grid'], ['xy4'], name='add'),
        helper.make_node('ScatterND', ['y', 'idx', 'xy4'], ['out'], name='scatter'),
        helper.make_node('Reshape', ['out', 'rows'], ['pred'], name='reshape'),
    ]
    consts['rows'] = np.array([1, -1, shape[-1]], I64)
    return make_model(nodes, {'x': randn(*shape)}, ['pred'], consts, opset=13)


@pytest.mark.parametrize('backend', BACKENDS)
def test_yolov5_scatternd_slice_update(backend, tmp_path):
    feeds = {'x': randn(1, 3, 4, 4, 7)}
    assert_engine_matches_ort(yolov5_scatter_head(), feeds, backend, tmp_path, ['ScatterND'])


@pytest.mark.parametrize('backend', BACKENDS)
def test_opset10_scatter_is_upgraded_and_runs(backend, tmp_path):
    """Scatter exists in opsets 9-10 only; the importer's upgrade turns it into
    ScatterElements."""
    consts = {'idx': np.array([[1, 0, 2], [2, 1, 0]], I64), 'upd': randn(2, 3)}
    nodes = [helper.make_node('Relu', ['x'], ['r'], name='relu'),
             helper.make_node('Scatter', ['r', 'idx', 'upd'], ['y'], axis=1, name='scatter')]
    model = make_model(nodes, {'x': randn(2, 4)}, ['y'], consts, opset=10)
    assert_engine_matches_ort(model, {'x': randn(2, 4)}, backend, tmp_path,
                              ['ScatterElements'])


def test_k_computed_from_shapes_is_accepted(tmp_path):
    """K = (width of x) // 2 through Shape -> Gather -> Div is known at build time."""
    consts = {'last': np.array([-1], I64), 'two': np.array([2], I64)}
    nodes = [helper.make_node('Shape', ['x'], ['s'], name='shape'),
             helper.make_node('Gather', ['s', 'last'], ['w'], name='width'),
             helper.make_node('Div', ['w', 'two'], ['k'], name='half'),
             helper.make_node('TopK', ['x', 'k'], ['v', 'i'], name='topk')]
    feeds = {'x': randn(2, 8)}
    assert_engine_matches_ort(make_model(nodes, feeds, ['v', 'i'], consts), feeds, 'numpy',
                              tmp_path, ['TopK'])


REFUSED = [('TopK', np.array([2], I64), 2), ('OneHot', np.array([4], I64), 1),
           ('CumSum', np.array(1, I64), 1), ('Trilu', np.array(0, I64), 1)]


@pytest.mark.parametrize('through', ['', 'Abs'])
@pytest.mark.parametrize('op, fixed, outputs', REFUSED, ids=[r[0] for r in REFUSED])
def test_fixed_input_from_a_graph_input_is_refused(op, fixed, outputs, through, tmp_path):
    """K, depth, axis or k fed at run time (directly or through a node): refused at build,
    naming the op, the node and the input."""
    nodes, fed = [], 'p'
    if through:
        nodes, fed = [helper.make_node(through, ['p'], ['q'], name='via')], 'q'
    consts = {'v': np.array([0.0, 1.0], np.float32)} if op == 'OneHot' else {}
    nodes.append(helper.make_node(op, ['x', fed] + list(consts),
                                  [f'o{k}' for k in range(outputs)], name='the_node'))
    x = np.zeros((3, 4), I64 if op == 'OneHot' else np.float32)
    model = make_model(nodes, {'x': x, 'p': fixed}, [f'o{k}' for k in range(outputs)], consts)
    path = tmp_path / 'model.onnx'
    onnx.save(model, path)
    named = rf"'{op}' at node 'the_node'.*input 1 \('{fed}'\)"
    with pytest.raises(UnsupportedOpError, match=named):
        Engine.build(path, input_shape=x.shape, backend='numpy')


NEW_OPS = sorted({case.values[0] for case in CASES} | {'Scatter', 'CumProd'})
CPU_ONLY = [op for op in NEW_OPS if op not in traits.cuda_ops()]


@pytest.mark.parametrize('op', CPU_ONLY)
def test_cuda_refuses_them_by_name(op):
    """Those still CPU only: the CUDA lowering (no GPU needed) names the op and the node."""
    values = {n: Value(n, (2, 3), 'float32', '') for n in ('x', 'y')}
    graph = Graph([Node(op, 'n0', ['x'], ['y'])], ['x'], ['y'], values, {})
    with pytest.raises(UnsupportedOpError, match=f"'{op}' at node 'n0'"):
        lower_graph(graph, arch=90)


def test_huge_onehot_depth_is_refused_before_it_runs(tmp_path, monkeypatch):
    """OneHot's output size comes from its depth: predicted and checked against the limits
    before it runs (ONNX's own shape inference, which also sees it, is switched off)."""
    monkeypatch.setattr(onnx_import, 'check_static_sizes', lambda *args: None)
    consts = {'d': np.array([10 ** 9], I64), 'v': np.array([0.0, 1.0], np.float32)}
    nodes = [helper.make_node('Neg', ['x'], ['a'], name='pre'),
             helper.make_node('OneHot', ['a', 'd', 'v'], ['y'], name='hot')]
    path = tmp_path / 'model.onnx'
    onnx.save(make_model(nodes, {'x': np.zeros((4, 4), I64)}, ['y'], consts), path)
    with pytest.raises(ModelFormatError, match=r"node 'hot' \(OneHot\) output of shape"):
        Engine.build(path, input_shape=(4, 4), backend='numpy')
