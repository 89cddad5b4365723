"""The launches of one forward pass, for Nsight Compute: ours (the engine's kernel launches,
replayed from a CUDA graph) or torch's (FP16 eager), with the profiler range opened around the
measured passes only, so that build-time probes and warm-up stay out of the report.

    ncu --clock-control none --profile-from-start off --csv --page details \
        --section SpeedOfLight --section WarpStateStats \
        python3 bench/ncu_launches.py ours --onnx bert_tiny.onnx --passes 2
    ... python3 bench/ncu_launches.py torch --model bert_tiny --passes 2
"""
import argparse
import ctypes
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def ours(onnx_path, passes, warmup):
    from bench_ours import kernels_graph, random_feeds
    from tx2_infer_core.engine import Engine
    engine = Engine.build(onnx_path, backend='cuda', precision='fp16')
    engine.run(random_feeds(engine))
    be = engine.backend
    graph = kernels_graph(be)
    libcuda = ctypes.CDLL('libcuda.so.1')
    with be.ctx:
        for _ in range(warmup):
            graph.launch()
        be.stream.synchronize()
        libcuda.cuProfilerStart()
        for _ in range(passes):
            graph.launch()
        be.stream.synchronize()
        libcuda.cuProfilerStop()
    for i, (launch, bound) in enumerate(zip(be.launches, be.bound)):
        print(f'launch {i:3d} {launch.kernel:28s} grid {tuple(launch.grid)} '
              f'block {tuple(bound[3])} node {launch.node}')
    graph.close()
    engine.close()


def torch_eager(name, passes, warmup):
    import torch
    import torch_models
    model, shape = torch_models.make(name)[:2]
    model = model.half().cuda().eval()
    x = torch.rand(shape, device='cuda').half()
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
        for _ in range(passes):
            model(x)
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('who', choices=('ours', 'torch'))
    p.add_argument('--onnx', help='model for ours')
    p.add_argument('--model', default='bert_tiny', help='torch_models name for torch')
    p.add_argument('--passes', type=int, default=2)
    p.add_argument('--warmup', type=int, default=20)
    a = p.parse_args()
    if a.who == 'ours':
        ours(a.onnx, a.passes, a.warmup)
    else:
        torch_eager(a.model, a.passes, a.warmup)


if __name__ == '__main__':
    main()
