"""Issue 14: the lowering of the new convolution-epilogue activations, without a GPU.

Each activation is one ActParams code and its attributes in the launch of the convolution on
the SIMT (sm_62), WMMA (sm_72) and mma.sync (sm_90) paths, in the module's ``-DTX2_ACTS``
mask; a fused PRelu's slope is one FP32 value per output channel in the weight image, read
back in channel order, for every convolution-class kernel (implicit GEMM, depthwise, grouped,
transposed, 1-D, the product by a constant matrix); what cannot be an epilogue is refused by
name; the masked modules compile (nvcc sm_90, NVRTC sm_62/72/87); the zoo models that needed
them (madmom-beats' Elus, MTCNN's PRelus) launch no activation of their own.
"""
import sys
from pathlib import Path

import numpy as np
import pytest
from epilogue_cases import NEW, RNG, act_cases, conv_graph, linear_graph
from unary_cases import device_compilers

from tx2_infer_core import reference
from tx2_infer_core.cuda import compile as cc, params
from tx2_infer_core.cuda.launch import NULL
from tx2_infer_core.cuda.lower_conv import mma_module
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Node
from tx2_infer_core.ops import traits
from tx2_infer_core.passes import POINTWISE_LEVEL, optimize

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
import zoo_data  # noqa: E402
import zoo_launches  # noqa: E402

PRELU = params.ACT_CODES['PRelu']
# (arch, conv_path, kernel family of a 5-channel 3x3 convolution)
PATHS = [(62, 'simt', 'conv_simt_h2'), (72, 'tc', 'conv_wmma'), (90, 'tc', 'conv_mma_gather')]


def lowered(graph, arch=90, path='auto'):
    """(optimised graph, Lowered) at the cuda build's pass level."""
    optimised, _ = optimize(graph, POINTWISE_LEVEL)
    return optimised, lower_graph(optimised, arch, path, sm_count=8)


def node_launches(low, node='conv'):
    return [k for k in low.launches if k.node == node]


def act_mask(launch) -> int:
    return int(cc.split_module(launch.module)[1]['TX2_ACTS'])


def slope_values(low, launch, channels) -> np.ndarray:
    """The FP32 slopes the launch's ``slope`` pointer reads, channel by channel."""
    ref = launch.fields['slope']
    assert ref.base == 'weights'
    return low.weight_image()[ref.offset:ref.offset + 4 * channels].view(np.float32)


@pytest.mark.parametrize('arch, path, family', PATHS)
@pytest.mark.parametrize('op, attrs', act_cases(), ids=lambda v: str(v))
def test_activation_is_the_conv_launch_epilogue(op, attrs, arch, path, family):
    _, low = lowered(conv_graph([Node(op, 'act', ['c'], ['y'], dict(attrs))]), arch, path)
    [launch] = node_launches(low)
    assert launch.kernel.startswith(family) and len(low.launches) == 1
    act, code = launch.fields['act'], traits.TRAITS[op].code
    values = {'alpha': 0.01, 'beta': 0.5, **traits.activation_values(op, attrs)}
    assert int(act['kind']) == code == params.ACT_CODES[op]
    assert (act['alpha'], act['beta']) == (np.float32(values['alpha']),
                                           np.float32(values['beta']))
    assert launch.fields['slope'] is NULL
    assert act_mask(launch) == 1 << code


def prelu_tail(shape):
    slope = RNG.uniform(-1, 1, shape).astype(np.float32)
    return [Node('PRelu', 'act', ['c', 's'], ['y'])], {'s': slope}


def assert_prelu_launch(low, channels, slope, kernel_prefix, node='conv'):
    launches = node_launches(low, node)
    assert [k.kernel for k in launches][0].startswith(kernel_prefix)
    assert len(low.launches) == len(launches)  # the PRelu has no launch of its own
    for launch in launches:
        assert int(launch.fields['act']['kind']) == PRELU
        assert act_mask(launch) == 1 << PRELU
        want = np.broadcast_to(slope.reshape(-1), (channels,))
        np.testing.assert_array_equal(slope_values(low, launch, channels), want)


@pytest.mark.parametrize('arch, path, family', PATHS)
@pytest.mark.parametrize('shape', [(1, 37, 1, 1), (1,)], ids=['per_channel', 'scalar'])
def test_prelu_slope_is_one_fp32_value_per_channel(shape, arch, path, family):
    """37 channels: odd, so the half2 stores of the last pair take one channel alone."""
    tail, extra = prelu_tail(shape)
    _, low = lowered(conv_graph(tail, k=37, extra=extra), arch, path)
    assert_prelu_launch(low, 37, extra['s'], family)


@pytest.mark.parametrize('group, kernel', [(8, 'depthwise'), (2, 'conv_direct')])
def test_prelu_on_depthwise_and_thin_grouped_convs(group, kernel):
    """Depthwise (8 groups of one channel) and 2 groups of 4 -> 3 channels (conv_direct)."""
    k = 8 if group == 8 else 6
    tail, extra = prelu_tail((k, 1, 1))
    _, low = lowered(conv_graph(tail, shape=(1, 8, 9, 11), k=k, extra=extra, group=group))
    assert_prelu_launch(low, k, extra['s'], kernel)


def test_prelu_on_conv_transpose_and_1d_conv():
    tail, extra = prelu_tail((6, 1, 1))
    _, low = lowered(conv_graph(tail, k=6, op='ConvTranspose', extra=extra), 62, 'simt')
    assert_prelu_launch(low, 6, extra['s'], 'convt_')
    tail, extra = prelu_tail((1, 7, 1))
    _, low = lowered(conv_graph(tail, shape=(1, 5, 40), k=7, extra=extra), 90, 'tc')
    conv = [k for k in low.launches if k.node == 'conv']
    assert len(conv) == 1 and int(conv[0].fields['act']['kind']) == PRELU
    np.testing.assert_array_equal(slope_values(low, conv[0], 7), extra['s'].reshape(-1))


@pytest.mark.parametrize('arch', [62, 90])
def test_prelu_after_a_product_is_per_column(arch):
    """MTCNN's dense layers: MatMul, bias, PRelu [N] -> one 1x1-convolution GEMM."""
    extra = {'s': RNG.uniform(-1, 1, (10,)).astype(np.float32)}
    graph = linear_graph([Node('PRelu', 'act', ['c', 's'], ['y'])], n=10, extra=extra)
    optimised, low = lowered(graph, arch)
    assert [n.op for n in optimised.nodes] == ['FusedLinear']
    assert_prelu_launch(low, 10, extra['s'], 'conv_', node='mm')


def fused_prelu(slope_shape, with_slope=True):
    """A FusedConv node with activation PRelu, as a plan file could hold it."""
    graph = conv_graph([])
    node = graph.nodes[0]
    node.op, node.attrs['activation'] = 'FusedConv', 'PRelu'
    if with_slope:
        graph.weights['s'] = np.ones(slope_shape, np.float32)
        node.inputs += ['', 's']
    return graph


def test_a_slope_that_is_not_per_channel_is_refused_by_name():
    with pytest.raises(UnsupportedOpError, match=r"'conv'.*slope of shape \[1, 1, 1, 11\]"):
        lower_graph(fused_prelu((1, 1, 1, 11)), 90)
    with pytest.raises(UnsupportedOpError, match="'conv'.*PRelu without a constant slope"):
        lower_graph(fused_prelu(None, with_slope=False), 90)
    lower_graph(fused_prelu((5, 1, 1)), 90)


def test_every_new_code_sets_its_mask_bit_in_the_shared_module():
    """Two convolutions of one module, Selu and PRelu: both bits, one build."""
    tail, extra = prelu_tail((5, 1, 1))
    graph = conv_graph([Node('Selu', 'act', ['c'], ['a']),
                        Node('Conv', 'conv2', ['a', 'w2'], ['p'], {'kernel_shape': [1, 1]}),
                        Node('PRelu', 'act2', ['p', 's'], ['y'])],
                       extra=dict(extra, w2=np.ones((5, 5, 1, 1), np.float32)))
    _, low = lowered(graph, 62, 'simt')
    modules = {k.module for k in low.launches}
    assert modules == {f"conv@TX2_ACTS={(1 << PRELU) | (1 << traits.TRAITS['Selu'].code)}"}


MASK = sum(1 << params.ACT_CODES[op] for op in NEW + ('PRelu',))
MODULES = [('conv', {}), ('depthwise', {}), ('conv_transpose', {}),
           ('conv_mma', cc.split_module(mma_module(64, 64, False))[1]),
           ('conv_mma', cc.split_module(mma_module(64, 64, True))[1])]


@pytest.mark.skipif(not device_compilers(), reason='neither NVRTC nor nvcc installed')
@pytest.mark.parametrize('name, defines', MODULES, ids=lambda v: str(v))
def test_masked_modules_compile_for_every_arch(name, defines):
    for arch, compiler in device_compilers():
        cubin = cc.compile_cached(name, arch, dict(defines, TX2_ACTS=MASK), compiler=compiler)
        assert cubin[:4] == b'\x7fELF', (name, arch)


# The zoo models that needed them -------------------------------------------------------------

ZOO = {'madmom-beats': ('Elu', 44), 'mtcnn-pnet': ('PRelu', 6), 'mtcnn-rnet': ('PRelu', 9),
       'mtcnn-onet': ('PRelu', 11)}


@pytest.mark.parametrize('name', sorted(ZOO))
def test_zoo_models_launch_no_activation_of_their_own(name):
    """madmom-beats: 14 Elus after its convolutions (3 behind a Transpose and a Squeeze) were
    80 launches, 65 with them in the epilogue (52 with split-K clusters, 44 with its skip sum of
    11 tensors cut into two pointwise groups); MTCNN: every PRelu
    after a conv or a dense layer (launches 10, 15, 20 before; pnet's and onet's 2x2 MaxPool
    in a conv epilogue since, cuda/pool_epilogue.py). The optimised graph's numpy
    output is the imported graph's."""
    op, launches = ZOO[name]
    model = zoo_data.BY_NAME[name]
    graph = zoo_launches.cuda_graph(model)
    assert op not in graph.summary()
    assert len(lower_graph(graph, 90, sm_count=132).launches) == launches
    path, weights = zoo_data.model_files(model)
    imported = zoo_launches.import_model(path, model.input_shape, weights)
    feeds = zoo_data.feeds(model, [imported.values[n] for n in imported.inputs])
    want, got = reference.execute(imported, feeds), reference.execute(graph, feeds)
    for out in imported.outputs:
        np.testing.assert_allclose(got[out], want[out], rtol=1e-6, atol=1e-6)
