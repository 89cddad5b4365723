"""The CUDA lowering of the INT8 ops (``cuda/lower_int8.py``), without a GPU: a quantised
YOLOv3-tiny (real weights, min-max scales from a real photo) lowers on sm_62, sm_72, sm_87 and
sm_90 to the kernels each arch claims, int8 images are NHWC with 4-channel padded pixels, and
the launch records carry the weights and constants the numpy emulation uses."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))

import int8_models  # noqa: E402

from tx2_infer_core.cuda import lower_int8, params  # noqa: E402
from tx2_infer_core.cuda.lowering import lower_graph  # noqa: E402
from tx2_infer_core.errors import Tx2InferError, UnsupportedOpError  # noqa: E402
from tx2_infer_core.int8.quant_math import requant_multipliers  # noqa: E402

DP4A = {'conv_dp4a', 'conv_dp4a_w'}


@pytest.fixture(scope='module')
def tiny_int8():
    graph = int8_models.yolov3_tiny(416)
    qgraph, _ = int8_models.quantised(graph, int8_models.photo_feeds(graph))
    return qgraph


def _conv_kernels(lowered, qgraph) -> dict:
    convs = {n.name for n in qgraph.nodes if n.op == 'FusedConvInt8'}
    out = {}
    for launch in lowered.launches:
        if launch.node in convs:
            out.setdefault(launch.node, []).append(launch)
    assert set(out) == convs
    return out


def _weight_bytes(lowered, ref, nbytes) -> np.ndarray:
    assert ref.base == 'weights'
    return lowered.weight_image()[ref.offset:ref.offset + nbytes]


@pytest.mark.parametrize('arch', [62, 72])
def test_small_gpus_run_every_int8_conv_on_dp4a(tiny_int8, arch):
    lowered = lower_graph(tiny_int8, arch, sm_count=2)
    assert lowered.int8_path == 'dp4a'
    for name, launches in _conv_kernels(lowered, tiny_int8).items():
        assert [k.kernel for k in launches] == ['conv_dp4a_w'], name
    with pytest.raises(Tx2InferError, match='sm_80'):
        lower_graph(tiny_int8, arch, int8_path='mma')


@pytest.mark.parametrize('arch', [87, 90])
def test_tensor_core_gpus_use_mma_where_rows_are_16_bytes(tiny_int8, arch):
    lowered = lower_graph(tiny_int8, arch, sm_count=16 if arch == 87 else 132)
    nodes = {n.name: n for n in tiny_int8.nodes}
    for name, launches in _conv_kernels(lowered, tiny_int8).items():
        cg = tiny_int8.weights[nodes[name].inputs[1]].shape[1]
        first = launches[0].kernel
        if cg % 16 == 0:
            assert first.startswith('conv_i8_mma_'), (name, first)
            splits = launches[0].fields['splits']
            cluster = first.endswith('_cl')  # sm_90: the splits sum in a cluster
            assert cluster == (arch >= 90 and splits > 1), (name, first)
            assert not cluster or f'CLUSTER={splits}@' in launches[0].module
            assert ('conv_i8_splitk_reduce' in [k.kernel for k in launches]) == \
                (splits > 1 and not cluster)
        else:
            assert first in DP4A, (name, cg, first)  # the 3-channel stem
    firsts = [ks[0].kernel for ks in _conv_kernels(lowered, tiny_int8).values()]
    assert any(k.endswith('_cl') for k in firsts) == (arch >= 90)  # layer 13x13s split
    forced = lower_graph(tiny_int8, arch, int8_path='dp4a')
    assert {k.kernel for ks in _conv_kernels(forced, tiny_int8).values() for k in ks} <= DP4A


def _live(graph) -> dict:
    """{value: (first node index, last node index)} of the activations."""
    span = {n: [-1, -1] for n in graph.inputs}
    for i, node in enumerate(graph.nodes):
        for n in node.outputs:
            span.setdefault(n, [i, i])
        for n in node.inputs:
            if n in span:
                span[n][1] = i
    for n in graph.outputs:
        span[n][1] = len(graph.nodes)
    return span


def assert_int8_blocks_hold_padded_pixels(graph, arch=62):
    """Every int8 image slot is NHWC with its pixel padded to 4 channels, and nothing alive
    at the same time overlaps its padded bytes in the arena."""
    lowered = lower_graph(graph, arch)
    int8_values = [n for n, v in graph.values.items()
                   if v.dtype == 'int8' and n not in graph.weights]
    span, offsets = _live(graph), lowered.plan.offsets

    def nbytes(name):
        slot = lowered.slots[name]
        return slot.shape[0] * slot.strides[0] * (1 if name in int8_values else 2)

    for name in int8_values:
        slot = lowered.slots[name]
        n, c, h, w = slot.shape
        pix = -(-c // 4) * 4
        assert slot.nhwc and slot.strides == (h * w * pix, 1, w * pix, pix), name
        lo, hi = offsets[name], offsets[name] + nbytes(name)
        assert hi <= lowered.plan.arena_bytes, name
        for other in offsets:
            a, b = span[name], span[other]
            if other == name or a[1] < b[0] or b[1] < a[0]:
                continue
            o_lo = offsets[other]
            assert o_lo + nbytes(other) <= lo or hi <= o_lo, (name, other)
    return lowered, int8_values


def test_int8_images_are_nhwc_with_padded_pixels(tiny_int8):
    lowered, int8_values = assert_int8_blocks_hold_padded_pixels(tiny_int8)
    assert len(int8_values) >= 10
    assert lowered.slots[tiny_int8.nodes[0].outputs[0]].pix == 4  # 3 channels padded to 4


def test_padded_stem_input_is_planned_at_its_padded_size(tiny_int8):
    """x (fp16) -> QuantizeLinear -> 3-channel int8 -> stem conv -> y: at 16x16 the int8
    block is the arena's last, so a block sized for 3 channels ends past the arena."""
    stem = tiny_int8.nodes[1]
    weights = {n: tiny_int8.weights[n] for n in stem.inputs[1:3]}
    graph = int8_models.one_conv_graph(stem, weights, (1, 3, 16, 16), (1, 16, 16, 16),
                                       'float32')
    assert_int8_blocks_hold_padded_pixels(graph)


def test_launch_records_hold_the_emulations_numbers(tiny_int8):
    lowered = lower_graph(tiny_int8, 90)
    nodes = {n.name: n for n in tiny_int8.nodes}
    for name, launches in _conv_kernels(lowered, tiny_int8).items():
        node, f = nodes[name], launches[0].fields
        w = tiny_int8.weights[node.inputs[1]]
        laid = lower_int8.int8_weights(w)
        got = _weight_bytes(lowered, f['w'], laid.nbytes).view(np.int8).reshape(laid.shape)
        assert np.array_equal(got, laid), name
        dq, inv = requant_multipliers(node.attrs['x_scale'], node.attrs['w_scales'],
                                      node.attrs['out_scale'])
        assert np.array_equal(_weight_bytes(lowered, f['dq'], dq.nbytes).view(np.float32), dq)
        assert np.float32(f['out_inv']) == inv
        b = tiny_int8.weights[node.inputs[2]]
        assert np.array_equal(_weight_bytes(lowered, f['bias'], b.nbytes).view(np.int32), b)
        record = launches[0].bind({'arena': 0, 'weights': 1 << 20, 'io': 0})
        assert record['Cw'] == -(-w.shape[1] // 4)
        assert record['act']['kind'] == params.ACTIVATIONS[node.attrs.get('activation', '')]
        assert record['act']['alpha'] == np.float32(node.attrs.get('alpha', 0.01))


def test_int8_epilogue_takes_the_new_activations_and_refuses_prelu(tiny_int8):
    """The int8 epilogue shares ``tx2_act``: a Selu (alpha, gamma as alpha, beta) lowers into
    the int8 conv's record; PRelu (a slope per channel, not in ConvI8Params) is refused."""
    g = tiny_int8.copy()
    node = next(n for n in g.nodes if n.op == 'FusedConvInt8')
    node.attrs.update(activation='Selu', alpha=1.5, beta=0.9)
    [launch] = [k for k in lower_graph(g, 62).launches if k.node == node.name]
    act = launch.fields['act']
    assert (int(act['kind']), act['alpha'], act['beta']) == (
        params.ACT_CODES['Selu'], np.float32(1.5), np.float32(0.9))
    node.attrs['activation'] = 'PRelu'
    with pytest.raises(UnsupportedOpError, match=f"'{node.name}'.*PRelu"):
        lower_graph(g, 62)


def test_int8_weights_layout_is_ohwi_with_zero_padded_words():
    w = np.arange(2 * 3 * 2 * 2, dtype=np.int8).reshape(2, 3, 2, 2) - 10
    laid = lower_int8.int8_weights(w)
    assert laid.shape == (2, 2, 2, 4)
    for k, c, r, s in np.ndindex(*w.shape):
        assert laid[k, r, s, c] == w[k, c, r, s]
    assert not laid[..., 3].any()


def test_dp4a_word_loads_only_where_aligned():
    def geo(cg, groups):
        return dict(Cg=cg, Cw=-(-cg // 4), groups=groups)

    assert lower_int8.dp4a_kernel(geo(3, 1), 4, 0) == 'conv_dp4a_w'  # padding in the pixel
    assert lower_int8.dp4a_kernel(geo(3, 1), 3, 0) == 'conv_dp4a'
    assert lower_int8.dp4a_kernel(geo(6, 2), 12, 0) == 'conv_dp4a'  # group 1 starts at byte 6
    assert lower_int8.dp4a_kernel(geo(8, 2), 16, 0) == 'conv_dp4a_w'
    assert lower_int8.dp4a_kernel(geo(16, 1), 32, 2) == 'conv_dp4a'


def test_refusals_name_the_problem(tiny_int8):
    with pytest.raises(UnsupportedOpError, match='dp4a'):
        lower_graph(tiny_int8, 60)
    with pytest.raises(Tx2InferError, match='int8_path'):
        lower_graph(tiny_int8, 90, int8_path='imma')
    g = tiny_int8.copy()
    g.outputs = [g.nodes[0].outputs[0]]  # an int8 graph output
    g.nodes = g.nodes[:1]
    with pytest.raises(UnsupportedOpError, match='int8 graph output'):
        lower_graph(g, 90)


def test_a_quantize_of_a_graph_input_with_no_conv_is_refused_by_name():
    """QuantizeLinear/DequantizeLinear run on NHWC arena images (the input of an INT8 conv);
    a graph of Q and DQ alone, on an NCHW graph input, is refused with the reason (the GPU
    kernels of both are tested inside the whole quantised YOLOv3-tiny, test/cuda)."""
    from tx2_infer_core.ir import Graph, Node, Value
    w = dict(s=np.array(1 / 127, np.float32), zp=np.array(0, np.int8))
    values = {n: Value(n, (), a.dtype.name, '') for n, a in w.items()}
    for n, dtype in (('x', 'float32'), ('q', 'int8'), ('y', 'float32')):
        values[n] = Value(n, (1, 3, 8, 8), dtype, 'NCHW')
    graph = Graph([Node('QuantizeLinear', 'q', ['x', 's', 'zp'], ['q']),
                   Node('DequantizeLinear', 'dq', ['q', 's', 'zp'], ['y'])],
                  ['x'], ['y'], values, w)
    with pytest.raises(UnsupportedOpError, match="QuantizeLinear.*'x' is not an NCHW image"):
        lower_graph(graph, arch=90)


@pytest.mark.parametrize('arch', [62, 90])
def test_int8_modules_are_built_for_their_activations(tiny_int8, arch):
    """conv_int8 / conv_int8_mma modules are named (``-DTX2_ACTS``) with the activations their
    launches apply, as the FP16 conv modules (an epilogue with every activation compiled in is
    3x the code: test_kernel_code_size); the Quantize launches share their module's build."""
    launches = lower_graph(tiny_int8, arch, sm_count=132).launches
    int8 = [k for k in launches if k.module.split('@')[0] in ('conv_int8', 'conv_int8_mma')]
    assert int8 and all('@TX2_ACTS=' in k.module for k in int8)
    for module in {k.module for k in int8}:
        kinds = {int(k.fields['act']['kind']) for k in int8
                 if k.module == module and 'act' in k.fields}
        assert module.endswith(f"@TX2_ACTS={sum(1 << kind for kind in kinds if kind)}")
