"""Two trees of kernels side by side: ``--old-kernels`` (a folder of kernels/*.cu and *.cuh,
e.g. ``git archive COMMIT kernels``) against this checkout's, the same lowering, models and
process, rounds interleaved: kernels-only graph replay time (median and p99), launches, the
per-launch profile of both, outputs compared with the old tree's.

    python bench/bench_kernels_ab.py --old-kernels /tmp/old/kernels --out $OUT/ab.json
    ... --trees ln2=.ln2/kernels,att=.att/kernels     # more trees in the same rounds

(Trees must differ in kernels only: the lowering is this checkout's.)
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import ab_models  # noqa: E402
import bench_launch_knobs  # noqa: E402
from tx2_infer_core.cuda.compile import KERNEL_DIR_ENV  # noqa: E402


def main():
    args = ab_models.arguments(__doc__.splitlines()[0], deadline_s=400,
                               extra=dict(old_kernels='', trees=''))
    trees = dict(t.split('=', 1) for t in args.trees.split(',') if t)
    for folder in [args.old_kernels, *trees.values()]:
        if not Path(folder, 'conv_mma.cu').is_file():
            sys.exit(f'{folder!r} holds no kernels/*.cu')
    # 'default' is the old tree: bench_launch_knobs compares every variant with 'default'
    variants = {'default': {KERNEL_DIR_ENV: str(Path(args.old_kernels).resolve())}, 'new': {},
                **{name: {KERNEL_DIR_ENV: str(Path(folder).resolve())}
                   for name, folder in trees.items()}}
    names = list(variants)
    doc = ab_models.run(__doc__.splitlines()[0],
                        lambda m, w: bench_launch_knobs.measure(m, w, names, args.rounds,
                                                                args.runs, variants), args)
    for model, r in doc['results'].items():
        if 'error' not in r:
            old = r['default_median_ms']
            print(f'{model}: old {old:.4f} ms ' + ', '.join(
                f"{n} {r[f'{n}_median_ms']:.4f} ms ({r[f'{n}_median_ms'] / old:.3f}x, max rel "
                f"vs old {r['max_rel_vs_default'][n]:.2e})" for n in names[1:]))


if __name__ == '__main__':
    main()
