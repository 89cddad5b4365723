"""ConvTranspose, standalone BatchNormalization and depthwise convolutions lower to their own
kernels (no GPU: ``lower_graph``), and what the launches hand the device computes the
reference's answer: a numpy model of each kernel's index maths (phases and taps of
``kernels/conv_transpose.cu``, the [R][S][K] weights of ``kernels/depthwise.cu``) runs on the
lowered parameters and the weight image, and is compared with ``ops/`` over many shapes."""
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tx2_infer_core import reference
from tx2_infer_core.cuda import lower_conv_transpose
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops.conv import Conv, ConvTranspose
from tx2_infer_core.ops.fused import FusedConvTranspose, apply_activation
from tx2_infer_core.ops.nn import BatchNormalization
from tx2_infer_core.passes import optimize

RNG = np.random.default_rng(7)


def graph_of(op, x, weights, attrs, y_shape=None, more=()):
    """One-node graph ``op(x, *weights)``; the output shape from the reference when unset."""
    names = list(weights) + list(more)
    if y_shape is None:
        ref = {'ConvTranspose': ConvTranspose, 'Conv': Conv}[op]
        y_shape = ref(x, *weights.values(), **attrs).shape
    layout = 'NCHW' if x.ndim == 4 else ''
    values = {'x': Value('x', x.shape, 'float32', layout),
              'y': Value('y', tuple(y_shape), 'float32', layout)}
    return Graph([Node(op, 'n0', ['x'] + names, ['y'], dict(attrs))], ['x'], ['y'], values,
                 dict(weights))


def weights_at(lowered, ref, count, dtype):
    """``count`` values of ``dtype`` at weight-buffer Ref ``ref`` (what the device reads)."""
    image, size = lowered.weight_image(), np.dtype(dtype).itemsize
    return np.frombuffer(image[ref.offset:ref.offset + count * size].tobytes(), dtype)


def bias_of(lowered, f, channels):
    if f['bias'].base == 'null':
        return np.zeros(channels, np.float32)
    return weights_at(lowered, f['bias'], channels, np.float32)


def emulate_convt(lowered, launch, x):
    """What ``convt_*`` computes (before the epilogue's activation and residual) from the
    launch's ConvParams and the weight image, phase by phase as the CTAs do, in float64."""
    f = launch.fields
    k = f['Kg'] * f['groups']
    w = weights_at(lowered, f['w'], k * f['R'] * f['S'] * f['Cg'], np.float16)
    w = w.astype(np.float64).reshape(k, f['R'], f['S'], f['Cg'])
    xs = x.astype(np.float64).transpose(0, 2, 3, 1)              # NHWC
    y = np.zeros((f['N'], f['P'], f['Q'], k))
    for z in range(launch.grid[2]):                              # CTAs along z
        g, phase = divmod(z, f['sh'] * f['sw'])
        a, b = divmod(phase, f['sw'])
        oh, ow = np.arange(a, f['P'], f['sh']), np.arange(b, f['Q'], f['sw'])
        for r in range(f['R']):
            if (a + f['ph'] - r * f['dh']) % f['sh']:
                continue
            th = oh + f['ph'] - r * f['dh']
            ih = np.where(th >= 0, th // f['sh'], -1)
            for s in range(f['S']):
                if (b + f['pw'] - s * f['dw']) % f['sw']:
                    continue
                tw = ow + f['pw'] - s * f['dw']
                iw = np.where(tw >= 0, tw // f['sw'], -1)
                rows, cols = (ih >= 0) & (ih < f['H']), (iw >= 0) & (iw < f['W'])
                xin = xs[:, ih[rows]][:, :, iw[cols], g * f['Cg']:(g + 1) * f['Cg']]
                wk = w[g * f['Kg']:(g + 1) * f['Kg'], r, s]              # [Kg, Cg]
                y[np.ix_(range(f['N']), oh[rows], ow[cols], range(g * f['Kg'],
                                                                  (g + 1) * f['Kg']))] += \
                    xin @ wk.T
    y += bias_of(lowered, f, k)
    return y.transpose(0, 3, 1, 2)


def emulate_depthwise(lowered, launch, x):
    """What ``depthwise``/``depthwise_h2`` computes (before activation and residual)."""
    f = launch.fields
    k = f['Kg'] * f['groups']
    w = weights_at(lowered, f['w'], f['R'] * f['S'] * k, np.float16)
    w = w.astype(np.float64).reshape(f['R'], f['S'], k)
    xs = x.astype(np.float64)
    y = np.zeros((f['N'], k, f['P'], f['Q']))
    oh, ow = np.arange(f['P']), np.arange(f['Q'])
    channel_in = np.arange(k) // f['Kg']
    for r in range(f['R']):
        ih = oh * f['sh'] - f['ph'] + r * f['dh']
        rows = (ih >= 0) & (ih < f['H'])
        for s in range(f['S']):
            iw = ow * f['sw'] - f['pw'] + s * f['dw']
            cols = (iw >= 0) & (iw < f['W'])
            part = xs[:, channel_in][:, :, ih[rows]][:, :, :, iw[cols]]
            y[:, :, oh[rows][:, None], ow[cols]] += part * w[r, s].reshape(1, -1, 1, 1)
    return y + bias_of(lowered, f, k).reshape(1, -1, 1, 1)


def depthwise_kernel(channels, multiplier=1):
    """The depthwise kernel a dense NHWC input of ``channels`` gets."""
    if multiplier == 1 and channels % 8 == 0:
        return 'depthwise_v8'
    return 'depthwise_h2' if multiplier == 1 and channels % 2 == 0 else 'depthwise'


def fp16(a):
    return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / max(np.linalg.norm(b), 1e-12))


@st.composite
def convt_cases(draw):
    """(x, w, b, attrs) of a 2-D ConvTranspose: groups, strides 1..4, dilations, kernel sizes,
    explicit pads, auto_pad, output_padding and output_shape."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg, kg = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    attrs = dict(strides=[sh, sw], dilations=[dh, dw], group=groups)
    mode = draw(st.sampled_from(['pads', 'SAME_UPPER', 'SAME_LOWER', 'VALID', 'output_shape',
                                 'none']))
    oph, opw = draw(st.integers(0, sh - 1)), draw(st.integers(0, sw - 1))
    if mode == 'pads':
        attrs['pads'] = [draw(st.integers(0, (kh - 1) * dh)), draw(st.integers(0, (kw - 1) * dw)),
                         draw(st.integers(0, (kh - 1) * dh)), draw(st.integers(0, (kw - 1) * dw))]
        attrs['output_padding'] = [oph, opw]
    elif mode == 'output_shape':
        attrs['output_shape'] = [h * sh + draw(st.integers(-1, 1)), w * sw]
    elif mode != 'none':
        attrs['auto_pad'] = mode
        attrs['output_padding'] = [oph, opw]
    n = draw(st.integers(1, 2))
    x = fp16(RNG.standard_normal((n, groups * cg, h, w)))
    wt = fp16(RNG.standard_normal((groups * cg, kg, kh, kw)))
    b = RNG.standard_normal(groups * kg).astype(np.float32)
    return x, wt, b, attrs


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(convt_cases(), st.sampled_from([62, 87]))
def test_conv_transpose_launch_computes_the_reference(case, arch):
    x, wt, b, attrs = case
    ref = ConvTranspose(x, wt, b, **attrs)
    full = lower_conv_transpose.full_sizes(
        x.shape[2:], wt.shape[2:], attrs['strides'], attrs['dilations'],
        attrs.get('output_padding') or [0, 0])
    # An output larger than the full one by SAME_UPPER / output_shape: the reference crops
    # it with a negative begin (a Python slice from the end), which is not ONNX; left out.
    wanted = attrs.get('output_shape') or (
        [i * s for i, s in zip(x.shape[2:], attrs['strides'])]
        if attrs.get('auto_pad', '').startswith('SAME') else ref.shape[2:])
    assume(min(ref.shape[2:]) >= 1 and all(f >= o for f, o in zip(full, wanted)))
    lowered = lower_graph(graph_of('ConvTranspose', x, {'w': wt, 'b': b}, attrs), arch)
    [launch] = lowered.launches
    assert launch.module.split('@')[0] == 'conv_transpose'
    assert launch.kernel.startswith('convt_simt' if arch == 62 else 'convt_wmma')
    assert rel(emulate_convt(lowered, launch, x), ref) < 2e-3  # fp16 weights, exact x


def test_conv_transpose_picks_vector_kernels_where_channels_align():
    x = fp16(RNG.standard_normal((1, 16, 5, 5)))
    wt = fp16(RNG.standard_normal((16, 8, 4, 4)))
    attrs = dict(strides=[2, 2], pads=[1, 1, 1, 1])
    g = graph_of('ConvTranspose', x, {'w': wt}, attrs)
    kernels = {arch: lower_graph(g, arch).launches[0] for arch in (62, 72, 87, 90)}
    assert kernels[62].kernel == 'convt_simt_v4' and kernels[62].block == (256, 1, 1)
    assert {kernels[a].kernel for a in (72, 87, 90)} == {'convt_wmma_v8'}
    assert lower_graph(g, 90, conv_path='simt').launches[0].kernel == 'convt_simt_v4'
    assert kernels[90].grid == (1, 1, 4)  # 25 pixels a phase, 8 channels, 4 phases
    odd = graph_of('ConvTranspose', x[:, :3], {'w': wt[:3]}, attrs)
    assert lower_graph(odd, 62).launches[0].kernel == 'convt_simt'
    assert lower_graph(odd, 87).launches[0].kernel == 'convt_wmma'


def test_fused_conv_transpose_carries_bias_activation_and_residual():
    """ConvTranspose -> BN -> Relu -> Add(r) becomes one launch: the BN folded into the
    weights, the Relu and the residual in the epilogue."""
    x = fp16(RNG.standard_normal((1, 8, 6, 6)))
    wt = fp16(RNG.standard_normal((8, 4, 2, 2)))
    bn = [RNG.random(4).astype(np.float32) + 0.5 for _ in range(4)]
    shape = (1, 4, 12, 12)
    values = {n: Value(n, (1, 8, 6, 6) if n == 'x' else shape, 'float32', 'NCHW')
              for n in ('x', 'y', 'z', 'a', 'r', 'out')}
    weights = {'w': wt, 's': bn[0], 'b': bn[1], 'm': bn[2], 'v': bn[3]}
    nodes = [Node('ConvTranspose', 'ct', ['x', 'w'], ['y'], {'strides': [2, 2]}),
             Node('BatchNormalization', 'bn', ['y', 's', 'b', 'm', 'v'], ['z'], {}),
             Node('Relu', 'relu', ['z'], ['a']),
             Node('Add', 'add', ['a', 'r'], ['out'])]
    graph = Graph(nodes, ['x', 'r'], ['out'], values, weights)
    optimised, _ = optimize(graph)
    assert [n.op for n in optimised.nodes] == ['FusedConvTranspose']
    feeds = {'x': x, 'r': RNG.standard_normal(shape).astype(np.float32)}
    assert rel(reference.execute(optimised, feeds)['out'],
               reference.execute(graph, feeds)['out']) < 1e-5
    [launch] = lower_graph(optimised, 62).launches
    f = launch.fields
    assert f['act']['kind'] == 1 and f['res'].base == 'arena' and f['res_after'] == 1
    assert f['bias'].base == 'weights'


@pytest.mark.parametrize('attrs', [
    {}, {'strides': [3], 'pads': [2, 1], 'output_padding': [1]},
    {'strides': [2], 'dilations': [2], 'group': 2}, {'strides': [2], 'auto_pad': 'SAME_LOWER'},
    {'strides': [2], 'output_shape': [10]}])
@pytest.mark.parametrize('arch', [62, 87])
def test_1d_conv_transpose_is_the_2d_one_with_h_1(attrs, arch):
    """A 1-D ConvTranspose lowers as a 2-D one of an (N, C, 1, L) input (``lift_1d``): its
    launch computes the 1-D reference."""
    x = fp16(RNG.standard_normal((2, 4, 5)))
    wt = fp16(RNG.standard_normal((4, 3, 3)))
    b = RNG.standard_normal(3 * attrs.get('group', 1)).astype(np.float32)
    ref = ConvTranspose(x, wt, b, **attrs)
    lowered = lower_graph(graph_of('ConvTranspose', x, {'w': wt, 'b': b}, attrs), arch)
    [launch] = [k for k in lowered.launches if k.module.startswith('conv_transpose')]
    assert (launch.fields['H'], launch.fields['P'], launch.fields['R']) == (1, 1, 1)
    assert rel(emulate_convt(lowered, launch, x[:, :, None])[:, :, 0], ref) < 2e-3


def test_lower_conv_transpose_refuses_3d():
    x = np.zeros((1, 2, 5, 5, 5), np.float32)
    g = graph_of('ConvTranspose', x, {'w': np.ones((2, 3, 3, 3, 3), np.float32)}, {})
    with pytest.raises(UnsupportedOpError, match="'ConvTranspose' at node 'n0'.*2-D"):
        lower_graph(g, 62)


@pytest.mark.parametrize('attrs, expected', [
    ({'pads': [1, 2, 0, 0]}, [1, 2]),
    ({'auto_pad': 'VALID'}, [0, 0]),
    ({}, [0, 0]),
    ({'auto_pad': 'SAME_UPPER', 'strides': [2, 2]}, [0, 0]),   # full 9, out 8: total 1
    ({'auto_pad': 'SAME_LOWER', 'strides': [2, 2]}, [1, 1]),
    ({'output_shape': [7, 7], 'strides': [2, 2]}, [1, 1]),     # NOTSET: total - total // 2
    ({'output_shape': [10, 10], 'strides': [2, 2]}, [0, 0]),    # larger: total -1
])
def test_transpose_begin_pads(attrs, expected):
    x = np.zeros((1, 1, 4, 4), np.float32)
    out = ConvTranspose(x, np.zeros((1, 1, 3, 3), np.float32), **attrs).shape[2:]
    assert lower_conv_transpose.transpose_begin_pads(attrs, (4, 4), (3, 3), out) == expected


@pytest.mark.parametrize('c, mult, stride, pad, act', [
    (32, 1, 1, 1, 'Relu'),        # 8 channels a thread
    (33, 1, 2, 1, ''),            # odd channels: one channel a thread
    (8, 2, 1, 0, 'HardSwish'),    # channel multiplier 2: Kg = 2
    (6, 1, 2, 2, 'Clip'),         # half2
])
def test_depthwise_conv_lowers_to_the_depthwise_kernel(c, mult, stride, pad, act):
    x = fp16(RNG.standard_normal((2, c, 9, 7)))
    wt = fp16(RNG.standard_normal((c * mult, 1, 3, 3)))
    b = RNG.standard_normal(c * mult).astype(np.float32)
    attrs = dict(group=c, strides=[stride, stride], pads=[pad] * 4)
    graph = graph_of('Conv', x, {'w': wt, 'b': b}, attrs)
    if act:
        graph.nodes.append(Node(act, 'act', ['y'], ['z']))
        graph.values['z'] = Value('z', graph.values['y'].shape, 'float32', 'NCHW')
        graph.outputs = ['z']
    optimised, _ = optimize(graph)
    for arch in (62, 87, 90):
        [launch] = lower_graph(optimised, arch).launches
        module = launch.module.split('@')[0]
        assert (module, launch.kernel) == ('depthwise', depthwise_kernel(c, mult))
    lowered = lower_graph(optimised, 62)
    y = emulate_depthwise(lowered, lowered.launches[0], x)
    ref = Conv(x, wt, b, **attrs)
    assert rel(y, ref) < 2e-3
    assert lowered.launches[0].fields['act']['kind'] == (
        {'': 0, 'Relu': 1, 'HardSwish': 5, 'Clip': 7}[act])


def test_grouped_convs_keep_their_paths():
    """Groups of 8+ channels stay on the GEMM kernels (a grid z per group); thin groups on
    conv_direct; only one input channel a group is depthwise."""
    def kernel(c, k, groups, arch):
        x = np.zeros((1, c, 8, 8), np.float32)
        g = graph_of('Conv', x, {'w': np.ones((k, c // groups, 3, 3), np.float32)},
                     {'group': groups, 'pads': [1] * 4})
        return lower_graph(g, arch).launches[0].kernel

    assert kernel(64, 128, 4, 62) == 'conv_simt_h2_v8'
    assert kernel(64, 128, 4, 90).startswith('conv_mma')
    assert kernel(16, 16, 4, 90) == 'conv_direct'
    assert kernel(16, 16, 16, 90) == 'depthwise_v8'
    assert kernel(18, 18, 18, 62) == 'depthwise_h2'


@pytest.mark.parametrize('shape', [(2, 6, 5, 3), (1, 7, 4, 4), (3, 5), (2, 4, 6)])
def test_standalone_batchnorm_is_one_scale_shift_launch(shape):
    c = shape[1]
    x = fp16(RNG.standard_normal(shape))
    params = [RNG.standard_normal(c).astype(np.float32), RNG.standard_normal(c).astype(
        np.float32), RNG.standard_normal(c).astype(np.float32),
        RNG.random(c).astype(np.float32) + 0.1]
    names = ['s', 'b', 'm', 'v']
    layout = 'NCHW' if len(shape) == 4 else ''
    values = {n: Value(n, shape, 'float32', layout) for n in ('x', 'y')}
    node = Node('BatchNormalization', 'n0', ['x'] + names, ['y'], {'epsilon': 1e-2})
    graph = Graph([node], ['x'], ['y'], values, dict(zip(names, params)))
    optimised, _ = optimize(graph)
    assert [n.op for n in optimised.nodes] == ['BatchNormalization']
    lowered = lower_graph(optimised, 62)
    ref = BatchNormalization(x, *params, epsilon=1e-2)
    if len(shape) != 4:
        assert [k.module for k in lowered.launches] == ['elementwise'] * 2  # Mul, Add
        return
    [launch] = lowered.launches
    assert launch.kernel == depthwise_kernel(c)
    assert (launch.fields['R'], launch.fields['S'], launch.fields['groups']) == (1, 1, c)
    assert rel(emulate_depthwise(lowered, launch, x), ref) < 2e-3


def test_batchnorm_training_mode_is_refused():
    values = {n: Value(n, (1, 2, 3, 3), 'float32', 'NCHW') for n in ('x', 'y')}
    names = ['s', 'b', 'm', 'v']
    node = Node('BatchNormalization', 'n0', ['x'] + names, ['y'], {'training_mode': 1})
    graph = Graph([node], ['x'], ['y'], values, {n: np.ones(2, np.float32) for n in names})
    with pytest.raises(UnsupportedOpError, match='inference mode'):
        lower_graph(graph, 62)


def test_emulation_sees_a_wrong_weight_layout(monkeypatch):
    """The emulation above can fail: weights repacked [K][R][S][Cg] with R and S swapped."""
    x = fp16(RNG.standard_normal((1, 4, 5, 5)))
    wt = fp16(RNG.standard_normal((4, 3, 3, 3)))
    attrs = dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1])
    good = lower_conv_transpose.repack_weights
    monkeypatch.setattr(lower_conv_transpose, 'repack_weights',
                        lambda w, group: good(w, group).transpose(0, 2, 1, 3).copy())
    lowered = lower_graph(graph_of('ConvTranspose', x, {'w': wt}, attrs), 62)
    assert rel(emulate_convt(lowered, lowered.launches[0], x), ConvTranspose(x, wt, **attrs)) \
        > 0.1


def test_fused_conv_transpose_reference_epilogue():
    x = fp16(RNG.standard_normal((1, 2, 3, 3)))
    wt = fp16(RNG.standard_normal((2, 2, 2, 2)))
    r = RNG.standard_normal((1, 2, 6, 6)).astype(np.float32)
    y = ConvTranspose(x, wt, strides=[2, 2])
    got = FusedConvTranspose(x, wt, None, r, strides=[2, 2], activation='Relu')
    np.testing.assert_allclose(got, apply_activation(y + r, 'Relu'), rtol=1e-6)
    got = FusedConvTranspose(x, wt, None, r, strides=[2, 2], activation='Relu',
                             residual_after_act=1)
    np.testing.assert_allclose(got, np.maximum(y, 0) + r, rtol=1e-6)


def _module(path, name):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope='module')
def node_cases():
    """(CUDA conformance module, CPU node-test module, {op: case folders})."""
    root = Path(__file__).resolve().parents[1]
    cuda_conf = _module(root / 'cuda' / 'test_node_conformance_cuda.py', 'tx2_cuda_conf')
    cpu = cuda_conf._cpu_module()
    return cuda_conf, cpu, cpu.collect_cases()


EMULATORS = {'convt': emulate_convt, 'depthwise': emulate_depthwise}


@pytest.mark.parametrize('op', ['ConvTranspose', 'BatchNormalization'])
def test_onnx_node_cases_lower_and_compute_the_expected_output(op, node_cases):
    """Every ONNX node case of the op, as the GPU conformance test builds it, either lowers to
    launches whose emulation gives the expected output (FP16 inputs, the conformance
    tolerance) or is refused: 3-D ConvTranspose and training-mode BN only (a 1-D one runs
    as the 2-D one with H = 1: ``lift_1d``)."""
    cuda_conf, cpu, cases = node_cases
    outcome = {}
    for folder in cases[op]:
        model = onnx.load(str(folder / 'model.onnx'))
        proto = model.graph.node[0]
        for data in sorted(folder.glob('test_data_set_*')):
            feeds = cpu.load_tensors(data, 'input', model.graph.input)
            expected = cpu.load_tensors(data, 'output', model.graph.output)
            want = expected[proto.output[0]]
            graph, acts = cuda_conf.case_graph(cpu.node_from_proto(proto), proto, feeds,
                                               expected)
            try:
                lowered = lower_graph(graph, 62)
            except UnsupportedOpError:
                outcome[folder.name] = 'refused'
                continue
            [launch] = [k for k in lowered.launches if k.module != 'elementwise']
            x = fp16(next(iter(acts.values())))
            got = EMULATORS[launch.kernel.split('_')[0]](
                lowered, launch, x[:, :, None] if x.ndim == 3 else x)
            got = got[:, :, 0] if x.ndim == 3 else got
            outcome[folder.name] = 'pass' if cuda_conf.close(got, want) else 'fail'
    refused = {n for n, s in outcome.items() if s == 'refused'}
    assert 'fail' not in outcome.values(), outcome
    assert refused == {n for n in outcome if n.endswith(('_3d', '_training_mode'))}
    assert len(outcome) - len(refused) >= 2
