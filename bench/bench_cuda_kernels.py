"""Device run: time the fused-convolution kernels alone (CUDA events around a CUDA graph of
back-to-back launches, no copies) on real ResNet-50 / YOLOv5s / test layer shapes, for every
path: 'simt' (half2, the TX2 path), 'wmma' (the previous tensor-core kernel, kept for sm_7x)
and 'mma' (mma.sync + cp.async, sm_80+), each checked against numpy; then whole models per
frame (graph replay with copies, and kernels only). Writes JSON to ``--out``; prints a table.

    python bench/bench_cuda_kernels.py --out cuda_kernels.json [--model X.onnx]
        [--nets] [--torch-resnet50 DIR]
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'test' / 'cuda'))
from test_conv_kernels import LAYERS, _case  # noqa: E402

from benchlib import event_times, gpu_facts, stats, versions, write_json  # noqa: E402
from tx2_infer_core.backends.cuda_backend import CudaBackend  # noqa: E402
from tx2_infer_core.cuda import lower_conv  # noqa: E402


def _l(name, c, h, k, r, s=1, act='Relu', res=''):
    return (name, 1, c, h, h, k, r, s, r // 2 if r != 6 else 2, 1, 1, act, res)


# (layer as in test_conv_kernels.LAYERS, how often the network has it), batch 1.
RESNET50 = [
    (_l('r50_stem_7x7s2', 3, 224, 64, 7, 2), 1), (_l('r50_1x1_64_56', 64, 56, 64, 1), 1),
    (_l('r50_3x3_64_56', 64, 56, 64, 3), 3), (_l('r50_1x1_64to256_56', 64, 56, 256, 1), 4),
    (_l('r50_1x1_256to64_56', 256, 56, 64, 1), 2),
    (_l('r50_1x1_256to128_56', 256, 56, 128, 1), 1),
    (_l('r50_3x3s2_128_56', 128, 56, 128, 3, 2), 1),
    (_l('r50_1x1_128to512_28', 128, 28, 512, 1, res='before'), 4),
    (_l('r50_1x1s2_256to512_56', 256, 56, 512, 1, 2), 1),
    (_l('r50_1x1_512to128_28', 512, 28, 128, 1), 3), (_l('r50_3x3_128_28', 128, 28, 128, 3), 3),
    (_l('r50_1x1_512to256_28', 512, 28, 256, 1), 1),
    (_l('r50_3x3s2_256_28', 256, 28, 256, 3, 2), 1),
    (_l('r50_1x1_256to1024_14', 256, 14, 1024, 1, res='before'), 7),
    (_l('r50_1x1_1024to256_14', 1024, 14, 256, 1), 5),
    (_l('r50_3x3_256_14', 256, 14, 256, 3), 5),
    (_l('r50_1x1_1024to512_14', 1024, 14, 512, 1), 1),
    (_l('r50_3x3s2_512_14', 512, 14, 512, 3, 2), 1),
    (_l('r50_1x1_512to2048_7', 512, 7, 2048, 1, res='before'), 4),
    (_l('r50_1x1_2048to512_7', 2048, 7, 512, 1), 2), (_l('r50_3x3_512_7', 512, 7, 512, 3), 2),
]
YOLOV5S = [
    (_l('y5_stem_6x6s2', 3, 640, 32, 6, 2, 'SiLU'), 1),
    (_l('y5_3x3s2_32to64_320', 32, 320, 64, 3, 2, 'SiLU'), 1),
    (_l('y5_1x1_64to32_160', 64, 160, 32, 1, 1, 'SiLU'), 2),
    (_l('y5_1x1_32_160', 32, 160, 32, 1, 1, 'SiLU'), 1),
    (_l('y5_3x3_32_160', 32, 160, 32, 3, 1, 'SiLU', 'after'), 1),
    (_l('y5_1x1_64_160', 64, 160, 64, 1, 1, 'SiLU'), 1),
    (_l('y5_3x3s2_64to128_160', 64, 160, 128, 3, 2, 'SiLU'), 1),
    (_l('y5_1x1_128to64_80', 128, 80, 64, 1, 1, 'SiLU'), 2),
    (_l('y5_1x1_256to64_80', 256, 80, 64, 1, 1, 'SiLU'), 2),
    (_l('y5_1x1_64_80', 64, 80, 64, 1, 1, 'SiLU'), 3),
    (_l('y5_3x3_64_80', 64, 80, 64, 3, 1, 'SiLU'), 3),
    (_l('y5_1x1_128_80', 128, 80, 128, 1, 1, 'SiLU'), 2),
    (_l('y5_3x3s2_128_80', 128, 80, 128, 3, 2, 'SiLU'), 1),
    (_l('y5_3x3s2_128to256_80', 128, 80, 256, 3, 2, 'SiLU'), 1),
    (_l('y5_1x1_256to128_40', 256, 40, 128, 1, 1, 'SiLU'), 5),
    (_l('y5_1x1_512to128_40', 512, 40, 128, 1, 1, 'SiLU'), 2),
    (_l('y5_1x1_128_40', 128, 40, 128, 1, 1, 'SiLU'), 5),
    (_l('y5_3x3_128_40', 128, 40, 128, 3, 1, 'SiLU'), 5),
    (_l('y5_1x1_256_40', 256, 40, 256, 1, 1, 'SiLU'), 3),
    (_l('y5_3x3s2_256_40', 256, 40, 256, 3, 2, 'SiLU'), 1),
    (_l('y5_3x3s2_256to512_40', 256, 40, 512, 3, 2, 'SiLU'), 1),
    (_l('y5_1x1_512to256_20', 512, 20, 256, 1, 1, 'SiLU'), 6),
    (_l('y5_1x1_256_20', 256, 20, 256, 1, 1, 'SiLU'), 2),
    (_l('y5_3x3_256_20', 256, 20, 256, 3, 1, 'SiLU'), 2),
    (_l('y5_1x1_512_20', 512, 20, 512, 1, 1, 'SiLU'), 2),
    (_l('y5_1x1_1024to512_20', 1024, 20, 512, 1, 1, 'SiLU'), 1),
    (_l('y5_detect_80', 128, 80, 255, 1, 1, ''), 1),
    (_l('y5_detect_40', 256, 40, 255, 1, 1, ''), 1),
    (_l('y5_detect_20', 512, 20, 255, 1, 1, ''), 1),
]


def make_backend(graph, path):
    """A prepared CudaBackend for 'simt', 'wmma' (previous tensor-core kernel) or 'mma'."""
    saved = lower_conv.MMA_MIN_ARCH
    if path == 'wmma':
        lower_conv.MMA_MIN_ARCH = 10 ** 6
    try:
        be = CudaBackend(conv_path='simt' if path == 'simt' else 'tc')
        be.prepare(graph)
    finally:
        lower_conv.MMA_MIN_ARCH = saved
    return be


def _event_times(ctx, stream, launch, iters, warmup=30):
    t = stats(event_times(ctx.drv, stream, launch, iters, warmup))
    return t['median_ms'], t['p99_ms']


def time_graph(be, iters=300):
    """Median and p99 (ms) of one per-frame graph replay (copies included)."""
    with be.ctx:
        return _event_times(be.ctx, be.stream, be.graph_exec.launch, iters)


def time_kernels(be, iters=300, reps=10):
    """Median and p99 (ms) of the kernels alone: a graph of ``reps`` back-to-back passes over
    the launches (no copies), replayed ``iters`` times, divided by ``reps``. Inputs stay on the
    device and, at these sizes, in the 50 MB L2, as between the layers of a real frame."""
    from tx2_infer_core.cuda.runtime import CudaGraph

    def enqueue():
        for _ in range(reps):
            for fn, rec, grid, block in be.bound:
                fn(rec, grid=grid, block=block, stream=be.stream)

    with be.ctx:
        graph = CudaGraph()
        graph.capture(be.stream, enqueue)
        try:
            med, p99 = _event_times(be.ctx, be.stream, graph.launch, iters)
        finally:
            graph.close()
    return med / reps, p99 / reps


def bench_layers(layers, paths, rows, group):
    for layer, count in layers:
        name, n, c, h, w, k, r, s, p, d, g = layer[:11]
        graph, feeds, ref = _case(layer)
        ho, wo = ref.shape[2:]
        flops = 2.0 * n * ho * wo * k * (c // g) * r * r
        for path in paths:
            be = make_backend(graph, path)
            try:
                out = be.run(feeds)['y']
                err = float(np.linalg.norm(out - ref) / np.linalg.norm(ref))
                med, p99 = time_kernels(be)
                kernels = '+'.join(k_.kernel for k_ in be.launches)
                splits = int(be.launches[0].fields.get('splits', 1))
            finally:
                be.close()
            rows.append(dict(group=group, layer=name, count=count, path=path, kernel=kernels,
                             splits=splits, grid=list(be.launches[0].grid), rel_err=err,
                             median_ms=med, p99_ms=p99, tflops=flops / med / 1e9))
            _print_row(rows[-1])


def bench_model(model, rows, paths=('simt', 'wmma', 'mma'), shape=None):
    from tx2_infer_core.engine import Engine
    for path in paths:
        saved = lower_conv.MMA_MIN_ARCH
        if path == 'wmma':
            lower_conv.MMA_MIN_ARCH = 10 ** 6
        t0 = time.perf_counter()
        try:
            eng = Engine.build(model, input_shape=shape, backend='cuda', precision='fp16',
                               backend_options={'conv_path': 'simt' if path == 'simt' else 'tc'})
        finally:
            lower_conv.MMA_MIN_ARCH = saved
        build_s = time.perf_counter() - t0
        med, p99 = time_graph(eng.backend)
        kmed, kp99 = time_kernels(eng.backend, reps=1)
        rows.append(dict(group='model', layer=Path(model).name, count=1, path=path,
                         kernel=f'{len(eng.backend.launches)} launches', rel_err=None,
                         median_ms=med, p99_ms=p99, kernels_median_ms=kmed,
                         kernels_p99_ms=kp99, tflops=None, build_s=build_s))
        _print_row(rows[-1])
        eng.close()


def torch_resnet50(folder, rows):
    """Export a torchvision ResNet-50 (random weights) to ONNX; time PyTorch FP16 eager +
    CUDA graph (channels-last, cuDNN) as the reference. Returns the ONNX path."""
    import torch
    import torchvision
    model = torchvision.models.resnet50().eval()
    path = Path(folder) / 'resnet50.onnx'
    x = torch.randn(1, 3, 224, 224)
    torch.onnx.export(model, x, str(path), input_names=['x'], output_names=['y'],
                      opset_version=17, dynamo=False)
    m = model.cuda().half().to(memory_format=torch.channels_last)
    xs = x.cuda().half().to(memory_format=torch.channels_last)
    with torch.no_grad():
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            for _ in range(5):
                m(xs)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            m(xs)
        times = []
        for i in range(330):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            graph.replay()
            e.record()
            e.synchronize()
            if i >= 30:
                times.append(s.elapsed_time(e))
    rows.append(dict(group='model', layer='resnet50 torch fp16 eager+graph', count=1,
                     path='torch', kernel='cudnn', rel_err=None, median_ms=float(np.median(times)),
                     p99_ms=float(np.percentile(times, 99)), tflops=None))
    _print_row(rows[-1])
    return str(path)


def _print_row(r):
    err = f"{r['rel_err']:.1e}" if r['rel_err'] is not None else '-'
    tf = f"{r['tflops']:.2f}" if r['tflops'] else '-'
    extra = f" kernels {r['kernels_median_ms']:.4f}" if 'kernels_median_ms' in r else ''
    print(f"{r['layer'][:24]:24} {r['path']:5} {r['kernel'][:30]:30} {err:>8} "
          f"{r['median_ms']:8.4f} {r['p99_ms']:8.4f} {tf:>7}{extra}", flush=True)


def summary(rows):
    """Per network and path: the sum over its conv layers of count x kernel median (ms)."""
    out = {}
    for r in rows:
        if r['group'] in ('resnet50', 'yolov5s'):
            key = f"{r['group']}/{r['path']}"
            out[key] = out.get(key, 0.0) + r['count'] * r['median_ms']
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True)
    ap.add_argument('--model', action='append', default=[])
    ap.add_argument('--nets', action='store_true', help='ResNet-50 and YOLOv5s layer shapes')
    ap.add_argument('--torch-resnet50', metavar='DIR', help='export + time ResNet-50 there')
    args = ap.parse_args()
    import pycuda.driver as drv
    drv.init()
    rows = []
    bench_layers([(layer, 1) for layer in LAYERS], ('simt', 'wmma', 'mma'), rows, 'test')
    if args.nets:
        bench_layers(RESNET50, ('wmma', 'mma'), rows, 'resnet50')
        bench_layers(YOLOV5S, ('wmma', 'mma'), rows, 'yolov5s')
    for model in args.model:
        bench_model(model, rows)
    if args.torch_resnet50:
        bench_model(torch_resnet50(args.torch_resnet50, rows), rows, ('wmma', 'mma'))
    result = dict(gpu_facts(drv), **versions('pycuda', 'numpy'), conv_sum_ms=summary(rows),
                  rows=rows)
    write_json(args.out, result)
    for key, ms in result['conv_sum_ms'].items():
        print(f'sum of conv kernel medians {key}: {ms:.3f} ms')


if __name__ == '__main__':
    main()
