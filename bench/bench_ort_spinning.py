"""ONNX Runtime's intra-op threads spinning or sleeping between runs (the ort backend's
``spinning``), as a robot runs it: one frame every ``--period`` ms (a camera), the default
model (YOLOv3-tiny, real weights) at ``--size``. Per setting, interleaved rounds in one
process: run latency (median, p99) and the CPU the process burns per frame, inference and the
idle time until the next frame together (``time.process_time`` over the loop), as a share of
one core.

    python bench/bench_ort_spinning.py [--frames 150] [--rounds 3] [--period 33]
        [--out bench/results/ort_spinning_cpu.json]
"""
import argparse
import time
from pathlib import Path

import numpy as np

from benchlib import cpu_name, stats, versions, write_json
from tx2_infer_core import assets
from tx2_infer_core.backends.ort_backend import OrtBackend
from tx2_infer_core.engine import Engine


def one_round(backend, x, frames, period_s) -> tuple:
    """(latencies in ms, CPU seconds per frame) of ``frames`` runs spaced ``period_s``."""
    name = backend.session.get_inputs()[0].name
    for _ in range(5):
        backend.run({name: x})
    times, cpu0, wall0 = [], time.process_time(), time.perf_counter()
    for _ in range(frames):
        t0 = time.perf_counter()
        backend.run({name: x})
        times.append((time.perf_counter() - t0) * 1e3)
        time.sleep(max(0.0, period_s - (time.perf_counter() - t0)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return times, cpu / frames, cpu / wall


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=150)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--period', type=float, default=33.0, help='ms between frames')
    parser.add_argument('--size', type=int, default=416)
    parser.add_argument('--out', default=str(Path(__file__).parent / 'results' /
                                             'ort_spinning_cpu.json'))
    args = parser.parse_args()
    cfg, weights, _ = assets.yolov3_tiny()
    engine = Engine.build(str(cfg), input_shape=(1, 3, args.size, args.size), backend='numpy')
    x = np.random.default_rng(0).random((1, 3, args.size, args.size), np.float32)
    backends = {}
    for spinning in (True, False):
        backends[spinning] = OrtBackend(spinning=spinning)
        backends[spinning].prepare(engine.graph, engine.memory_plan)
    engine.close()
    got = {s: {'ms': [], 'cpu_s_per_frame': [], 'cores_busy': []} for s in backends}
    for _ in range(args.rounds):
        for spinning, backend in backends.items():
            times, per_frame, busy = one_round(backend, x, args.frames, args.period / 1e3)
            got[spinning]['ms'] += times
            got[spinning]['cpu_s_per_frame'].append(round(per_frame, 5))
            got[spinning]['cores_busy'].append(round(busy, 3))
    result = {'what': __doc__.split('\n\n')[0].replace('\n', ' '), 'cpu': cpu_name(),
              'threads': backends[True].threads, 'period_ms': args.period,
              'model': f'yolov3-tiny 1x3x{args.size}x{args.size}', 'rounds': args.rounds,
              'versions': versions('numpy', 'onnxruntime'),
              'results': {('spinning' if s else 'sleeping'): dict(
                  stats(v['ms']), cpu_s_per_frame=v['cpu_s_per_frame'],
                  cores_busy=v['cores_busy']) for s, v in got.items()}}
    write_json(args.out, result, indent=1)
    for name, r in result['results'].items():
        print(f"{name}: median {r['median_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
              f"cores busy {r['cores_busy']}")


if __name__ == '__main__':
    main()
