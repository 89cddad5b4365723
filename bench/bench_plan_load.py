"""Plan load as a robot boots: a fresh process per load, `Engine.load` of a saved plan on
cuda timed from the call to the engine returned (CUDA context made inside it), and the whole
process start -> engine (imports included). Trees interleaved round by round, so each tree's
code is timed beside the other's (issue 12: plan load under 0.5 s).

    python bench/bench_plan_load.py --model resnet50 --trees main=.,warm=/tmp/warm \
        --rounds 5 --out plan_load_h200.json

The plan is built once (with the first tree) and loaded by every tree; the kernel cache is
shared and warm, as on a robot after its first boot.
"""
import argparse
import compileall
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchlib import cpu_name, stats, versions, write_json  # noqa: E402

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from tx2_infer_core.engine import Engine
t1 = time.perf_counter()
engine = Engine.load(sys.argv[1], backend='cuda')
t2 = time.perf_counter()
engine.close()
print(json.dumps(dict(import_s=t1 - t0, load_s=t2 - t1)))
"""


PROFILE_CHILD = """
import cProfile, pstats, sys
from tx2_infer_core.engine import Engine
profile = cProfile.Profile()
engine = profile.runcall(Engine.load, sys.argv[1], backend='cuda')
engine.close()
pstats.Stats(profile).sort_stats('cumulative').print_stats(40)
"""


def profile_once(tree, plan) -> str:
    """cProfile of one ``Engine.load`` of ``plan`` in a fresh process of ``tree`` (text)."""
    env = tree_env(tree)
    out = subprocess.run([sys.executable, '-c', PROFILE_CHILD, str(plan)], env=env, cwd=tree,
                         capture_output=True, text=True, timeout=120)
    return out.stdout + out.stderr[-2000:]


def tree_env(tree) -> dict:
    """The environment of a child running ``tree``'s code, bytecode caching on (as on an
    installed package, whose modules are compiled at install)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tree)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]))
    env.pop('PYTHONDONTWRITEBYTECODE', None)
    return env


def load_once(tree, plan) -> dict:
    """One fresh process of ``tree`` loading ``plan`` -> its times (+ the process's wall)."""
    env = tree_env(tree)
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, '-c', CHILD, str(plan)], env=env, cwd=tree,
                         capture_output=True, text=True, timeout=120)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise RuntimeError(f'{tree}: {out.stderr[-2000:]}')
    return dict(json.loads(out.stdout.strip().splitlines()[-1]), process_s=wall)


def build_plan(tree, model, plan):
    """Build ``model`` (ONNX path) on cuda FP16 with ``tree``'s code and save it to ``plan``."""
    code = ('import sys; from tx2_infer_core.engine import Engine; '
            "e = Engine.build(sys.argv[1], backend='cuda', precision='fp16'); "
            'e.save(sys.argv[2]); e.close()')
    subprocess.run([sys.executable, '-c', code, str(model), str(plan)], env=tree_env(tree),
                   cwd=tree, check=True, timeout=300)


def summary(rows) -> dict:
    """Per time of the runs ``rows`` ('load_s': seconds): median, p99, min and max in ms,
    under the time's name ('load')."""
    out = {}
    for key in rows[0]:
        ms = [r[key] * 1e3 for r in rows]
        name = key[:-2] if key.endswith('_s') else key
        out[name] = dict(stats(ms, minimum=True), max_ms=max(ms))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', default='resnet50', help='a bench_splitk.export_torch name')
    ap.add_argument('--onnx-dir', default='/tmp/splitk_onnx')
    ap.add_argument('--trees', required=True, help='name=folder,name=folder')
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--profile', help='also write a cProfile of one load (first tree) here')
    ap.add_argument('--out', required=True)
    args = ap.parse_args(argv)
    from bench_splitk import export_torch
    model, _ = export_torch([args.model], args.onnx_dir)[args.model]
    trees = dict(item.split('=', 1) for item in args.trees.split(','))
    plan = Path(tempfile.mkdtemp(prefix='tx2_plan_load_')) / f'{args.model}.tx2plan'
    build_plan(next(iter(trees.values())), model, plan)
    for tree in trees.values():   # compiled as at install; one untimed load each: kernel
        compileall.compile_dir(str(Path(tree, 'tx2_infer_core')), quiet=1)  # and page cache
        load_once(tree, plan)
    if args.profile:
        Path(args.profile).write_text(profile_once(next(iter(trees.values())), plan))
    runs = {name: [] for name in trees}
    for r in range(args.rounds):
        for name in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
            runs[name].append(load_once(trees[name], plan))
            print(name, {k: round(v, 3) for k, v in runs[name][-1].items()}, flush=True)
    results = {name: summary(rows) for name, rows in runs.items()}
    gpu = subprocess.run(['nvidia-smi', '--query-gpu=name,driver_version',
                          '--format=csv,noheader'], capture_output=True, text=True).stdout
    doc = dict(what=__doc__.splitlines()[0], model=args.model, plan_bytes=plan.stat().st_size,
               device=gpu.strip(), cpu=cpu_name(), cores=os.cpu_count(),
               versions=versions('numpy', 'pycuda'), rounds=args.rounds, trees=trees,
               results=results, runs=runs, when=time.strftime('%Y-%m-%d %H:%M:%S'))
    write_json(args.out, doc, indent=1)
    for name, row in results.items():
        print(name, {k: round(v['median_ms'], 1) for k, v in row.items()})


if __name__ == '__main__':
    main()
