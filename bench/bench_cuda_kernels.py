"""Device run: time both fused-convolution paths on real-size layers, and a real model per
frame (CUDA graph replay), with CUDA events. Writes JSON to ``--out``; prints a table.

    python bench/bench_cuda_kernels.py --out bench/results/cuda_kernels.json [--model X.onnx]
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'test' / 'cuda'))
from test_conv_kernels import LAYERS, _case  # noqa: E402

from tx2_infer_core.backends.cuda_backend import CudaBackend  # noqa: E402


def time_graph(backend, iters=300, warmup=30):
    """Median and p99 (ms) of one graph replay, by CUDA events."""
    drv = backend.ctx.drv
    with backend.ctx:
        for _ in range(warmup):
            backend.graph_exec.launch()
        backend.stream.synchronize()
        times = []
        start, end = drv.Event(), drv.Event()
        for _ in range(iters):
            start.record(backend.stream)
            backend.graph_exec.launch()
            end.record(backend.stream)
            end.synchronize()
            times.append(end.time_since(start))
    t = np.array(times)
    return float(np.median(t)), float(np.percentile(t, 99))


def bench_layers(rows):
    for layer in LAYERS:
        name, n, c, h, w, k, r, s, p, d, g = layer[:11]
        graph, feeds, ref = _case(layer)
        ho, wo = ref.shape[2:]
        flops = 2.0 * n * ho * wo * k * (c // g) * r * r
        for path in ('simt', 'tc'):
            be = CudaBackend(conv_path=path)
            be.prepare(graph)
            out = be.run(feeds)['y']
            err = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
            med, p99 = time_graph(be)
            kernel = be.launches[0].kernel
            be.close()
            rows.append(dict(layer=name, path=path, kernel=kernel, rel_err=err,
                             median_ms=med, p99_ms=p99, tflops=flops / med / 1e9))


def bench_model(model, rows):
    from tx2_infer_core.engine import Engine
    for path in ('simt', 'tc'):
        t0 = time.perf_counter()
        CudaBackend.__init__.__defaults__ = ('fp16', path, 0, True)
        eng = Engine.build(model, backend='cuda', precision='fp16')
        build_s = time.perf_counter() - t0
        med, p99 = time_graph(eng.backend)
        x = np.random.default_rng(0).random(eng.input_specs[0].shape, dtype=np.float32)
        t0 = time.perf_counter()
        for _ in range(100):
            eng.run(x)
        host_ms = (time.perf_counter() - t0) * 10
        rows.append(dict(layer=Path(model).name, path=path, kernel=f'{len(eng.backend.launches)}'
                         ' launches', rel_err=None, median_ms=med, p99_ms=p99, tflops=None,
                         build_s=build_s, run_with_copies_ms=host_ms))
        eng.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True)
    ap.add_argument('--model', action='append', default=[])
    args = ap.parse_args()
    import pycuda.driver as drv
    drv.init()
    rows = []
    bench_layers(rows)
    for model in args.model:
        bench_model(model, rows)
    dev = drv.Device(0)
    result = dict(device=dev.name(), compute_capability=dev.compute_capability(),
                  driver=drv.get_driver_version(), rows=rows)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"{'layer':22} {'path':5} {'kernel':16} {'rel_err':>8} {'med ms':>8} {'p99 ms':>8} "
          f"{'TFLOP/s':>8}")
    for r in rows:
        err = f"{r['rel_err']:.1e}" if r['rel_err'] is not None else '-'
        tf = f"{r['tflops']:.2f}" if r['tflops'] else '-'
        print(f"{r['layer'][:22]:22} {r['path']:5} {r['kernel'][:16]:16} {err:>8} "
              f"{r['median_ms']:8.4f} {r['p99_ms']:8.4f} {tf:>8}")


if __name__ == '__main__':
    main()
