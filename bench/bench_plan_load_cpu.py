"""The CPU side of a plan load, old form against new in the same run (interleaved blocks):
the plan checksum over 100 MB (one sha256, plan format 1, against ``plan_file.checksum``'s
chunks on threads, format 2) and a 512x512x3x3 conv weight cast to FP16 in OHWI order (an FP32
transposed copy then a cast, against one ``astype(order='C')``; the same bytes checked).

    python bench/bench_plan_load_cpu.py [--runs 15] [--out bench/results/plan_load_cpu.json]
"""
import argparse
import hashlib
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import cpu_name, stats, versions, wall_times, write_json  # noqa: E402
from tx2_infer_core.plan_file import checksum  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--runs', type=int, default=15)
    ap.add_argument('--out', default='bench/results/plan_load_cpu.json')
    args = ap.parse_args()
    body = np.random.default_rng(0).integers(0, 256, 100 << 20, np.uint8).tobytes()
    w = np.random.default_rng(1).standard_normal((512, 512, 3, 3)).astype(np.float32)
    cases = {
        'checksum_sha256_100mb': lambda: hashlib.sha256(memoryview(body)).digest(),
        'checksum_chunked_100mb': lambda: checksum(memoryview(body)),
        'cast_copy_then_fp16': lambda: np.ascontiguousarray(w.transpose(0, 2, 3, 1)).astype(
            np.float16),
        'cast_fp16_order_c': lambda: w.transpose(0, 2, 3, 1).astype(np.float16, order='C'),
    }
    assert np.array_equal(cases['cast_copy_then_fp16'](), cases['cast_fp16_order_c']())
    times = {name: [] for name in cases}
    for _ in range(3):  # interleaved blocks
        for name, fn in cases.items():
            times[name] += wall_times(fn, args.runs, warmup=1)
    doc = dict(what=__doc__.splitlines()[0], cpu=cpu_name(), cores=os.cpu_count(),
               versions=versions('numpy'), results={n: stats(t) for n, t in times.items()})
    write_json(args.out, doc)
    for name, r in doc['results'].items():
        print(f"{name:26s} {r['median_ms']:8.2f} ms (p99 {r['p99_ms']:.2f})")


if __name__ == '__main__':
    main()
