"""Our side of ``bench_cuda.py``: build time (cold and warm kernel cache, plan save and load),
CUDA-event latency of the captured graph (kernels only, and with the input/output copies),
and a per-launch profile of the graph. Needs pycuda and a GPU; imports them lazily.
"""
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchlib import event_times, stats


@contextmanager
def compile_timer(seconds: list):
    """Add the time spent in the kernel compilers (nvcc or NVRTC) to ``seconds[0]``."""
    from tx2_infer_core.cuda import compile as cc
    real = cc.nvcc_compile, cc.nvrtc_compile

    def timed(fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[0] += time.perf_counter() - t0
        return wrapper

    cc.nvcc_compile, cc.nvrtc_compile = timed(real[0]), timed(real[1])
    try:
        yield
    finally:
        cc.nvcc_compile, cc.nvrtc_compile = real


def build_and_load(model, folder, name, conv_path='tc', weights_path=None):
    """Cold build (fresh kernel cache), warm build, save, load: (loaded engine, timings).

    Cold and warm builds are ONNX/Darknet -> passes -> plan -> FP16 weights on the GPU ->
    kernels compiled (cold) or read from the disk cache (warm) -> graph captured.
    """
    from tx2_infer_core.engine import Engine
    folder = Path(folder)
    opts = dict(backend='cuda', precision='fp16', weights_path=weights_path,
                backend_options={'conv_path': conv_path})
    old = os.environ.get('TX2_INFER_CACHE')
    os.environ['TX2_INFER_CACHE'] = str(folder / f'cache-{name}-{conv_path}')
    out, compile_s = {}, [0.0]
    try:
        with compile_timer(compile_s):
            t0 = time.perf_counter()
            Engine.build(model, **opts).close()
            out['cold_build_s'] = time.perf_counter() - t0
        out['cold_kernel_compile_s'] = compile_s[0]
        t0 = time.perf_counter()
        engine = Engine.build(model, **opts)
        out['warm_build_s'] = time.perf_counter() - t0
        plan = folder / f'{name}-{conv_path}.tx2plan'
        t0 = time.perf_counter()
        engine.save(plan)
        out['save_s'] = time.perf_counter() - t0
        out['plan_bytes'] = plan.stat().st_size
        engine.close()
        t0 = time.perf_counter()
        engine = Engine.load(plan, backend='cuda', backend_options={'conv_path': conv_path})
        out['load_s'] = time.perf_counter() - t0
    finally:
        if old is None:
            os.environ.pop('TX2_INFER_CACHE', None)
        else:
            os.environ['TX2_INFER_CACHE'] = old
    return engine, out


def random_feeds(engine, seed=0) -> dict:
    """Uniform random float32 feeds in [0, 1) for every input (never zeros)."""
    rng = np.random.default_rng(seed)
    return {v.name: rng.random(v.shape, dtype=np.float32) for v in engine.input_specs}


def replay_times(be, launch, runs, warmup) -> dict:
    """CUDA-event time of each ``launch()`` on the backend's stream (synchronised)."""
    with be.ctx:
        return stats(event_times(be.ctx.drv, be.stream, launch, runs, warmup), minimum=True)


def kernels_graph(be):
    """A CUDA graph of the engine's kernel launches alone (no host copies)."""
    from tx2_infer_core.cuda.runtime import CudaGraph
    graph = CudaGraph()

    def enqueue():
        for fn, rec, grid, block in be.bound:
            fn(rec, grid=grid, block=block, stream=be.stream)

    with be.ctx:
        graph.capture(be.stream, enqueue)
    return graph


def time_engine(engine, runs, warmup) -> dict:
    """Latency of the kernels-only graph and of the per-frame graph (with H2D/D2H copies)."""
    be = engine.backend
    outputs = engine.run(random_feeds(engine))  # fills the arena input with random data
    finite = all(bool(np.isfinite(v).all()) for v in outputs.values())
    graph = kernels_graph(be)
    try:
        kernels = replay_times(be, graph.launch, runs, warmup)
    finally:
        with be.ctx:
            graph.close()
    copies = replay_times(be, be.graph_exec.launch, runs, warmup)
    return dict(ours=dict(kernels, launches=len(be.bound), outputs_finite=finite),
                ours_with_copies=copies)


def _graph_event_times(be, replays):
    """[replays, launches] ms per launch: external event-record nodes between the kernels of
    one captured graph, so no launch gap or host time is counted."""
    from tx2_infer_core.cuda.runtime import CudaGraph, checked, driver_api
    cu = driver_api()
    stream = cu.CUstream(be.stream.handle)
    ext = cu.CUevent_record_flags.CU_EVENT_RECORD_EXTERNAL
    n = len(be.bound)
    events = [checked(cu.cuEventCreate(0), 'cuEventCreate') for _ in range(n + 1)]
    graph = CudaGraph()

    def enqueue():
        checked(cu.cuEventRecordWithFlags(events[0], stream, ext), 'cuEventRecordWithFlags')
        for event, (fn, rec, grid, block) in zip(events[1:], be.bound):
            fn(rec, grid=grid, block=block, stream=be.stream)
            checked(cu.cuEventRecordWithFlags(event, stream, ext), 'cuEventRecordWithFlags')

    samples = np.zeros((replays, n))
    try:
        graph.capture(be.stream, enqueue)
        for r in range(replays):
            graph.launch()
            be.stream.synchronize()
            for i in range(n):
                samples[r, i] = checked(cu.cuEventElapsedTime(events[i], events[i + 1]),
                                        'cuEventElapsedTime')
    finally:
        graph.close()
        for event in events:
            cu.cuEventDestroy(event)
    return samples


def _eager_event_times(be, replays):
    """Fallback: events around each launch made one by one (launch gaps included)."""
    drv = be.ctx.drv
    n = len(be.bound)
    events = [drv.Event() for _ in range(n + 1)]
    samples = np.zeros((replays, n))
    for r in range(replays):
        events[0].record(be.stream)
        for event, (fn, rec, grid, block) in zip(events[1:], be.bound):
            fn(rec, grid=grid, block=block, stream=be.stream)
            event.record(be.stream)
        be.stream.synchronize()
        samples[r] = [events[i + 1].time_since(events[i]) for i in range(n)]
    return samples


def launch_bytes(launch, node, graph, per_node) -> int:
    """FP16 bytes a memory-bound launch moves: its node's tensor inputs (constants too) read
    once and outputs written once, shared evenly by the node's launches (0: unknown node)."""
    if node is None:
        return 0
    names = [n for n in node.inputs if n] + [n for n in node.outputs if n]
    elems = sum(int(np.prod(graph.values[n].shape)) if n in graph.values
                else int(np.size(graph.weights[n])) if n in graph.weights else 0 for n in names)
    return 2 * elems // per_node[launch.node]


def profile(engine, replays=30, top=10) -> dict:
    """Median time of each launch of the engine's graph; the ``top`` slowest launches and the
    time per kernel name. Conv/GEMM launches carry their achieved TFLOP/s, the memory-bound
    ones their achieved GB/s (``launch_bytes`` / time)."""
    from tx2_infer_core.flops import node_flops
    be = engine.backend
    with be.ctx:
        try:
            samples, method = _graph_event_times(be, replays), 'graph event-record nodes'
        except Exception as exc:  # older driver bindings: time the launches one by one
            samples = _eager_event_times(be, replays)
            method = f'eager events (graph events failed: {exc!r:.120})'
    per = np.median(samples, axis=0)
    nodes = {n.name: n for n in be.graph.nodes}
    per_node = {}
    for launch in be.launches:
        per_node[launch.node] = per_node.get(launch.node, 0) + 1
    rows = []
    for i, (launch, ms) in enumerate(zip(be.launches, per)):
        node = nodes.get(launch.node)
        flops = node_flops(node, be.graph) if node and per_node[launch.node] == 1 else 0
        moved = launch_bytes(launch, node, be.graph, per_node) if not flops else 0
        rows.append(dict(index=i, node=launch.node, op=node.op if node else '',
                         kernel=launch.kernel, grid=list(launch.grid), ms=float(ms),
                         tflops=float(flops / ms / 1e9) if flops and ms > 0 else None,
                         gbps=float(moved / ms / 1e6) if moved and ms > 0 else None))
    by_kernel = {}
    for row in rows:
        k = by_kernel.setdefault(row['kernel'], dict(launches=0, ms=0.0))
        k['launches'] += 1
        k['ms'] += row['ms']
    return dict(method=method, replays=replays, sum_ms=float(per.sum()),
                top=sorted(rows, key=lambda r: -r['ms'])[:top],
                by_kernel=dict(sorted(by_kernel.items(), key=lambda kv: -kv[1]['ms'])))
