"""Pooled arena vs per-tensor device allocation for one model's activations (issue 5).

The tensors are the FP16 activations of the model's optimised graph (the sizes the CUDA
backend's arena holds), allocated at their producer and freed after their last reader, in
node order, once per frame. Contenders, host time per frame (the allocation calls are host
calls; nothing else runs):

- ``arena``: what the engine does per frame: nothing to allocate; the per-frame cost counted is
  resolving every tensor's address (base + planned offset). One cuMemAlloc at build.
- ``cuMemAlloc/cuMemFree``: one synchronous driver allocation and free per tensor per frame.
- ``cuMemAllocAsync/cuMemFreeAsync``: the driver's stream-ordered pool, per tensor per frame.
- ``torch caching allocator``: ``torch.empty`` per tensor (what PyTorch eager does), if torch
  imports.

    python bench/bench_alloc.py MODEL.onnx [--frames 300] [--out F.json]
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchlib import stats, write_json
from tx2_infer_core.cuda.layout import fp16_graph
from tx2_infer_core.planner import align, lifetimes, plan_memory


def schedule(graph, alignment=256):
    """(sizes, steps): activation byte sizes (FP16, aligned) and, per step, the indices to
    allocate then the indices to free, in node order."""
    g = fp16_graph(graph)
    life = lifetimes(g)
    names = sorted(life, key=lambda n: (life[n][0], n))
    sizes = [align(np.prod(g.values[n].shape, dtype=np.int64) * 2, alignment) for n in names]
    last = max(end for _, end in life.values())
    steps = [([], []) for _ in range(last + 1)]
    for i, n in enumerate(names):
        steps[life[n][0]][0].append(i)
        steps[life[n][1]][1].append(i)
    return [max(int(s), alignment) for s in sizes], steps


def frame_times(alloc, free, sizes, steps, frames, warmup=20):
    """Host milliseconds of each frame of per-tensor ``alloc(size)`` / ``free(handle)``."""
    times = []
    for f in range(warmup + frames):
        t0 = time.perf_counter()
        live = {}
        for born, dead in steps:
            for i in born:
                live[i] = alloc(sizes[i])
            for i in dead:
                free(live.pop(i))
        if f >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def _arena(drv, graph, sizes, frames):
    plan = plan_memory(fp16_graph(graph), concat_placement=False)
    t0 = time.perf_counter()
    arena = drv.mem_alloc(max(plan.arena_bytes, 1))
    once_ms = (time.perf_counter() - t0) * 1e3
    base, offsets = int(arena), list(plan.offsets.values())
    times = []
    for _ in range(frames):
        t0 = time.perf_counter()
        _ = [base + off for off in offsets]
        times.append((time.perf_counter() - t0) * 1e3)
    arena.free()
    return dict(stats(times), build_alloc_ms=once_ms, device_allocations_per_frame=0,
                arena_bytes=int(plan.arena_bytes))


def _async_pool(sizes, steps, frames):
    from tx2_infer_core.cuda.runtime import checked, driver_api
    cu = driver_api()
    stream = checked(cu.cuStreamCreate(0), 'cuStreamCreate')
    times = frame_times(lambda n: checked(cu.cuMemAllocAsync(n, stream), 'cuMemAllocAsync'),
                        lambda p: checked(cu.cuMemFreeAsync(p, stream), 'cuMemFreeAsync'),
                        sizes, steps, frames)
    checked(cu.cuStreamSynchronize(stream), 'cuStreamSynchronize')
    cu.cuStreamDestroy(stream)
    return stats(times)


def _torch(sizes, steps, frames):
    import torch
    times = frame_times(lambda n: torch.empty(n, dtype=torch.uint8, device='cuda'),
                        lambda t: None, sizes, steps, frames)
    return stats(times)


def bench_alloc(graph, frames=300) -> dict:
    """All contenders on ``graph``'s activations (the caller holds a pushed CUDA context)."""
    import pycuda.driver as drv
    sizes, steps = schedule(graph)
    out = dict(tensors=len(sizes), per_tensor_bytes_total=int(sum(sizes)), frames=frames)
    res = {'arena': _arena(drv, graph, sizes, frames)}
    res['cuMemAlloc/cuMemFree'] = stats(frame_times(drv.mem_alloc, lambda b: b.free(), sizes,
                                                    steps, frames))
    for name, fn in (('cuMemAllocAsync/cuMemFreeAsync', _async_pool),
                     ('torch caching allocator', _torch)):
        try:
            res[name] = fn(sizes, steps, frames)
        except Exception as exc:  # no cuda-bindings or no torch here
            res[name] = dict(error=repr(exc)[:300])
    out['contenders'] = res
    per_tensor = res['cuMemAlloc/cuMemFree']['median_ms']
    out['arena_vs_cuMemAlloc_latency'] = res['arena']['median_ms'] / per_tensor
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('model')
    ap.add_argument('--frames', type=int, default=300)
    ap.add_argument('--out')
    args = ap.parse_args()
    from tx2_infer_core.cuda.runtime import DeviceContext
    from tx2_infer_core.engine import import_model
    from tx2_infer_core.passes import optimize
    graph, _ = optimize(import_model(args.model))
    ctx = DeviceContext(0)
    try:
        result = dict(model=Path(args.model).name, device=ctx.name,
                      **bench_alloc(graph, args.frames))
    finally:
        ctx.drv.Context.pop()
        ctx.close()
    print(json.dumps(result, indent=1))
    if args.out:
        write_json(args.out, result)


if __name__ == '__main__':
    main()
