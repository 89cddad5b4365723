"""The parts of bench/bench_cuda.py (issue 5's benchmark) that need no GPU and no torch: a
BERT-tiny graph shaped like PyTorch's opset-17 export lowers to CUDA launches
(``cuda.lowering.lower_graph``, no device needed), the packed
real models round-trip, the allocation schedule, the ratios and the markdown report (the race
rounds' spread, a max-autotune that did not finish, the output comparison table)."""
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'bench'))

import bench_alloc  # noqa: E402
import bench_cuda  # noqa: E402
import cuda_report  # noqa: E402
import devdata  # noqa: E402

from tx2_infer_core.cuda.lowering import lower_graph  # noqa: E402
from tx2_infer_core.engine import Engine, import_model  # noqa: E402
from tx2_infer_core.passes import optimize  # noqa: E402

S, H, HEADS, FFN = 16, 32, 2, 64


class _Builder:
    """Nodes and initializers of a hand-made ONNX graph."""

    def __init__(self):
        self.nodes, self.inits, self.rng, self.n = [], [], np.random.default_rng(0), 0

    def const(self, value, dtype=np.float32):
        self.n += 1
        name = f'c{self.n}'
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op, *inputs, **attrs):
        self.n += 1
        out = f'{op.lower()}{self.n}'
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=out, **attrs))
        return out

    def linear(self, x, k, n):
        w = self.const(self.rng.standard_normal((k, n)) / np.sqrt(k))
        return self.op('Add', self.op('MatMul', x, w), self.const(np.zeros(n)))

    def layernorm(self, x):
        return self.op('LayerNormalization', x, self.const(np.ones(H)),
                       self.const(np.zeros(H)), axis=-1, epsilon=1e-12)

    def heads(self, x):
        """view(b, s, heads, d) with a traced Shape -> Gather -> Concat shape, transpose."""
        b = self.op('Unsqueeze', self.op('Gather', self.op('Shape', x),
                                         self.const(0, np.int64)), self.const([0], np.int64))
        shape = self.op('Concat', b, self.const([S, HEADS, H // HEADS], np.int64), axis=0)
        return self.op('Transpose', self.op('Reshape', x, shape), perm=[0, 2, 1, 3])

    def attention(self, q, k, v):
        """torch's opset-14 symbolic of scaled_dot_product_attention."""
        last = self.op('Slice', self.op('Shape', q), self.const([-1], np.int64),
                       self.const([2 ** 62], np.int64))
        dim = self.op('Cast', last, to=TensorProto.FLOAT)
        scale = self.op('Sqrt', self.op('Div', self.const([1.0]), self.op('Sqrt', dim)))
        kt = self.op('Mul', self.op('Transpose', k, perm=[0, 1, 3, 2]), scale)
        probs = self.op('Softmax', self.op('MatMul', self.op('Mul', q, scale), kt), axis=-1)
        return self.op('MatMul', probs, v)


def bert_like_onnx(path):
    """One BERT layer the way torch.onnx.export (opset 17) writes it."""
    g = _Builder()
    x = g.layernorm('embeddings')
    q, k, v = (g.heads(g.linear(x, H, H)) for _ in range(3))
    a = g.op('Transpose', g.attention(q, k, v), perm=[0, 2, 1, 3])
    a = g.op('Reshape', a, g.const([1, S, H], np.int64))
    x = g.layernorm(g.op('Add', x, g.linear(a, H, H)))
    h = g.linear(x, H, FFN)
    erf = g.op('Erf', g.op('Div', h, g.const(np.sqrt(2.0))))
    gelu = g.op('Mul', g.op('Mul', h, g.op('Add', erf, g.const(1.0))), g.const(0.5))
    out = g.layernorm(g.op('Add', x, g.linear(gelu, FFN, H)))
    graph = helper.make_graph(
        g.nodes, 'bert_like',
        [helper.make_tensor_value_info('embeddings', TensorProto.FLOAT, [1, S, H])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, S, H])], g.inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]), path)
    return path


def test_bert_export_lowers_to_cuda_launches(tmp_path):
    path = bert_like_onnx(tmp_path / 'bert.onnx')
    graph, _ = optimize(import_model(path))
    launches = lower_graph(graph, arch=90).launches
    kernels = {launch.kernel for launch in launches}
    assert 'layernorm' in kernels and 'softmax' in kernels and 'matmul' in kernels
    assert all(n.op not in ('Shape', 'Gather', 'Sqrt', 'Cast') for n in graph.nodes)
    engine = Engine.build(path, backend='cpu')
    x = np.random.default_rng(1).standard_normal((1, S, H)).astype(np.float32)
    (out,) = engine.run(x).values()
    assert out.shape == (1, S, H) and np.isfinite(out).all()


def test_packed_onnx_round_trips(tmp_path):
    path = bert_like_onnx(tmp_path / 'bert.onnx')
    devdata.pack_onnx(path, tmp_path / 'packed')
    back = devdata.unpack_onnx(tmp_path / 'packed', tmp_path / 'back.onnx')
    a, b = onnx.load(path).graph.initializer, onnx.load(back).graph.initializer
    for x, y in zip(a, b):
        xa, ya = numpy_helper.to_array(x), numpy_helper.to_array(y)
        assert x.name == y.name and xa.dtype == ya.dtype
        np.testing.assert_allclose(ya, xa, rtol=1e-3, atol=1e-4)


def test_packed_darknet_weights_keep_the_header(tmp_path):
    header = np.array([0, 2, 0], np.int32).tobytes() + np.array([123], np.int64).tobytes()
    floats = np.linspace(-2, 2, 101, dtype=np.float32)
    (tmp_path / 'w').write_bytes(header + floats.tobytes())
    devdata.pack_darknet_weights(tmp_path / 'w', tmp_path / 'w16')
    assert (tmp_path / 'w16').stat().st_size == 20 + 2 * floats.size
    data = devdata.unpack_darknet_weights(tmp_path / 'w16', tmp_path / 'w32').read_bytes()
    assert data[:20] == header
    np.testing.assert_allclose(np.frombuffer(data[20:], np.float32), floats, atol=1e-3)


def test_alloc_schedule_allocates_and_frees_each_tensor_once(tmp_path):
    graph, _ = optimize(import_model(bert_like_onnx(tmp_path / 'bert.onnx')))
    sizes, steps = bench_alloc.schedule(graph)
    born = [i for b, _ in steps for i in b]
    dead = [i for _, d in steps for i in d]
    assert sorted(born) == sorted(dead) == list(range(len(sizes)))
    assert all(s % 256 == 0 and s > 0 for s in sizes)
    log = []
    bench_alloc.frame_times(lambda n: log.append(('a', n)) or len(log), lambda h: None,
                            sizes, steps, frames=1, warmup=0)
    assert len(log) == len(sizes)


def _fake_results():
    meta = dict(device='GPU', runs=300, warmup=50, notes=['a note'])
    t = dict(median_ms=2.0, p99_ms=2.5, runs=300)
    contenders = {'ours': dict(t, median_ms=1.0), 'ours_with_copies': t, 'eager': t,
                  'cuda_graph': dict(t, median_ms=0.5, spread_ms=[0.45, 0.61], repeats=3),
                  'reduce-overhead': dict(t, median_ms=0.8, compile_s=30.0),
                  'max-autotune': dict(finished=False, capped_s=60)}
    model = dict(contenders=contenders, profile=dict(
        method='m', sum_ms=1.0, by_kernel={'conv': dict(launches=2, ms=0.9)},
        top=[dict(index=0, node='n', op='FusedConv', kernel='conv', grid=[1, 1, 1], ms=0.5,
                  tflops=3.0)]))
    model['ratios'] = bench_cuda.ratios(model)
    err = dict(max_rel_error=1.5e-3, rel_l2=2e-4)
    model['accuracy'] = dict(vs_fp32={'ours': err}, ours_vs={'eager': err})
    return dict(meta=meta, models={'m': model})


def test_ratios_and_report():
    latency = _fake_results()
    r = latency['models']['m']['ratios']
    assert r['ours/best_compile'] == 1.0 / 0.8 and r['ours/best_torch'] == 2.0
    assert 'ours/max-autotune' not in r
    build = dict(meta={}, models={'m': dict(cold_build_s=5, cold_kernel_compile_s=4,
                                            warm_build_s=1, save_s=0.1, load_s=0.5,
                                            plan_bytes=1e6)})
    alloc = dict(meta={}, models={'m': dict(tensors=3, contenders={
        'arena': dict(median_ms=0.001, p99_ms=0.002), 'x': dict(error='no torch')})})
    text = cuda_report.markdown(latency, build, alloc)
    assert 'not finished in 60 s' in text and '| m | 1.000 / 2.500 |' in text
    assert '0.500 / 2.500 (0.450-0.610, n=3)' in text
    assert '| m | ours vs torch FP32 | 1.50e-03 | 2.00e-04 |' in text
    assert '| m | ours vs eager | 1.50e-03 |' in text
    assert '2.00x the best PyTorch' in text and '| conv | 2 | 0.900 |' in text
