"""Launch-shape knobs for few-CTA transformer launches (cuda/launch_knobs.py: attention CTAs of
1-2 warps, split-K in a cluster for linears and linear norms) and the MaxPool in the conv
epilogue (cuda/pool_epilogue.py: pool_off, pool_unsplit) against today's launches, same
models, same process, rounds interleaved: kernels-only graph replay time (median and p99),
launches, a per-launch profile of the BERT-shaped launches, outputs compared with the default.

    python bench/bench_launch_knobs.py --models bert_tiny --zoo-packed .knobs/zoo \
        --out $OUT/launch_knobs_h200.json
"""
import os
import sys
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
import ab_models  # noqa: E402
from bench_ours import profile, random_feeds  # noqa: E402

ATTN, SPLIT = 'TX2_INFER_ATTN_WARPS', 'TX2_INFER_LINEAR_SPLITK'
POOL = 'TX2_INFER_POOL_EPILOGUE'  # cuda/pool_epilogue.py
SE = 'TX2_INFER_SQUEEZE_EXCITE'  # cuda/squeeze_excite.py
KNOBS = (ATTN, SPLIT, POOL, SE)
VARIANTS = {'default': {}, 'off': {SPLIT: 'off'}, 'attn2': {ATTN: '2'}, 'attn1': {ATTN: '1'},
            'pool_off': {POOL: 'off'}, 'pool_unsplit': {POOL: 'unsplit'}, 'se_off': {SE: 'off'},
            'split': {SPLIT: 'linear'}, 'split_norm': {SPLIT: 'linear+norm'},
            'fused_few': {SPLIT: 'fused_few'},
            'attn2_split_norm': {ATTN: '2', SPLIT: 'linear+norm'},
            'attn1_split_norm': {ATTN: '1', SPLIT: 'linear+norm'}}
ZOO_MODELS = ('vit-focus',)


@contextmanager
def knobs(env):
    """Only ``env``'s knobs set (they are read when a backend lowers its graph), then the
    environment as it was."""
    saved = {name: os.environ.pop(name, None) for name in {*KNOBS, *env}}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


SHAPES = {}  # model path -> input shape, for the zoo models with dynamic inputs


def build(model, weights, env):
    """A cuda FP16 engine of ``model`` lowered with ``env``'s knobs."""
    from tx2_infer_core.engine import Engine
    with knobs(env):
        return Engine.build(str(model), SHAPES.get(str(model)), backend='cuda',
                            precision='fp16', weights_path=weights and str(weights))


def launch_ms(engine) -> list:
    """[kernel, grid, median ms] of every launch (graph event nodes)."""
    rows = sorted(profile(engine, replays=30, top=10 ** 6)['top'], key=lambda r: r['index'])
    return [[r['kernel'], r['grid'], round(r['ms'], 5)] for r in rows]


def measure(model, weights, names, rounds, runs, variants=None) -> dict:
    """Every variant (of ``variants``, {name: env}, else VARIANTS) built once; ``rounds``
    interleaved timings; outputs vs the default's."""
    variants = variants or VARIANTS
    engines = {name: build(model, weights, variants[name]) for name in names}
    try:
        feeds = random_feeds(engines['default'])
        outs = {name: e.run(feeds) for name, e in engines.items()}
        times = ab_models.interleaved_times(engines, rounds, runs)
        return dict(
            launches={n: len(e.backend.launches) for n, e in engines.items()},
            max_rel_vs_default={n: max(ab_models.max_rel(outs[n][k], outs['default'][k])
                                       for k in outs['default']) for n in names},
            **{f'{n}_median_ms': ab_models.median(times[n]['median_ms']) for n in names},
            **{f'{n}_p99_ms': ab_models.median(times[n]['p99_ms']) for n in names},
            rounds_ms={n: times[n] for n in names},
            per_launch_ms={n: launch_ms(e) for n, e in engines.items()})
    finally:
        for engine in engines.values():
            engine.close()


def zoo_models(folder, work, names=ZOO_MODELS) -> dict:
    """{name: (onnx path, None)} of ``names`` (zoo models): from a zoo pack (``zoo_data.py
    pack-names``) where given, else from the asset cache (fetched where missing)."""
    import zoo_data
    if folder:
        found = zoo_data.unpack(folder, work)
        found = {n: found[n] for n in names if n in found}
    else:
        found = {n: (zoo_data.model_files(zoo_data.BY_NAME[n])[0], None) for n in names}
    SHAPES.update({str(path): zoo_data.BY_NAME[n].input_shape for n, (path, _) in found.items()})
    return found


def main():
    args = ab_models.arguments(__doc__.splitlines()[0], deadline_s=400, extra=dict(
        variants=','.join(VARIANTS), zoo_packed='', zoo_models=','.join(ZOO_MODELS)),
        models='bert_tiny')
    names = ['default'] + [n for n in args.variants.split(',') if n and n != 'default']
    unknown = set(names) - set(VARIANTS)
    if unknown:
        sys.exit(f'unknown variants {sorted(unknown)}; known: {", ".join(VARIANTS)}')
    extra = zoo_models(args.zoo_packed, Path(args.onnx_dir) / 'zoo',
                       [n for n in args.zoo_models.split(',') if n])
    doc = ab_models.run(__doc__.splitlines()[0],
                        lambda m, w: measure(m, w, names, args.rounds, args.runs), args,
                        extra_models=extra)
    for model, r in doc['results'].items():
        if 'error' not in r:
            print(model, '  '.join(f"{n} {r[f'{n}_median_ms']:.4f}/{r[f'{n}_p99_ms']:.4f} ms "
                                   f"({r['launches'][n]})" for n in names))


if __name__ == '__main__':
    main()
