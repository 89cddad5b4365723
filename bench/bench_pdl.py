"""Programmatic dependent launches (cuda/pdl.py) against plain launches, same models, same
process, rounds interleaved: kernels-only graph replay time and the outputs compared.

    python bench/bench_pdl.py --onnx-dir /tmp/onnx --assets /tmp/tx2cache/assets \
        --out $OUT/pdl_h200.json
"""
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import ab_models  # noqa: E402
from bench_ours import random_feeds  # noqa: E402


def build(model, weights, use_pdl):
    from tx2_infer_core.engine import Engine
    return Engine.build(str(model), backend='cuda', precision='fp16',
                        weights_path=weights and str(weights),
                        backend_options=dict(pdl=use_pdl))


def measure(model, weights, rounds, runs) -> dict:
    """Both engines built once; ``rounds`` interleaved timings of each; outputs compared."""
    engines = {use: build(model, weights, use) for use in (False, True)}
    try:
        feeds = random_feeds(engines[False])
        outs = {use: e.run(feeds) for use, e in engines.items()}
        same = all(np.array_equal(outs[False][k], outs[True][k]) for k in outs[False])
        times = ab_models.interleaved_times(engines, rounds, runs)
        pdl_launches = sum(type(fn).__name__ == 'PdlKernel'
                           for fn, _, _, _ in engines[True].backend.bound)
        plain, pdl = times[False]['median_ms'], times[True]['median_ms']
        return dict(launches=len(engines[True].backend.bound), pdl_launches=pdl_launches,
                    same_bits=bool(same), plain_ms=plain, pdl_ms=pdl,
                    plain_p99_ms=times[False]['p99_ms'], pdl_p99_ms=times[True]['p99_ms'],
                    plain_median_ms=ab_models.median(plain),
                    pdl_median_ms=ab_models.median(pdl))
    finally:
        for engine in engines.values():
            engine.close()


def main():
    args = ab_models.arguments(__doc__.splitlines()[0], deadline_s=300)
    doc = ab_models.run(__doc__.splitlines()[0],
                        lambda m, w: measure(m, w, args.rounds, args.runs), args)
    for name, r in doc['results'].items():
        if 'error' not in r:
            print(f"{name}: plain {r['plain_median_ms']:.3f} ms, pdl {r['pdl_median_ms']:.3f} "
                  f"ms ({r['pdl_launches']} of {r['launches']} launches), same bits "
                  f"{r['same_bits']}")


if __name__ == '__main__':
    main()
