"""Issue 14's normalisations, ops along an axis, reductions and Lp pools on the GPU against the
numpy backend: InstanceNormalization, GroupNormalization, MeanVarianceNormalization,
LpNormalization, RMSNormalization, LRN (``kernels/norm.cu``), ArgMax, ArgMin, Hardmax
(``arg.cu``), CumSum, CumProd (``scan.cu``), ReduceProd/L1/L2/SumSquare/LogSum/LogSumExp
(``pool.cu`` global_reduce), LpPool and GlobalLpPool (``pool.cu``). First every case of
``test/core/norm_axis_cases.py`` in each storage (row-major, NHWC in, NHWC out), then the shapes
of the models that use them (style transfer, diffusion UNets, AlexNet, LLM blocks, segmentation
and classifier heads), NaN and ties. ``test/core/test_cuda_norm_axis.py`` checks the same
lowerings without a GPU."""
import numpy as np
import pytest

from conftest import assert_close, core_module, fp16_round, run_graph
from tx2_infer_core import reference
from tx2_infer_core.ir import Graph, Node, Value

RNG = np.random.default_rng(1402)


NC = core_module('norm_axis_cases')
VARIANTS = [(name, before, after) for name in sorted(NC.CASES) if NC.CASES[name][1]
            for before, after in NC.storages(name)]  # a rank-0 input: test_scalar_reductions


def compare(label, graph, x, tol=3e-3):
    """Every output of ``graph`` on the GPU against the numpy backend on the same (FP16)
    inputs; index outputs (ArgMax, ArgMin) exactly."""
    x = {k: fp16_round(v) for k, v in x.items()}
    want = reference.execute(graph, x)
    got = run_graph(graph, x)
    for name in graph.outputs:
        if np.asarray(want[name]).dtype.kind in 'iu':
            np.testing.assert_array_equal(got[name], want[name], err_msg=label)
        else:
            assert_close(f'{label} {name}', got[name], want[name], tol)
    return got, want


@pytest.mark.parametrize('name,before,after', VARIANTS)
def test_case(name, before, after):
    """A case of norm_axis_cases, its input and output row-major or NHWC images."""
    compare(f'{name} (nhwc in {before}, out {after})', NC.case_graph(name, before, after),
            NC.feeds(name, RNG))


def one_node(op, shape, out=None, attrs=None, consts=None, out_dtype='float32'):
    """x -> op(x, *consts) -> y, 4-D values NCHW."""
    out = shape if out is None else out
    consts = dict(consts or {})
    values = {'x': Value('x', shape, 'float32', 'NCHW' if len(shape) == 4 else ''),
              'y': Value('y', out, out_dtype, 'NCHW' if len(out) == 4 else '')}
    node = Node(op, op.lower(), ['x'] + list(consts), ['y'], dict(attrs or {}))
    return Graph([node], ['x'], ['y'], values, consts)


def channel_data(shape, spread=4.0):
    """Channels of their own mean and scale (what a normalisation must remove)."""
    c = shape[1]
    mean = RNG.uniform(-spread, spread, c).reshape((1, c) + (1,) * (len(shape) - 2))
    scale = RNG.uniform(0.2, spread, c).reshape(mean.shape)
    return (mean + scale * RNG.standard_normal(shape)).astype(np.float32)


MODELS = {  # label: (op, shape, attrs, constants, data)
    'style transfer InstanceNormalization': (
        'InstanceNormalization', (1, 64, 128, 128), {'epsilon': 1e-5}, NC.scale_bias(64), 'ch'),
    'diffusion UNet GroupNormalization 32 groups': (
        'GroupNormalization', (1, 320, 32, 32), {'num_groups': 32, 'epsilon': 1e-5},
        NC.scale_bias(320), 'ch'),
    'GroupNormalization per group (opset 18)': (
        'GroupNormalization', (2, 64, 16, 16), {'num_groups': 8}, NC.scale_bias(8), 'ch'),
    'AlexNet LRN': ('LRN', (1, 96, 55, 55), {'size': 5, 'alpha': 1e-4, 'beta': 0.75,
                                             'bias': 1.0}, {}, 'relu'),
    'GoogLeNet LRN': ('LRN', (1, 64, 56, 56), {'size': 5, 'alpha': 1e-4, 'beta': 0.75}, {},
                      'relu'),
    'MeanVarianceNormalization of an image': (
        'MeanVarianceNormalization', (1, 3, 224, 224), {}, {}, 'ch'),
    'face embedding L2 normalisation': ('LpNormalization', (4, 512), {'axis': 1}, {}, ''),
    'L1 normalisation over channels': ('LpNormalization', (1, 256, 14, 14),
                                       {'axis': 1, 'p': 1}, {}, ''),
    'LLM RMSNormalization': ('RMSNormalization', (1, 128, 768), {'epsilon': 1e-6},
                             {'scale': (1 + 0.1 * RNG.standard_normal(768)).astype(np.float32)},
                             'ch'),
    'Hardmax of classifier logits': ('Hardmax', (8, 1000), {}, {}, ''),
    'CumSum of a long row': ('CumSum', (2, 4096), {}, {'axis': np.array(-1)}, 'small'),
    'CumSum exclusive reverse down columns': ('CumSum', (300, 16), {'exclusive': 1,
                                                                    'reverse': 1},
                                              {'axis': np.array(0)}, 'small'),
    'CumProd': ('CumProd', (4, 64), {}, {'axis': np.array(1)}, 'near_one'),
    'LpPool p=2': ('LpPool', (1, 64, 56, 56), {'kernel_shape': [3, 3], 'strides': [2, 2],
                                               'pads': [1, 1, 1, 1]}, {}, ''),
    'LpPool p=3 SAME_UPPER': ('LpPool', (1, 32, 28, 28), {'kernel_shape': [2, 2], 'p': 3,
                                                          'auto_pad': 'SAME_UPPER'}, {}, ''),
    'GlobalLpPool p=2': ('GlobalLpPool', (1, 512, 7, 7), {}, {}, ''),
    'GlobalLpPool p=3': ('GlobalLpPool', (1, 512, 7, 7), {'p': 3}, {}, ''),
}


def model_input(kind, shape):
    if kind == 'ch':
        return channel_data(shape)
    if kind == 'relu':
        return np.maximum(channel_data(shape, 20.0), 0)
    if kind == 'small':
        return (0.02 * RNG.standard_normal(shape)).astype(np.float32)
    return NC.sample(kind, shape, RNG)


def _output_shape(op, shape, attrs, consts):
    graph = one_node(op, shape, (), attrs, consts)
    x = {'x': np.zeros(shape, np.float32)}
    return reference.execute(graph, x)['y'].shape


@pytest.mark.parametrize('label', sorted(MODELS))
def test_model_shapes(label):
    op, shape, attrs, consts, kind = MODELS[label]
    out = _output_shape(op, shape, attrs, consts)
    compare(label, one_node(op, shape, out, attrs, consts), {'x': model_input(kind, shape)})


# data whose reduction over 102400 values stays inside FP16's range
REDUCTIONS = {'ReduceL1': 'small', 'ReduceL2': '', 'ReduceSumSquare': 'small',
              'ReduceLogSum': 'positive', 'ReduceLogSumExp': 'ch', 'ReduceProd': 'near_one'}


@pytest.mark.parametrize('op', sorted(REDUCTIONS))
@pytest.mark.parametrize('axes', [[2, 3], [1], [1, 2, 3]])
def test_reductions_of_a_feature_map(op, axes):
    """(1, 256, 20, 20) over the pixels (an SE block's squeeze), the channels, everything."""
    shape = (1, 256, 20, 20)
    out = tuple(1 if d in axes else n for d, n in enumerate(shape))
    x = model_input(REDUCTIONS[op], shape)
    if op == 'ReduceProd':  # a product of up to 102400 values near 1, inside FP16's range
        x = (1 + 0.002 * RNG.standard_normal(shape)).astype(np.float32)
    compare(f'{op} axes {axes}', one_node(op, shape, out, {'axes': axes}), {'x': x})


def test_scalar_reductions():
    """A rank-0 value (the sum of everything) reduced again: each element its own reduction
    (|s|, log s, s^2, ...) in one global_reduce launch, as numpy's reduction of a scalar."""
    for op in sorted(REDUCTIONS):
        nodes = [Node('ReduceSum', 'sum', ['x'], ['s'], {'keepdims': 0}),
                 Node(op, 'op', ['s'], ['y'], {})]
        values = {'x': Value('x', (4, 5), 'float32', ''), 's': Value('s', (), 'float32', ''),
                  'y': Value('y', (), 'float32', '')}
        graph = Graph(nodes, ['x'], ['y'], values, {})
        compare(f'{op} of a scalar', graph, {'x': NC.sample('positive', (4, 5), RNG)})


def test_log_sum_exp_of_minus_infinity_rows():
    """ReduceLogSumExp of rows of -inf (a masked score) is -inf, of a row with +inf +inf, as
    numpy's (the peak taken as 0 when not finite)."""
    x = RNG.standard_normal((4, 32)).astype(np.float32)
    x[0], x[1, 5] = -np.inf, np.inf
    graph = one_node('ReduceLogSumExp', (4, 32), (4, 1), {'axes': [1]})
    got, want = run_graph(graph, {'x': x})['y'], reference.execute(graph, {'x': x})['y']
    assert got[0, 0] == -np.inf and got[1, 0] == np.inf
    np.testing.assert_allclose(got[2:], want[2:], rtol=2e-3)


ARG = {  # label: (op, shape, attrs, data)
    'segmentation ArgMax over 21 classes': ('ArgMax', (1, 21, 128, 128), {'axis': 1}, ''),
    'classifier ArgMax over 1000 classes': ('ArgMax', (8, 1000), {'axis': 1, 'keepdims': 0},
                                            ''),
    'ArgMin of ties, last index': ('ArgMin', (16, 300), {'axis': 1, 'select_last_index': 1},
                                   'ties'),
    'ArgMax of ties down columns': ('ArgMax', (300, 16), {'axis': 0, 'keepdims': 0}, 'ties'),
    'ArgMax over 2048': ('ArgMax', (3, 2048), {'axis': -1}, ''),
}


@pytest.mark.parametrize('label', sorted(ARG))
def test_arg_indices_are_exact(label):
    """The index of numpy's argmax/argmin on the same FP16 values (first or last of ties)."""
    op, shape, attrs, kind = ARG[label]
    out = _output_shape(op, shape, attrs, {})
    graph = one_node(op, shape, out, attrs, out_dtype='int64')
    got, want = compare(label, graph, {'x': NC.sample(kind, shape, RNG)})
    assert want['y'].max() > 0


def test_nan_wins_as_in_numpy():
    """ArgMax, ArgMin and Hardmax of rows holding NaN: the first NaN's index (the last one's
    with select_last_index)."""
    x = RNG.standard_normal((6, 50)).astype(np.float32)
    x[1, 7] = x[1, 30] = x[2, 0] = x[3, 49] = np.nan
    x[4] = np.nan
    for op, attrs in (('ArgMax', {'axis': 1}), ('ArgMin', {'axis': 1}),
                      ('ArgMax', {'axis': 1, 'select_last_index': 1})):
        graph = one_node(op, (6, 50), (6, 1), attrs, out_dtype='int64')
        np.testing.assert_array_equal(run_graph(graph, {'x': x})['y'],
                                      reference.execute(graph, {'x': x})['y'], err_msg=op)
    graph = one_node('Hardmax', (6, 50))
    np.testing.assert_array_equal(run_graph(graph, {'x': x})['y'],
                                  reference.execute(graph, {'x': x})['y'])


def test_small_net_engine_matches_numpy(tmp_path):
    """``norm_axis_cases.small_net`` (these ops behind convolutions) built for cuda FP16 against
    the numpy backend: the embedding and the cumulative log-sum-exp within FP16 tolerance, the
    ArgMax and Hardmax picks wherever numpy's best two are apart by more than FP16 noise."""
    from tx2_infer_core.engine import Engine
    path = NC.small_net(tmp_path / 'net.onnx')
    x = {'x': fp16_round(NC.sample('', (1, 3, 32, 32), RNG))}
    outputs = {}
    for backend in ('numpy', 'cuda'):
        engine = Engine.build(path, backend=backend)
        try:
            outputs[backend] = engine.run(x)
        finally:
            engine.close()
    got, want = outputs['cuda'], outputs['numpy']
    for name in ('emb', 'cs'):
        assert_close(f'small net {name}', got[name], want[name], 1e-2)
    from tx2_infer_core.engine_build import import_model
    pooled = reference.execute(import_model(path), x, keep_all=True)['p2']  # ArgMax's input
    top2 = np.sort(pooled, axis=1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 2e-2 * np.abs(top2[:, 1]).max()
    assert clear.mean() > 0.5
    np.testing.assert_array_equal(got['seg'][clear[:, None]], want['seg'][clear[:, None]])
    assert got['hard'].sum() == 1 and set(np.unique(got['hard'])) <= {0.0, 1.0}
