"""Issue 14: the post-activation scale and shift of the convolution epilogue, without a GPU.

``y = act(conv + b [+ r before]) * post_scale + post_shift [+ r after]``: the numpy ops
(hypothesis), ``tx2_act_epilogue`` of kernels/common.cuh built for the host, the
``fold_post_affine`` pass on small graphs (numpy bit for bit, the ONNX export against ONNX
Runtime, what it declines), the lowering (ActParams on every conv path, int8 too), the
kernels compiled (nvcc sm_90, NVRTC sm_62/72/87) and PP-LCNetV3's learnable affine blocks
in ppocr-rec / ppocr-det (launches, numpy against ONNX Runtime).
"""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from epilogue_cases import RNG, conv_graph, feeds_of, linear_graph
from hypothesis import given, settings
from hypothesis import strategies as st
from test_conv_epilogue_acts import HOST, kernel_activations
from unary_cases import device_compilers, host_compiler, probe

from tx2_infer_core import reference
from tx2_infer_core.cuda import compile as cc, params
from tx2_infer_core.cuda.lower_conv import mma_module
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.ir import Node
from tx2_infer_core.ops import fused
from tx2_infer_core.ops.conv import Conv
from tx2_infer_core.passes import POINTWISE_LEVEL, optimize
from tx2_infer_core.passes.fold_post_affine import compose_post_affine

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
import zoo_data  # noqa: E402
import zoo_launches  # noqa: E402

ACTS = ['HardSwish', 'Relu', 'LeakyRelu', 'Sigmoid', 'Clip', 'PRelu']
HSWISH = params.ACT_CODES['HardSwish']


def affine_tail(scale=0.75, shift=-0.25, first='Mul', second='Add', act='HardSwish'):
    """c -> act -> a -> first(scale) -> scaled -> second(shift) -> y (either op may be None)."""
    nodes, extra, last = [Node(act, 'act', ['c'], ['a'])], {}, 'a'
    for op, value, out in ((first, scale, 'scaled'), (second, shift, 'y')):
        if op:
            extra[f'k_{out}'] = np.array(value, np.float32)
            nodes.append(Node(op, f'aff_{out}', [last, f'k_{out}'], [out]))
            last = out
    nodes[-1].outputs = ['y']
    return nodes, extra


# numpy ops ---------------------------------------------------------------------------------

floats = st.floats(-4, 4, width=32, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(act=st.sampled_from(ACTS), scale=floats, shift=floats, residual=st.sampled_from(
    [None, 0, 1]), seed=st.integers(0, 2 ** 16))
def test_fused_conv_applies_the_affine_after_the_activation(act, scale, shift, residual,
                                                            seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, 3, 5, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    r = rng.standard_normal((1, 4, 5, 6)).astype(np.float32) if residual is not None else None
    slope = rng.uniform(-1, 1, (4, 1, 1)).astype(np.float32)
    got = fused.FusedConv(x, w, b, r, slope, pads=[1, 1, 1, 1], activation=act,
                          residual_after_act=residual or 0, post_scale=scale, post_shift=shift)
    c = Conv(x, w, b, pads=[1, 1, 1, 1]).astype(np.float64)
    if residual == 0:
        c = c + r
    want = fused.apply_activation(c, act, slope=slope) * scale + shift
    if residual == 1:
        want = want + r
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * (1 + np.abs(want).max()))


@settings(max_examples=30, deadline=None)
@given(scale=floats, shift=floats, seed=st.integers(0, 2 ** 16))
def test_fused_linear_transpose_and_int8_take_it_too(scale, shift, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((3, 8)).astype(np.float32), rng.standard_normal((8, 5))
    got = fused.FusedLinear(x, w.astype(np.float32), activation='Relu', post_scale=scale,
                            post_shift=shift)
    np.testing.assert_allclose(got, np.maximum(x @ w, 0) * scale + shift, rtol=1e-5,
                               atol=1e-5 * (1 + abs(shift) + abs(scale) * 10))
    xt = rng.standard_normal((1, 2, 4, 4)).astype(np.float32)
    wt = rng.standard_normal((2, 3, 3, 3)).astype(np.float32)
    plain = fused.FusedConvTranspose(xt, wt, activation='Sigmoid')
    np.testing.assert_array_equal(
        fused.FusedConvTranspose(xt, wt, activation='Sigmoid', post_scale=scale,
                                 post_shift=shift), fused.post_affine(plain, scale, shift))
    from tx2_infer_core.ops.quant import FusedConvInt8
    xq, wq = (rng.integers(-127, 128, s).astype(np.int8) for s in ((1, 4, 5, 5), (3, 4, 1, 1)))
    args = dict(x_scale=0.05, w_scales=[0.01, 0.02, 0.03], activation='HardSwish')
    f = FusedConvInt8(xq, wq, **args)
    np.testing.assert_array_equal(FusedConvInt8(xq, wq, post_scale=scale, post_shift=shift,
                                                **args),
                                  (f * np.float32(scale)) + np.float32(shift))


def test_defaults_are_the_identity_and_inplace_is_bit_equal():
    y = RNG.standard_normal((4, 7)).astype(np.float32)
    assert fused.post_affine(y) is y
    z = y.copy()
    fused.post_affine_inplace(z, 0.3, -1.7)
    np.testing.assert_array_equal(z, fused.post_affine(y, 0.3, -1.7))


# the kernel helper on the host --------------------------------------------------------------

MAIN = '''int main(int argc, char **argv) {
    ActParams a = {atoi(argv[1]), 0.01f, 0.5f, 0.f, 0.f, (float)atof(argv[2]),
                   (float)atof(argv[3])};
    float x;
    while (fread(&x, sizeof x, 1, stdin) == 1) {
        const float y = tx2_act_epilogue(x, a, 0, 0);
        fwrite(&y, sizeof y, 1, stdout);
    }
    return 0;
}
'''


def test_kernel_epilogue_applies_the_affine_after_the_activation(tmp_path):
    if host_compiler() is None:
        pytest.skip('no host C++ compiler')
    src, exe = tmp_path / 'post.cpp', tmp_path / 'post'
    src.write_text(HOST + kernel_activations() + MAIN)   # to the end of tx2_act_epilogue
    subprocess.run([host_compiler(), '-O1', '-o', str(exe), str(src), '-lm'], check=True,
                   capture_output=True)
    x = probe('Elu')
    x = x[np.isfinite(x)]
    for kind, scale, shift in ((HSWISH, 0.75, -0.25), (HSWISH, 1.0, 0.0), (0, -2.0, 3.0)):
        out = subprocess.run([str(exe), str(kind), repr(scale), repr(shift)], check=True,
                             capture_output=True, input=x.tobytes()).stdout
        act = fused.apply_activation(x, 'HardSwish') if kind else x
        np.testing.assert_allclose(np.frombuffer(out, np.float32),
                                   act * np.float32(scale) + np.float32(shift), rtol=1e-6,
                                   atol=1e-6, err_msg=f'{kind} {scale} {shift}')


# the pass ----------------------------------------------------------------------------------

def folded(graph, level=POINTWISE_LEVEL):
    """The optimised graph, after checking its numpy output is the unfused graph's."""
    optimised, report = optimize(graph, level)
    feeds = feeds_of(graph)
    want, got = reference.execute(graph, feeds), reference.execute(optimised, feeds)
    for name in graph.outputs:
        np.testing.assert_array_equal(got[name], want[name])
    return optimised, report


@pytest.mark.parametrize('first, second, scale, shift', [
    ('Mul', 'Add', 0.75, -0.25), ('Mul', None, 1.5, 0.0), (None, 'Add', 1.0, 0.5),
    ('Div', 'Sub', 0.5, 2.0)])
def test_scalar_affine_after_activated_conv_folds(first, second, scale, shift):
    nodes, extra = affine_tail(2.0 if first == 'Div' else scale, -shift if second == 'Sub'
                               else shift, first, second)
    graph = conv_graph(nodes, extra=extra)
    if first == 'Div':
        optimised, _ = optimize(graph, POINTWISE_LEVEL)   # y / 2 is y * 0.5 exactly
    else:
        optimised, _ = folded(graph)
    [node] = optimised.nodes
    assert node.op == 'FusedConv' and node.outputs == ['y']
    assert (node.attrs['post_scale'], node.attrs['post_shift']) == (scale, shift)


def test_constant_first_sub_negates_the_scale():
    nodes = [Node('HardSwish', 'act', ['c'], ['a']), Node('Sub', 'sub', ['k', 'a'], ['y'])]
    optimised, _ = folded(conv_graph(nodes, extra={'k': np.array([3.0], np.float32)}))
    [node] = optimised.nodes
    assert (node.attrs['post_scale'], node.attrs['post_shift']) == (-1.0, 3.0)


def test_level_2_keeps_the_affine_ops():
    nodes, extra = affine_tail()
    optimised, _ = optimize(conv_graph(nodes, extra=extra), 2)
    assert [n.op for n in optimised.nodes] == ['FusedConv', 'Mul', 'Add']


@pytest.mark.parametrize('case', ['per_channel', 'graph_output', 'two_readers', 'no_act',
                                  'add_then_mul', 'div_by_zero'])
def test_what_the_pass_declines(case):
    nodes, extra = affine_tail()
    outputs = None
    if case == 'per_channel':
        extra['k_scaled'] = RNG.uniform(0.5, 1, (1, 5, 1, 1)).astype(np.float32)
    elif case == 'graph_output':
        outputs = ['a', 'y']
    elif case == 'two_readers':
        nodes.append(Node('Relu', 'other', ['a'], ['o']))
        outputs = ['y', 'o']
    elif case == 'no_act':
        nodes = nodes[1:]
        nodes[0].inputs[0] = 'c'
    elif case == 'add_then_mul':
        nodes, extra = affine_tail(first='Add', second='Mul')
    elif case == 'div_by_zero':
        nodes, extra = affine_tail(0.0, 0.0, 'Div', None)
    graph = conv_graph(nodes, extra=extra)
    graph.outputs = outputs or graph.outputs
    optimised, report = optimize(graph, POINTWISE_LEVEL)
    if case == 'add_then_mul':          # the Add folds, the Mul after it stays
        assert report['fold_post_affine'] == 1 and len(optimised.nodes) == 2
        post = optimised.nodes[0].attrs
        assert (post['post_scale'], post['post_shift']) == (1.0, 0.75)
        return
    assert report['fold_post_affine'] == 0, case
    assert all('post_scale' not in n.attrs for n in optimised.nodes), case


def test_residual_after_declines_and_a_later_residual_goes_after():
    """conv -> act -> Add(x) (YOLO order: residual after) -> Mul stays; conv -> act -> Mul ->
    Add(k) -> Add(x) folds the affine, then the residual after it."""
    nodes = [Node('HardSwish', 'act', ['c'], ['a']), Node('Add', 'res', ['a', 'x'], ['r']),
             Node('Mul', 'mul', ['r', 'k'], ['y'])]
    k = {'k': np.array(0.5, np.float32)}
    optimised, _ = folded(conv_graph(nodes, k=5, extra=k))
    assert [n.op for n in optimised.nodes] == ['FusedConv', 'Mul']
    tail, extra = affine_tail()
    tail[-1].outputs = ['z']
    tail.append(Node('Add', 'res', ['z', 'x'], ['y']))
    optimised, _ = folded(conv_graph(tail, k=5, extra=extra))
    [node] = optimised.nodes
    assert node.attrs['residual_after_act'] == 1 and node.attrs['post_scale'] == 0.75


def test_fused_linear_takes_it_too():
    tail, extra = affine_tail()
    optimised, _ = folded(linear_graph(tail, extra=extra))
    [node] = optimised.nodes
    assert node.op == 'FusedLinear' and node.attrs['post_shift'] == -0.25


@pytest.mark.parametrize('op, c, first, want', [
    ('Add', 2.0, True, (1.0, 2.0)), ('Sub', 2.0, False, (-1.0, 2.0)),
    ('Mul', 3.0, True, (3.0, 0.0)), ('Div', 4.0, True, (0.25, 0.0)),
    ('Div', 4.0, False, None), ('Div', 0.0, True, None)])
def test_compose_post_affine(op, c, first, want):
    assert compose_post_affine(1.0, 0.0, op, c, first) == want
    assert compose_post_affine(1.0, 1.0, 'Mul', 2.0, True) is None  # after a shift: declined


def test_export_to_onnx_runtime():
    """The ort backend's export of a FusedConv with post_scale / post_shift (Mul, Add), and
    of a FusedConv with a residual after them."""
    ort = pytest.importorskip('onnxruntime')
    from tx2_infer_core.onnx_export import to_onnx
    tail, extra = affine_tail()
    tail[-1].outputs = ['z']
    tail.append(Node('Add', 'res', ['z', 'x'], ['y']))
    graph = conv_graph(tail, k=5, extra=extra)
    optimised, _ = optimize(graph, POINTWISE_LEVEL)
    assert [n.op for n in optimised.nodes] == ['FusedConv']
    feeds = feeds_of(graph)
    session = ort.InferenceSession(to_onnx(optimised).SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    np.testing.assert_allclose(session.run(None, feeds)[0], reference.execute(graph, feeds)['y'],
                               rtol=1e-5, atol=1e-5)


# lowering and compiling ------------------------------------------------------------------

@pytest.mark.parametrize('arch, path, family', [
    (62, 'simt', 'conv_simt_h2'), (72, 'tc', 'conv_wmma'), (90, 'tc', 'conv_mma_gather'),
    (90, 'simt', 'depthwise')])
def test_every_conv_path_launches_the_affine(arch, path, family):
    tail, extra = affine_tail()
    group = 5 if family == 'depthwise' else 1
    optimised, _ = optimize(conv_graph(tail, extra=extra, group=group), POINTWISE_LEVEL)
    low = lower_graph(optimised, arch, path, sm_count=8)
    [launch] = [k for k in low.launches if k.node == 'conv']
    assert launch.kernel.startswith(family), launch.kernel
    act = launch.fields['act']
    assert (int(act['kind']), float(act['post_scale']), float(act['post_shift'])) == \
        (HSWISH, 0.75, -0.25)


def test_fused_linear_and_int8_launches_carry_it():
    tail, extra = affine_tail()
    optimised, _ = optimize(linear_graph(tail, extra=extra), POINTWISE_LEVEL)
    low = lower_graph(optimised, 90, 'tc', sm_count=8)
    acts = [k.fields['act'] for k in low.launches if 'act' in k.fields]
    assert [float(a['post_scale']) for a in acts] == [0.75]
    from tx2_infer_core.cuda.lower_epilogue import epilogue_act
    rec = epilogue_act({'activation': 'Relu', 'post_scale': 2.0, 'post_shift': 1.0})
    assert (float(rec['post_scale']), float(rec['post_shift'])) == (2.0, 1.0)
    assert (float(params.act_record()['post_scale']), float(params.act_record()['post_shift'])) \
        == (1.0, 0.0)


MODULES = [('conv', {}), ('depthwise', {}), ('conv_transpose', {}), ('gemm', {}),
           ('conv_int8', {}), ('conv_mma', cc.split_module(mma_module(64, 64, False))[1])]


@pytest.mark.skipif(not device_compilers(), reason='neither NVRTC nor nvcc installed')
@pytest.mark.parametrize('name, defines', MODULES, ids=lambda v: str(v))
def test_kernels_compile_for_every_arch(name, defines):
    """nvcc sm_90, NVRTC sm_62/72/87 (conv_int8: dp4a, sm_61+)."""
    for arch, compiler in device_compilers():
        cubin = cc.compile_cached(name, arch, dict(defines, TX2_ACTS=1 << HSWISH),
                                  compiler=compiler)
        assert cubin[:4] == b'\x7fELF', (name, arch)


# PP-LCNetV3's learnable affine blocks ------------------------------------------------------

@pytest.mark.parametrize('name, most', [('ppocr-rec', 60), ('ppocr-det', 90)])
def test_ppocr_affine_blocks_are_epilogues(name, most):
    """Before: ppocr-rec 76 launches, ppocr-det 104 (each block a FusedPointwise)."""
    row = zoo_launches.model_row(zoo_data.BY_NAME[name])
    assert row['launches'] <= most, row
    if name == 'ppocr-rec':
        assert row['launches'] <= 1.3 * row['compute_nodes']


@pytest.mark.parametrize('name', ['ppocr-rec', 'ppocr-det'])
def test_ppocr_numpy_at_the_cuda_level_matches_onnxruntime(name, tmp_path):
    ort = pytest.importorskip('onnxruntime')
    model = zoo_data.BY_NAME[name]
    path, weights = zoo_data.model_files(model)
    graph = zoo_launches.import_model(path, model.input_shape, weights)
    optimised, report = optimize(graph, POINTWISE_LEVEL)
    assert report['fold_post_affine'] >= 40
    feeds = zoo_data.feeds(model, [graph.values[n] for n in graph.inputs])
    ours = reference.execute(optimised, feeds)
    session = ort.InferenceSession(str(zoo_data.reference_onnx(model, path, weights, tmp_path)),
                                   providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    for out_name, want in zip(names, session.run(names, feeds)):
        err = zoo_data.rel_error(ours[out_name], want)
        assert err <= model.tolerance, f'{out_name}: relative error {err:.2e}'
