"""Split-K summed by a thread-block cluster in the conv launch ('cluster': sm_90, distributed
shared memory) against the two-launch split-K ('launch': conv_splitk_reduce), same models, same
process, rounds interleaved: launches, kernels-only graph replay time, outputs compared (and
the cluster build run twice: its sum order is fixed, so the bits must repeat).

    python bench/bench_splitk_modes.py --assets /tmp/tx2cache/assets --out $OUT/x.json
"""
import os
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import ab_models  # noqa: E402
from bench_ours import random_feeds  # noqa: E402

MODES = ('launch', 'cluster')


def build(model, weights, mode):
    from tx2_infer_core.engine import Engine
    os.environ['TX2_INFER_SPLITK'] = mode   # read when the backend lowers the graph
    return Engine.build(str(model), backend='cuda', precision='fp16',
                        weights_path=weights and str(weights))


def measure(model, weights, rounds, runs) -> dict:
    """Both engines built once; ``rounds`` interleaved timings of each; outputs compared."""
    engines = {mode: build(model, weights, mode) for mode in MODES}
    try:
        feeds = random_feeds(engines['launch'])
        outs = {mode: e.run(feeds) for mode, e in engines.items()}
        again = engines['cluster'].run(feeds)
        times = ab_models.interleaved_times(engines, rounds, runs)
        return dict(
            launches={m: len(e.backend.launches) for m, e in engines.items()},
            max_rel_cluster_vs_launch=max(ab_models.max_rel(outs['cluster'][k], outs['launch'][k])
                                          for k in outs['launch']),
            cluster_repeats_bits=all(np.array_equal(again[k], outs['cluster'][k])
                                     for k in again),
            **{f'{m}_ms': times[m]['median_ms'] for m in MODES},
            **{f'{m}_p99_ms': times[m]['p99_ms'] for m in MODES},
            **{f'{m}_median_ms': ab_models.median(times[m]['median_ms']) for m in MODES})
    finally:
        for engine in engines.values():
            engine.close()


def main():
    args = ab_models.arguments(__doc__.splitlines()[0], deadline_s=240)
    doc = ab_models.run(__doc__.splitlines()[0],
                        lambda m, w: measure(m, w, args.rounds, args.runs), args)
    for name, r in doc['results'].items():
        if 'error' not in r:
            print(f"{name}: launch {r['launch_median_ms']:.3f} ms, cluster "
                  f"{r['cluster_median_ms']:.3f} ms, launches {r['launches']}, max rel "
                  f"{r['max_rel_cluster_vs_launch']:.1e}, bits repeat "
                  f"{r['cluster_repeats_bits']}")


if __name__ == '__main__':
    main()
