"""FusedLinearNorm without a GPU: ``fuse_linear_norm`` (a FusedLinear's rows LayerNormed) on the
zoo's vit-focus (pre-norm, real weights: its numpy run against ONNX Runtime is test_zoo.py's
cuda-graph test), the BERT-shaped graph (post-norm, seeded) and small graphs against ONNX
Runtime, and through a plan file; the lowered launches (one ``conv_mma_*_ln`` cluster launch
on sm_90, GEMM + layernorm elsewhere) emulated on the host from their fields and the weight
image; the kernel's PTX."""
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from test_attention import VARIANTS, bert, numpy_outputs, ort_output, rel
from test_fuse_linear import emulate_gemm
from test_lstm_lowering import Memory
from tx2_infer_core.cuda import compile as cc
from tx2_infer_core.cuda.launch import NULL
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.engine import Engine
from tx2_infer_core.onnx_import import load_onnx
from tx2_infer_core.passes import optimize
from tx2_infer_core.plan_file import save_plan
from tx2_infer_core.planner import plan_memory

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402
import zoo_launches  # noqa: E402

RNG = np.random.default_rng(17)


def linear_norm_model(path, rows, k, n, keep_sum=False, norm_attrs=None, mean_out=False):
    """x [rows, k] -> MatMul + bias + residual r -> LayerNormalization -> y (seeded gamma and
    beta away from 1 and 0); ``keep_sum``: the sum is a graph output too (a pre-norm residual
    stream); ``mean_out``: so is the norm's Mean."""
    init = [numpy_helper.from_array(a.astype(np.float32), name) for name, a in (
        ('w', RNG.standard_normal((k, n)) / k ** 0.5), ('b', RNG.standard_normal(n) * 0.3),
        ('gamma', 1 + RNG.standard_normal(n) * 0.5), ('beta', RNG.standard_normal(n) * 0.5))]
    outs = ['y', 'mean'] if mean_out else ['y']
    nodes = [helper.make_node('MatMul', ['x', 'w'], ['p']),
             helper.make_node('Add', ['p', 'b'], ['pb']),
             helper.make_node('Add', ['pb', 'r'], ['s']),
             helper.make_node('LayerNormalization', ['s', 'gamma', 'beta'], outs,
                              **(norm_attrs or {'epsilon': 1e-6}))]
    rank = 3 if norm_attrs else 2
    shape = [1, rows, n][-rank:]
    info = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shp) for name, shp in
            (('x', shape[:-1] + [k]), ('r', shape))]
    outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
               for o in outs + (['s'] if keep_sum else [])]
    model = helper.make_model(helper.make_graph(nodes, 'linear_norm', info, outputs, init),
                              opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    feeds = {'x': RNG.standard_normal(shape[:-1] + [k]).astype(np.float32),
             'r': (RNG.standard_normal(shape) * 2 + 1).astype(np.float32)}
    return optimize(load_onnx(path), 3)[0], feeds


def ort_run(path, feeds) -> dict:
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


# The pass --------------------------------------------------------------------------------------

@pytest.mark.parametrize('variant', sorted(VARIANTS))
def test_bert_shaped_post_norm_layers_fuse_and_match_onnxruntime(tmp_path, variant):
    """Post-norm: the o and FFN out GEMMs take the LayerNorm after their residual Add; the
    sum is read by nothing else (one output); the embedding LayerNorm stays."""
    path, graph = bert(tmp_path, ln_affine=True, **VARIANTS[variant])
    optimised, report = optimize(graph, 3)
    assert report['fuse_linear_norm'] == 4
    fused = [n for n in optimised.nodes if n.op == 'FusedLinearNorm']
    assert [len(n.outputs) for n in fused] == [1] * 4
    assert all(len(n.inputs) == 7 and n.attrs['epsilon'] == pytest.approx(1e-12) for n in fused)
    assert optimised.summary()['LayerNormalization'] == 1
    x = np.random.default_rng(3).standard_normal((1, 128, 128)).astype(np.float32)
    ours = numpy_outputs(optimised, {'embeddings': x})[optimised.outputs[0]]
    assert rel(ours, ort_output(path, {'embeddings': x})) <= 1e-5


def test_vit_focus_pre_norm_layers_keep_their_residual_stream():
    """Pre-norm (real weights): the attention output and fc2 GEMMs of its 12 blocks take the
    next LayerNorm and still write their sum, the residual stream (the last fc2's is read by
    the final LayerNorm alone); block 0's norm1 reads the embeddings, not a GEMM."""
    graph = zoo_launches.cuda_graph(zoo_data.BY_NAME['vit-focus'])
    fused = [n for n in graph.nodes if n.op == 'FusedLinearNorm']
    assert Counter(len(n.outputs) for n in fused) == {2: 23, 1: 1}
    assert [n.name for n in graph.nodes if n.op == 'LayerNormalization'] == [
        '/backbone/encoder/layer.0/norm1/Add_1']


@pytest.mark.parametrize('case', ['mean_read', 'two_axes'])
def test_the_pass_declines(tmp_path, case):
    """A norm whose Mean output is read, or over more than the last axis, stays apart."""
    attrs = {'mean_read': None, 'two_axes': {'axis': -2}}[case]
    graph, _ = linear_norm_model(tmp_path / 'm.onnx', 8, 16, 24, norm_attrs=attrs,
                                 mean_out=case == 'mean_read')
    assert 'FusedLinearNorm' not in graph.summary()
    assert graph.summary()['LayerNormalization'] == 1


def test_a_plan_file_keeps_the_fused_norm(tmp_path):
    """A cuda build's graph saved and loaded: FusedLinearNorm's attributes pass the plan
    checks and the load's reference run gives the same output."""
    _, graph = bert(tmp_path, layers=1, ln_affine=True)
    optimised, _ = optimize(graph, 3)
    save_plan(tmp_path / 'b.tx2plan', optimised, plan_memory(optimised).to_dict(),
              {'precision': 'fp32', 'backend': 'cpu', 'model': 'b', 'input_shape': [1, 128, 128]})
    feeds = {'embeddings': np.random.default_rng(4).standard_normal((1, 128, 128), np.float32)}
    with Engine.load(tmp_path / 'b.tx2plan', backend='numpy') as engine:
        assert engine.graph.summary()['FusedLinearNorm'] == 2
        out = engine.run(feeds)[optimised.outputs[0]]
    np.testing.assert_array_equal(out, numpy_outputs(optimised, feeds)[optimised.outputs[0]])


# The lowered launches, emulated on the host ----------------------------------------------------

def emulate_layernorm(mem, f):
    """A ``layernorm`` launch: FP16 rows [rows, n] at x normalised into y (FP32 statistics)."""
    rows, n = int(f['rows']), int(f['n'])
    x = mem.read(f['x'], rows * n, np.float16).astype(np.float64).reshape(rows, n)
    d = x - x.mean(axis=1, keepdims=True)
    y = d / np.sqrt((d * d).mean(axis=1, keepdims=True) + float(f['eps']))
    y = y * mem.read(f['gamma'], n, np.float32)
    mem.write(f['y'], (y + (mem.read(f['beta'], n, np.float32) if f['beta'] is not NULL
                            else 0)).astype(np.float16))


def emulate_linear_norm(mem, f):
    """A ``conv_mma_*_ln`` launch: the GEMM epilogue's FP16 sums (also stored at y when it is
    set), each row LayerNormed into ln_y."""
    rows, n = f['N'] * f['P'] * f['Q'], f['Kg']
    assert f['ln_pix'] == n
    emulate_gemm(mem, dict(f, y=f['ln_y']))
    if f['y'] is not NULL:
        mem.write(f['y'], mem.read(f['ln_y'], rows * n, np.float16))
    emulate_layernorm(mem, dict(f, x=f['ln_y'], y=f['ln_y'], rows=rows, n=n))


EMULATORS = {'layernorm': emulate_layernorm, 'conv': emulate_gemm, 'conv_mma': emulate_gemm,
             '_ln': emulate_linear_norm}


def emulated(graph, feeds, arch) -> tuple:
    """(outputs by name, kernels) of ``graph``'s launches on ``arch``, emulated."""
    lowered = lower_graph(graph, arch, sm_count=132)
    mem = Memory(lowered)
    for name in graph.inputs:
        mem.write(lowered.slots[name].ref, feeds[name].astype(np.float16))
    for k in lowered.launches:
        family = '_ln' if k.kernel.endswith('_ln') else k.module.split('@')[0]
        EMULATORS[family](mem, k.fields)
    out = {}
    for name in graph.outputs:
        slot = lowered.slots[name]
        out[name] = mem.read(slot.ref, int(np.prod(slot.shape)), np.float16).reshape(slot.shape)
    return out, [k.kernel for k in lowered.launches]


# (rows, K, N, the sm_90 launches under 'fused_few', which keeps few-CTA norms one launch):
# a ViT-S row (6 CTAs a cluster), one CTA a row, a row past 8 CTAs and K not in 16-byte rows
# (both the GEMM + layernorm pair), an odd N.
SHAPES = [(197, 64, 384, ['conv_mma_64x64_ln']), (7, 16, 40, ['conv_mma_64x64_ln']),
          (64, 32, 640, ['conv_mma_64x64', 'layernorm']),
          (33, 12, 48, ['conv_mma_gather_64x64', 'layernorm']),
          (20, 24, 131, ['conv_mma_64x64_ln'])]


@pytest.mark.parametrize('keep_sum', [False, True], ids=['post_norm', 'pre_norm'])
@pytest.mark.parametrize('shape', SHAPES, ids=lambda s: f'{s[0]}x{s[1]}x{s[2]}')
def test_lowered_launches_compute_the_norm(tmp_path, shape, keep_sum, monkeypatch):
    """The launch fields (weights, bias, residual, gamma, beta, epsilon, both outputs) against
    ONNX Runtime on the unfused model, on sm_90 and on sm_62 (GEMM + layernorm)."""
    monkeypatch.setenv('TX2_INFER_LINEAR_SPLITK', 'fused_few')
    rows, k, n, sm90 = shape
    path = tmp_path / 'm.onnx'
    graph, feeds = linear_norm_model(path, rows, k, n, keep_sum)
    assert graph.summary() == {'FusedLinearNorm': 1}
    want = ort_run(path, feeds)
    for arch, kernels in ((90, sm90), (62, ['conv_simt_h2', 'layernorm'])):
        got, launched = emulated(graph, feeds, arch)
        assert [name.removesuffix('_v8') for name in launched] == kernels
        for name, ref in want.items():
            np.testing.assert_allclose(got[name], ref, atol=1e-2 * (1 + np.abs(ref).max()),
                                       err_msg=f'{name} sm_{arch}')


def test_vit_focus_lowers_its_norms_into_cluster_launches():
    """sm_90: each of the 24 fused norms is one launch, 6 CTAs a row (384 = 6 x 64) in one
    cluster, writing the residual stream where the graph reads it; sm_62: GEMM + layernorm,
    the launch count of the unfused graph."""
    graph = zoo_launches.cuda_graph(zoo_data.BY_NAME['vit-focus'])
    fused = {n.name: n for n in graph.nodes if n.op == 'FusedLinearNorm'}
    launches = lower_graph(graph, 90, sm_count=132).launches
    ln = [k for k in launches if k.node in fused]
    assert [k.kernel for k in ln] == ['conv_mma_64x64_ln'] * 24
    assert all('CONV_MMA_LN=6' in k.module and k.grid[1:] == (6, 1) for k in ln)
    writes_sum = [len(fused[k.node].outputs) == 2 for k in ln]
    assert [k.fields['y'] is not NULL for k in ln] == writes_sum
    assert len(launches) == 71
    old = lower_graph(graph, 62, sm_count=2).launches
    assert Counter(k.kernel for k in old if k.node in fused)['layernorm'] == 24


# The kernel ------------------------------------------------------------------------------------

@pytest.mark.skipif(not cc.nvrtc_available(), reason='nvidia-cuda-nvrtc-cu12 not installed')
def test_ln_module_normalises_rows_across_a_cluster():
    """-DCONV_MMA_LN=6 on sm_90: only the ``_ln`` kernel of the tile, a cluster of 6 along y,
    reading its peers' row totals (mapa + ld.shared::cluster.f32) between cluster barriers
    (two sums, then the barrier before exit); below sm_90 the define builds no such kernel."""
    defines = {'CONV_MMA_TILE': 64064, 'CONV_MMA_GATHER': 0, 'CONV_MMA_LN': 6, 'TX2_ACTS': 0}
    ptx = cc.nvrtc_compile('conv_mma', 90, defines, ptx=True).decode()
    assert '.entry conv_mma_64x64_ln(' in ptx and '.entry conv_mma_64x64(' not in ptx
    assert ptx.count('.reqnctapercluster 1, 6, 1') == 1
    assert 'mapa.shared::cluster' in ptx and 'ld.shared::cluster.f32' in ptx
    assert ptx.count('barrier.cluster.wait') == 3
    assert '_ln(' not in cc.nvrtc_compile('conv_mma', 87, defines, ptx=True).decode()
