"""Issue 14: Elu, Selu, Celu, Softplus, ThresholdedRelu and a per-channel PRelu in the
convolution epilogue, without a GPU.

``tx2_act`` and ``tx2_act_channel`` (kernels/common.cuh), built for the host as they are
written, against the numpy ops over each op's range (default, other and negative attributes,
infinities, NaN), with and without a ``-DTX2_ACTS`` mask; the fusion passes (after Conv,
ConvTranspose, a 1-D Conv, a product by a constant matrix, with residuals, after layout
copies) give the unfused graph's numpy output bit for bit, and decline what they must; the
ONNX export of the fused nodes against ONNX Runtime. ``test_conv_epilogue_lowering.py`` has
the lowering, the compile checks and the zoo models.
"""
import subprocess

import numpy as np
import pytest
from epilogue_cases import RNG, act_cases, conv_graph, feeds_of, linear_graph
from unary_cases import build_host, host_compiler, probe

from tx2_infer_core import plan_attrs, reference
from tx2_infer_core.cuda import compile as cc, params
from tx2_infer_core.errors import PlanFileError
from tx2_infer_core.int8.schedule import LayerQuant
from tx2_infer_core.ir import Node
from tx2_infer_core.ops import fused, traits
from tx2_infer_core.passes import optimize
from tx2_infer_core.passes.quantize import decline_reason

SLOPE = np.array([0.25, -0.5, 0.0, 1.5, 0.125], np.float32)  # one per channel, k = i % 5
HOST = '''#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define __device__
#define __forceinline__ inline
#define __expf expf
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
'''
MAIN = '''int main(int argc, char **argv) {
    ActParams a = {atoi(argv[1]), (float)atof(argv[2]), (float)atof(argv[3]), 0.f, 0.f};
    int n = argc - 4;
    float slope[16], x;
    for (int k = 0; k < n; ++k) slope[k] = (float)atof(argv[4 + k]);
    for (long i = 0; fread(&x, sizeof x, 1, stdin) == 1; ++i) {
        const float y = tx2_act_channel(x, a, slope, n ? (int)(i % n) : 0);
        fwrite(&y, sizeof y, 1, stdout);
    }
    return 0;
}
'''


def kernel_activations() -> str:
    """common.cuh from the activation codes to the end of ``tx2_act_channel``, as written."""
    text = (cc.kernel_dir() / 'common.cuh').read_text()
    return text[text.index('#define TX2_MAX_DIMS'):text.index('// An N-d strided view')]


@pytest.fixture(scope='module')
def host_act(tmp_path_factory):
    """``run(kind, alpha, beta, x, slope=(), mask=None)``: tx2_act_channel on the host."""
    if host_compiler() is None:
        pytest.skip('no host C++ compiler')
    folder, built = tmp_path_factory.mktemp('act'), {}

    def run(kind, alpha, beta, x, slope=(), mask=None):
        if mask not in built:
            flags = [] if mask is None else [f'-DTX2_ACTS={mask}']
            built[mask] = build_host(folder, f'act_{mask}', HOST + kernel_activations() + MAIN,
                                     *flags)
        args = [str(built[mask]), str(kind), repr(float(alpha)), repr(float(beta))]
        out = subprocess.run(args + [repr(float(s)) for s in slope], check=True,
                             capture_output=True,
                             input=np.ascontiguousarray(x, np.float32).tobytes()).stdout
        return np.frombuffer(out, np.float32)
    return run


@pytest.mark.parametrize('op, attrs', act_cases(), ids=lambda v: str(v))
def test_kernel_activation_matches_numpy_on_the_host(host_act, op, attrs):
    x = probe(op)
    values = {'alpha': 0.01, 'beta': 0.5, **traits.activation_values(op, attrs)}
    got = host_act(params.ACT_CODES[op], values['alpha'], values['beta'], x)
    with np.errstate(all='ignore'):
        want = fused.apply_activation(x, op, **values)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7, err_msg=f'{op} {attrs}')


def test_kernel_prelu_reads_the_slope_of_its_channel(host_act):
    x = probe('Elu')
    got = host_act(params.ACT_CODES['PRelu'], 0.0, 0.0, x, SLOPE)
    slope = SLOPE[np.arange(len(x)) % len(SLOPE)]
    np.testing.assert_array_equal(got, np.where(x >= 0, x, x * slope))


def test_tx2_acts_mask_builds_only_the_activations_named(host_act):
    """Built for Elu alone: Elu works, Selu and PRelu are the identity (never launched so)."""
    x = probe('Elu')
    mask = 1 << params.ACT_CODES['Elu']
    elu = host_act(params.ACT_CODES['Elu'], 0.7, 0.0, x, mask=mask)
    np.testing.assert_allclose(elu, fused.apply_activation(x, 'Elu', alpha=0.7), rtol=2e-6)
    for op in ('Selu', 'PRelu'):
        same = host_act(params.ACT_CODES[op], 1.5, 0.9, x, SLOPE, mask=mask)
        np.testing.assert_array_equal(same, x)


# Fusion passes ----------------------------------------------------------------------------

def fused_same(graph, level=2, op='FusedConv'):
    """The optimised graph's nodes, after checking its numpy output is the unfused graph's."""
    optimised, _ = optimize(graph, level)
    feeds = feeds_of(graph)
    want, got = reference.execute(graph, feeds), reference.execute(optimised, feeds)
    for name in graph.outputs:
        np.testing.assert_array_equal(got[name], want[name])
    return [n for n in optimised.nodes if n.op == op], optimised


@pytest.mark.parametrize('level', [2, 3])
@pytest.mark.parametrize('op, attrs', act_cases(), ids=lambda v: str(v))
def test_activation_after_conv_is_fused(op, attrs, level):
    graph = conv_graph([Node(op, 'act', ['c'], ['y'], dict(attrs))])
    [node], optimised = fused_same(graph, level)
    assert [n.op for n in optimised.nodes] == ['FusedConv']
    values = traits.activation_values(op, attrs)
    assert node.attrs['activation'] == op and node.outputs == ['y']
    assert {k: node.attrs[k] for k in values} == values


@pytest.mark.parametrize('shape', [(1, 5, 1, 1), (5, 1, 1), (1,), (), (1, 1, 1, 1)])
def test_prelu_after_conv_takes_a_per_channel_slope(shape):
    slope = RNG.uniform(-1, 1, shape).astype(np.float32)
    graph = conv_graph([Node('PRelu', 'act', ['c', 's'], ['y'])], extra={'s': slope})
    [node], optimised = fused_same(graph)
    assert node.attrs['activation'] == 'PRelu' and node.inputs[3] == ''
    stored = optimised.weights[node.inputs[4]]
    assert stored.shape == (5, 1, 1) and stored.dtype == np.float32
    np.testing.assert_array_equal(stored.reshape(-1), np.broadcast_to(slope.reshape(-1), 5))


@pytest.mark.parametrize('shape', [(1, 1, 1, 11), (5, 9, 11), (1, 5, 9, 1), (2, 5, 1, 1)])
def test_prelu_whose_slope_is_not_per_channel_stays(shape):
    """Along the width, per pixel, per row, or growing the batch: not an epilogue."""
    slope = RNG.uniform(-1, 1, shape).astype(np.float32)
    graph = conv_graph([Node('PRelu', 'act', ['c', 's'], ['y'])], extra={'s': slope})
    _, optimised = fused_same(graph)
    assert [n.op for n in optimised.nodes] == ['FusedConv', 'PRelu']


def test_prelu_with_residuals_keeps_its_slope():
    """YOLO order (PRelu, then Add: residual after it) and ResNet order (Add, then PRelu)."""
    extra = {'s': RNG.uniform(-1, 1, (5, 1, 1)).astype(np.float32)}
    after = conv_graph([Node('PRelu', 'act', ['c', 's'], ['a']),
                        Node('Add', 'add', ['a', 'x'], ['y'])], extra=extra)
    [node], _ = fused_same(after)
    assert node.attrs['residual_after_act'] == 1 and node.inputs[3] == 'x'
    assert node.attrs['activation'] == 'PRelu' and len(node.inputs) == 5
    before = conv_graph([Node('Add', 'add', ['c', 'x'], ['a']),
                         Node('PRelu', 'act', ['a', 's'], ['y'])], extra=extra)
    [node], optimised = fused_same(before)
    assert node.attrs['residual_after_act'] == 0 and node.inputs[3] == 'x'
    assert optimised.weights[node.inputs[4]].shape == (5, 1, 1)


def test_conv_transpose_and_1d_conv_take_the_new_activations():
    extra = {'s': RNG.uniform(-1, 1, (1, 4, 1)).astype(np.float32)}
    [node], _ = fused_same(conv_graph([Node('Celu', 'act', ['c'], ['y'], {'alpha': 0.6})],
                                      k=4, op='ConvTranspose'), op='FusedConvTranspose')
    assert node.attrs['activation'] == 'Celu' and node.attrs['alpha'] == 0.6
    one_d = conv_graph([Node('PRelu', 'act', ['c', 's'], ['y'])], shape=(1, 5, 17), k=4,
                       extra=extra)
    [node], optimised = fused_same(one_d)
    assert optimised.weights[node.inputs[4]].shape == (4, 1)


def test_activation_after_layout_copies_moves_before_them():
    """madmom-beats' conv -> Transpose (NHWC) -> Squeeze -> Elu: the conv applies the Elu and
    the copies move activated values; a PRelu there stays (its channels would move)."""
    tail = [Node('Transpose', 't', ['c'], ['ct'], {'perm': [0, 2, 3, 1]}),
            Node('Squeeze', 'sq', ['ct', 'ax'], ['cs']), Node('Elu', 'act', ['cs'], ['y'])]
    extra = {'ax': np.array([0], np.int64)}
    [node], optimised = fused_same(conv_graph(tail, extra=extra))
    assert [n.op for n in optimised.nodes] == ['FusedConv', 'Transpose', 'Squeeze']
    assert node.attrs['activation'] == 'Elu' and optimised.nodes[-1].outputs == ['y']
    prelu = tail[:2] + [Node('PRelu', 'act', ['cs', 's'], ['y'])]
    extra['s'] = RNG.uniform(-1, 1, (5,)).astype(np.float32)
    _, optimised = fused_same(conv_graph(prelu, extra=extra))
    assert [n.op for n in optimised.nodes][-1] == 'PRelu'


@pytest.mark.parametrize('shape', [(6,), (1, 1, 6), (1,)])
def test_prelu_after_a_product_is_fused_per_column(shape):
    extra = {'s': RNG.uniform(-1, 1, shape).astype(np.float32)}
    graph = linear_graph([Node('PRelu', 'act', ['c', 's'], ['y'])], extra=extra)
    [node], optimised = fused_same(graph, 3, 'FusedLinear')
    assert [n.op for n in optimised.nodes] == ['FusedLinear']
    assert node.attrs['activation'] == 'PRelu' and node.inputs[3] == ''
    assert optimised.weights[node.inputs[4]].shape == (6,)


def test_product_residual_then_selu_and_prelu_per_row_stays():
    graph = linear_graph([Node('Add', 'res', ['c', 'r'], ['a']),
                          Node('Selu', 'act', ['a'], ['y'], {'gamma': 0.9})], residual=True)
    [node], _ = fused_same(graph, 3, 'FusedLinear')
    assert node.attrs['activation'] == 'Selu' and node.attrs['beta'] == 0.9
    assert node.attrs['residual_after_act'] == 0 and len(node.inputs) == 4
    rows = linear_graph([Node('PRelu', 'act', ['c', 's'], ['y'])],
                        extra={'s': RNG.uniform(-1, 1, (3, 1)).astype(np.float32)})
    [node], optimised = fused_same(rows, 3, 'FusedLinear')
    assert 'activation' not in node.attrs and optimised.nodes[-1].op == 'PRelu'


def test_int8_declines_prelu_and_plans_refuse_it_without_a_slope():
    extra = {'s': RNG.uniform(-1, 1, (5, 1, 1)).astype(np.float32)}
    graph = conv_graph([Node('PRelu', 'act', ['c', 's'], ['y'])], extra=extra)
    optimised, _ = optimize(graph, 2)
    node = optimised.nodes[0]
    assert 'PRelu' in decline_reason(optimised, node, LayerQuant(0.05))
    plan_attrs.check_activation(node)
    node.inputs = node.inputs[:3]
    with pytest.raises(PlanFileError, match="'conv'.*PRelu' without its slope input"):
        plan_attrs.check_activation(node)


def test_fused_nodes_export_to_onnx_runtime():
    """The ort backend's export: each activation as itself (Celu lifts the opset to 12+),
    PRelu with its slope input."""
    ort = pytest.importorskip('onnxruntime')
    from tx2_infer_core.onnx_export import to_onnx
    extra = {'s': RNG.uniform(-1, 1, (1, 5, 1, 1)).astype(np.float32),
             'w2': RNG.standard_normal((5, 5, 1, 1)).astype(np.float32)}
    for op, attrs in act_cases():
        graph = conv_graph([Node(op, 'act', ['c'], ['a'], dict(attrs)),
                            Node('Conv', 'conv2', ['a', 'w2'], ['p'], {}),
                            Node('PRelu', 'act2', ['p', 's'], ['y'])], extra=extra)
        optimised, _ = optimize(graph, 2)
        assert [n.op for n in optimised.nodes] == ['FusedConv', 'FusedConv']
        feeds = feeds_of(graph)
        session = ort.InferenceSession(to_onnx(optimised).SerializeToString(),
                                       providers=['CPUExecutionProvider'])
        got = session.run(None, feeds)[0]
        want = reference.execute(graph, feeds)['y']
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max(),
                                   err_msg=f'{op} {attrs}')  # ORT's own exp
