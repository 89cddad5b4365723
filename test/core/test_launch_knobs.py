"""The launch-shape knobs of ``cuda/launch_knobs.py`` without a GPU: $TX2_INFER_ATTN_WARPS
(attention_mma CTAs of 1 or 2 warps: the query rows the kernel's mapping gives each CTA cover
every row once) and $TX2_INFER_LINEAR_SPLITK (constant-matrix products with K >= 256 split
in a cluster; 'linear+norm' also such FusedLinearNorms, as split GEMM + layernorm), on the
BERT-shaped graph and the zoo's vit-focus: launch counts on sm_90, the same launches as
today on sm_87 and sm_62, the split launches emulated on the host against ONNX Runtime."""
import os
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from test_attention import MASKED, bert
from test_fuse_linear_norm import emulated, linear_norm_model, ort_run
from tx2_infer_core.cuda.launch import NULL
from tx2_infer_core.cuda.launch_knobs import SPLIT_MIN_K
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import Tx2InferError
from tx2_infer_core.onnx_import import load_onnx
from tx2_infer_core.passes import optimize

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import bench_launch_knobs  # noqa: E402
import zoo_data  # noqa: E402
import zoo_launches  # noqa: E402

KNOBS = ('TX2_INFER_ATTN_WARPS', 'TX2_INFER_LINEAR_SPLITK', 'TX2_INFER_SPLITK')
# knob settings -> (BERT-shaped, vit-focus) launches on sm_90
# (default 'auto': BERT's 4-CTA norms apart, FFN out split; vit-focus's norms, 24 CTAs, not)
SETTINGS = {'default': ({}, 15, 71),
            'off': ({'TX2_INFER_LINEAR_SPLITK': 'off'}, 11, 71),
            'attn2': ({'TX2_INFER_ATTN_WARPS': '2'}, 15, 71),
            'attn1': ({'TX2_INFER_ATTN_WARPS': '1'}, 15, 71),
            'linear': ({'TX2_INFER_LINEAR_SPLITK': 'linear'}, 11, 71),
            'linear+norm': ({'TX2_INFER_LINEAR_SPLITK': 'linear+norm'}, 13, 95),
            'fused_few': ({'TX2_INFER_LINEAR_SPLITK': 'fused_few'}, 13, 71)}


@pytest.fixture(scope='module')
def graphs(tmp_path_factory):
    """{name: optimised graph} of the BERT-shaped graph (masked) and vit-focus."""
    _, graph = bert(tmp_path_factory.mktemp('bert'), **MASKED)
    return {'bert': optimize(graph, 3)[0],
            'vit-focus': zoo_launches.cuda_graph(zoo_data.BY_NAME['vit-focus'])}


def lowered(graph, arch, monkeypatch, env) -> list:
    """The launches of ``graph`` on ``arch`` (132 SMs) with only ``env``'s knobs set."""
    for name in KNOBS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return lower_graph(graph, arch, sm_count=132).launches


def shape(launches) -> list:
    return [(k.kernel, k.grid, k.block, k.module) for k in launches]


@pytest.mark.parametrize('setting', sorted(SETTINGS))
def test_launch_counts_on_sm90(graphs, setting, monkeypatch):
    env, bert_count, vit_count = SETTINGS[setting]
    for name, count in (('bert', bert_count), ('vit-focus', vit_count)):
        assert len(lowered(graphs[name], 90, monkeypatch, env)) == count, (setting, name)


@pytest.mark.parametrize('setting', sorted(SETTINGS))
@pytest.mark.parametrize('arch', [87, 80, 62])
def test_other_archs_keep_todays_launches(graphs, setting, arch, monkeypatch):
    for graph in graphs.values():
        want = shape(lowered(graph, arch, monkeypatch, {}))
        assert shape(lowered(graph, arch, monkeypatch, SETTINGS[setting][0])) == want


def kernel_rows(block_x, grid_y, warp_rows=16) -> Counter:
    """How often each query row is computed, per ``kernels/attention.cu``'s mapping (its
    ``r0`` line, asserted below): warp w of CTA y owns rows r0 .. r0 + 15."""
    rows = Counter()
    for y in range(grid_y):
        for warp in range(block_x // 32):
            r0 = y * (block_x // 2) + warp * 16
            rows.update(range(r0, r0 + warp_rows))
    return rows


@pytest.mark.parametrize('warps', ['4', '2', '1'])
def test_attention_ctas_cover_each_query_row_once(graphs, warps, monkeypatch):
    text = (ROOT / 'kernels' / 'attention.cu').read_text()
    assert re.search(r'r0 = blockIdx\.y \* \(blockDim\.x / 2\) \+ warp \* 16', text)
    assert 'i += blockDim.x' in text  # the staging loops stride by the CTA's threads
    for name, graph in graphs.items():
        att = [k for k in lowered(graph, 90, monkeypatch, {'TX2_INFER_ATTN_WARPS': warps})
               if k.kernel == 'attention_mma']
        assert att, name
        for k in att:
            b, h, sq = k.fields['B'], k.fields['H'], k.fields['Sq']
            assert k.block == (32 * int(warps), 1, 1) and k.grid[0] == b * h
            rows = kernel_rows(k.block[0], k.grid[1])
            assert all(rows[r] == 1 for r in range(sq)) and max(rows) < sq + 16 * int(warps)


def test_bert_split_launches(graphs, monkeypatch):
    """BERT's FFN out (K = 512, 4 CTAs): 8 splits in a cluster, then the layernorm; its QKV
    and FFN in (K = 128) stay one pass; 'linear' alone changes no BERT launch; 'fused_few'
    (few CTAs) lowers as 'linear+norm' does."""
    off = lowered(graphs['bert'], 90, monkeypatch, {'TX2_INFER_LINEAR_SPLITK': 'off'})
    assert shape(lowered(graphs['bert'], 90, monkeypatch,
                         {'TX2_INFER_LINEAR_SPLITK': 'linear'})) == shape(off)
    launches = lowered(graphs['bert'], 90, monkeypatch,
                       {'TX2_INFER_LINEAR_SPLITK': 'linear+norm'})
    assert shape(lowered(graphs['bert'], 90, monkeypatch,
                         {'TX2_INFER_LINEAR_SPLITK': 'fused_few'})) == shape(launches)
    split = [k for k in launches if k.kernel.endswith('_cl')]
    assert len(split) == 2 and all(k.fields['Cg'] == 512 for k in split)
    assert all(k.grid == (2, 2, 8) and 'CONV_MMA_CLUSTER=8' in k.module for k in split)
    after = [launches[launches.index(k) + 1].kernel for k in split]
    assert after == ['layernorm', 'layernorm']
    assert all(k.fields['Cg'] < SPLIT_MIN_K for k in launches
               if k.kernel.startswith('conv_mma') and not k.kernel.endswith('_cl'))


def test_vit_focus_split_launches(graphs, monkeypatch):
    """vit-focus (197 rows, K = 384 or 1536): 'linear' splits QKV and fc1 (12 each, 2 a
    cluster), its 24 norms stay ``_ln`` launches; 'linear+norm' splits those too."""
    launches = lowered(graphs['vit-focus'], 90, monkeypatch,
                       {'TX2_INFER_LINEAR_SPLITK': 'linear'})
    kernels = Counter(k.kernel for k in launches)
    assert kernels['conv_mma_64x64_cl'] == 24 and kernels['conv_mma_64x64_ln'] == 24
    launches = lowered(graphs['vit-focus'], 90, monkeypatch,
                       {'TX2_INFER_LINEAR_SPLITK': 'linear+norm'})
    kernels = Counter(k.kernel for k in launches)
    assert kernels['conv_mma_64x64_cl'] == 48 and not kernels['conv_mma_64x64_ln']
    assert all(k.grid[2] == k.fields['splits'] for k in launches if k.kernel.endswith('_cl'))


def test_two_launch_split_mode_keeps_products_whole(graphs, monkeypatch):
    """Where $TX2_INFER_SPLITK=launch a split would need a second launch: none splits (and
    'linear+norm' keeps its norms one launch, as 'fused_few' does)."""
    env = {'TX2_INFER_LINEAR_SPLITK': 'linear+norm', 'TX2_INFER_SPLITK': 'launch'}
    for graph in graphs.values():
        launches = lowered(graph, 90, monkeypatch, env)
        default = lowered(graph, 90, monkeypatch, {'TX2_INFER_LINEAR_SPLITK': 'fused_few',
                                                   'TX2_INFER_SPLITK': 'launch'})
        assert shape(launches) == shape(default)


@pytest.mark.parametrize('name,value', [('TX2_INFER_ATTN_WARPS', '3'),
                                        ('TX2_INFER_LINEAR_SPLITK', 'norm')])
def test_bad_values_are_refused_by_name(graphs, name, value, monkeypatch):
    with pytest.raises(Tx2InferError, match=name):
        lowered(graphs['bert'], 90, monkeypatch, {name: value})


def linear_model(path, rows, k, n):
    """x [rows, k] @ w + b, GELU (Erf form), + residual r: one FusedLinear at level 3."""
    rng = np.random.default_rng(5)
    init = [numpy_helper.from_array(a.astype(np.float32), name) for name, a in (
        ('w', rng.standard_normal((k, n)) / k ** 0.5), ('b', rng.standard_normal(n) * 0.3),
        ('sqrt2', np.float32(2 ** 0.5)), ('one', np.float32(1)), ('half', np.float32(0.5)))]
    nodes = [helper.make_node('MatMul', ['x', 'w'], ['p']),
             helper.make_node('Add', ['p', 'b'], ['h']),
             helper.make_node('Div', ['h', 'sqrt2'], ['d']),
             helper.make_node('Erf', ['d'], ['e']),
             helper.make_node('Add', ['e', 'one'], ['e1']),
             helper.make_node('Mul', ['h', 'e1'], ['g']),
             helper.make_node('Mul', ['g', 'half'], ['g2']),
             helper.make_node('Add', ['g2', 'r'], ['y'])]
    info = [helper.make_tensor_value_info(name, TensorProto.FLOAT, s)
            for name, s in (('x', [rows, k]), ('r', [rows, n]))]
    out = [helper.make_tensor_value_info('y', TensorProto.FLOAT, None)]
    model = helper.make_model(helper.make_graph(nodes, 'linear', info, out, init),
                              opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    feeds = {'x': rng.standard_normal((rows, k)).astype(np.float32),
             'r': rng.standard_normal((rows, n)).astype(np.float32)}
    return optimize(load_onnx(path), 3)[0], feeds


@pytest.mark.parametrize('case', ['linear', 'norm'])
def test_split_launch_fields_compute_the_product(tmp_path, case, monkeypatch):
    """BERT's FFN-out shape (128 x 512 -> 128), split in a cluster: the launch fields
    (weights, bias, GELU, residual, gamma, beta) emulated against ONNX Runtime."""
    path = tmp_path / 'm.onnx'
    if case == 'linear':
        graph, feeds = linear_model(path, 128, 512, 128)
        want_kernels = ['conv_mma_64x64_cl']
    else:
        graph, feeds = linear_norm_model(path, 128, 512, 128, keep_sum=True)
        want_kernels = ['conv_mma_64x64_cl', 'layernorm']
    assert len(graph.nodes) == 1
    for name in KNOBS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('TX2_INFER_LINEAR_SPLITK', 'linear+norm')
    got, kernels = emulated(graph, feeds, 90)
    assert kernels == want_kernels
    for name, ref in ort_run(path, feeds).items():
        np.testing.assert_allclose(got[name], ref, atol=1e-2 * (1 + np.abs(ref).max()),
                                   err_msg=name)


def test_bench_variants_lower_with_their_knobs(graphs, monkeypatch):
    """bench_launch_knobs.py's variants: valid values, the launches of their knobs, and the
    environment given back after each build."""
    monkeypatch.setenv('TX2_INFER_ATTN_WARPS', '2')
    monkeypatch.delenv('TX2_INFER_LINEAR_SPLITK', raising=False)
    counts = {}
    for name, env in bench_launch_knobs.VARIANTS.items():
        with bench_launch_knobs.knobs(env):
            launches = lower_graph(graphs['bert'], 90, sm_count=132).launches
        counts[name] = len(launches)
        warps = {k.block[0] // 32 for k in launches if k.kernel == 'attention_mma'}
        assert warps == {int(env.get('TX2_INFER_ATTN_WARPS', 4))}, name
    assert counts == dict(default=15, off=11, attn2=15, attn1=15, split=11, split_norm=13,
                          fused_few=13, attn2_split_norm=13, attn1_split_norm=13,
                          pool_off=15, pool_unsplit=15, se_off=15)  # (BERT: no pool, no SE)
    assert os.environ['TX2_INFER_ATTN_WARPS'] == '2'
    assert 'TX2_INFER_LINEAR_SPLITK' not in os.environ


def test_auto_lowers_few_cta_norms_as_gemm_and_layernorm(graphs, monkeypatch):
    """'auto': BERT's o-proj norms (K = 128, 4 CTAs: no split) become a plain GEMM and a
    layernorm, its FFN-out norms a split GEMM and a layernorm; no ``_ln`` launch is left.
    vit-focus's 24-CTA norms keep their one launch."""
    launches = lowered(graphs['bert'], 90, monkeypatch, {})
    kernels = [k.kernel for k in launches]
    assert not [k for k in kernels if k.endswith('_ln')]
    assert Counter(kernels) == {'conv_mma_64x64': 6, 'conv_mma_64x64_cl': 2, 'layernorm': 5,
                                'attention_mma': 2}
    for i, k in enumerate(launches):
        if k.kernel.startswith('conv_mma') and k.fields['res'] is not NULL:
            assert kernels[i + 1] == 'layernorm'  # each norm right after its GEMM
    vit = lowered(graphs['vit-focus'], 90, monkeypatch, {})
    assert Counter(k.kernel for k in vit)['conv_mma_64x64_ln'] == 24


@pytest.mark.parametrize('keep_sum', [False, True])
def test_apart_launch_fields_compute_the_norm(tmp_path, keep_sum, monkeypatch):
    """BERT's o-proj shape (128 x 128 -> 128, 4 CTAs) under 'auto': a GEMM into the sum (the
    second output, else the normalised output itself) and a layernorm, emulated against ONNX
    Runtime; under 'fused_few' the same node is one ``_ln`` launch."""
    path = tmp_path / 'm.onnx'
    graph, feeds = linear_norm_model(path, 128, 128, 128, keep_sum=keep_sum)
    for name in KNOBS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv('TX2_INFER_LINEAR_SPLITK', 'fused_few')
    assert [k.kernel for k in lower_graph(graph, 90, sm_count=132).launches] == [
        'conv_mma_64x64_ln']
    monkeypatch.delenv('TX2_INFER_LINEAR_SPLITK')
    got, kernels = emulated(graph, feeds, 90)
    assert kernels == ['conv_mma_64x64', 'layernorm']
    for name, ref in ort_run(path, feeds).items():
        np.testing.assert_allclose(got[name], ref, atol=1e-2 * (1 + np.abs(ref).max()),
                                   err_msg=name)


def test_auto_keeps_wide_norm_gemms_as_they_were(tmp_path, monkeypatch):
    """A FusedLinearNorm too wide for one cluster launch (2048 columns: 32 CTAs) is a GEMM and
    a layernorm under 'auto' exactly as under 'off': 'auto' splits only few-CTA norms, not
    every norm that reaches the GEMM + layernorm form ('linear+norm' splits this one)."""
    graph, _ = linear_norm_model(tmp_path / 'm.onnx', 128, 512, 2048)
    shapes = {}
    for mode in ('auto', 'off', 'linear+norm'):
        launches = lowered(graph, 90, monkeypatch, {'TX2_INFER_LINEAR_SPLITK': mode})
        shapes[mode] = shape(launches)
    assert shapes['auto'] == shapes['off']
    assert [k for k, *_ in shapes['off']] == ['conv_mma_64x64', 'layernorm']
    assert [k for k, *_ in shapes['linear+norm']] == ['conv_mma_64x64_cl', 'layernorm']
