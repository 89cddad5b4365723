"""Cold kernel-compile time of a model's CUDA build, without a GPU.

Each model is imported and optimised as ``Engine.build`` does for the cuda backend, lowered
for ``--arch`` (sm_90: the H200's), and every kernel module its build compiles is compiled
with nvcc, uncached, one at a time, and timed. Reported per model: the seconds of each module
(median of ``--repeats``), their sum, and the critical path with ``--workers`` compilers (the
issue-12 goal's 4, as on a Jetson's CPU): a longest-processing-time-first schedule of the
measured times.

    nice -n 19 python bench/bench_compile.py --out bench/results/compile_time_cpu.json \\
        --tree before=/tmp/tree_before --tree after=.

Each ``--tree LABEL=PATH`` is a copy of the repository (its ``tx2_infer_core`` and ``kernels``)
measured in a child process; the trees alternate within each repeat so that the machine's load
falls on both alike.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import zoo_data

MODELS = ('open-nsfw', 'yolov8-fall', 'yolov3-tiny')  # ResNet-50 class, YOLO with SiLU, Leaky
IO_KERNEL = 'to_arena_f16'  # a graph input's conversion: every build launches it


def optimised_graph(name):
    """The zoo model ``name`` as ``Engine.build`` optimises it for the cuda backend."""
    from tx2_infer_core.engine_build import default_meta, import_model
    from tx2_infer_core.passes import POINTWISE_LEVEL, optimize
    model = zoo_data.BY_NAME[name]
    path, weights = zoo_data.model_files(model)
    graph = import_model(path, model.input_shape, weights)
    default_meta(graph)
    return optimize(graph, POINTWISE_LEVEL)[0]


def build_modules(graph, arch: int, sm_count: int) -> tuple:
    """(modules compiled side by side, modules compiled after them) by ``CudaBackend.prepare``
    for ``graph``: it preloads the launches' modules and, where the frame pipeline applies,
    the pipeline's; the I/O conversions' module, if not among them, compiles on first use."""
    from tx2_infer_core.backends.cuda_backend import PIPELINE_MODULES
    from tx2_infer_core.cuda import pipeline
    from tx2_infer_core.cuda.lower_ops import io_launch
    from tx2_infer_core.cuda.lowering import lower_graph
    lowered = lower_graph(graph, arch, 'tc', sm_count)
    modules = {k.module for k in lowered.launches}
    if pipeline.supports(graph):
        modules |= set(PIPELINE_MODULES)
    io = io_launch(IO_KERNEL, None, None, lowered.slots[graph.inputs[0]]).module
    return sorted(modules), sorted({io} - modules)


def compile_seconds(module: str, arch: int) -> float:
    """Seconds nvcc takes on ``module`` (a kernel file with defines, or a generated source),
    bypassing the cache."""
    from tx2_infer_core.cuda import compile as cc
    t0 = time.perf_counter()
    if module in cc.GENERATED:
        cc.nvcc_compile(module, arch, {}, cc.GENERATED[module])
    else:
        name, defines = cc.split_module(module)
        cc.nvcc_compile(name, arch, defines)
    return time.perf_counter() - t0


def critical_path(seconds, workers: int) -> float:
    """The makespan of ``seconds`` on ``workers`` compilers, longest first to the least
    loaded (what a thread pool of that size reaches at best with these modules)."""
    loads = [0.0] * max(1, workers)
    for s in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += s
    return max(loads)


def measure(models, arch: int, sm_count: int) -> dict:
    """{model: {module: seconds}} of one repeat in this process's tree."""
    graphs = {name: build_modules(optimised_graph(name), arch, sm_count) for name in models}
    unique = sorted({m for both in graphs.values() for modules in both for m in modules})
    seconds = {m: compile_seconds(m, arch) for m in unique}  # shared modules timed once
    return {name: [{m: seconds[m] for m in modules} for modules in both]
            for name, both in graphs.items()}


def measure_in_tree(tree: Path, args) -> dict:
    """One repeat of ``measure`` in a child process importing ``tree``'s package and kernels."""
    env = dict(os.environ, PYTHONPATH=f'{tree}{os.pathsep}{Path(__file__).parent}',
               TX2_INFER_KERNEL_DIR=str(tree / 'kernels'))
    cmd = [sys.executable, __file__, '--child', '--arch', str(args.arch),
           '--sm-count', str(args.sm_count), '--models', ','.join(args.models)]
    out = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def summarise(repeats: list, workers: int) -> dict:
    """Per model: the median seconds of each module over the repeats, their sum and the
    critical path: the side-by-side modules on ``workers`` compilers, then the others."""
    out = {}
    for name in repeats[0]:
        side, after = ({m: statistics.median(r[name][i][m] for r in repeats)
                        for m in repeats[0][name][i]} for i in (0, 1))
        out[name] = {'modules_s': side, 'compiled_after_s': after,
                     'sum_s': sum(side.values()) + sum(after.values()),
                     f'critical_path_{workers}_workers_s':
                         critical_path(side.values(), workers) + sum(after.values())}
    return out


def nvcc_version() -> str:
    text = subprocess.run(['nvcc', '--version'], capture_output=True, text=True).stdout
    return text.strip().splitlines()[-1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--models', type=lambda s: s.split(','), default=list(MODELS))
    ap.add_argument('--arch', type=int, default=90)
    ap.add_argument('--sm-count', type=int, default=132)
    ap.add_argument('--workers', type=int, default=4)
    ap.add_argument('--repeats', type=int, default=3)
    ap.add_argument('--tree', action='append', default=[], help='LABEL=PATH (default: .)')
    ap.add_argument('--out', type=Path)
    ap.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.models, args.arch, args.sm_count)))
        return
    trees = dict(t.split('=', 1) for t in args.tree) or {'current': '.'}
    runs = {label: [] for label in trees}
    for i in range(args.repeats):
        for label, path in trees.items():
            runs[label].append(measure_in_tree(Path(path).resolve(), args))
            print(f'repeat {i + 1}/{args.repeats} {label} done', file=sys.stderr, flush=True)
    results = {label: summarise(r, args.workers) for label, r in runs.items()}
    for label, models in results.items():
        for name, r in models.items():
            count = len(r['modules_s']) + len(r['compiled_after_s'])
            print(f'{label:8s} {name:12s} {count:2d} modules  sum '
                  f'{r["sum_s"]:5.1f} s  {args.workers} workers '
                  f'{r[f"critical_path_{args.workers}_workers_s"]:5.1f} s')
    if args.out:
        meta = {'device': f'CPU: {platform.processor() or platform.machine()}, '
                          f'{os.cpu_count()} cores (niced, shared with other jobs)',
                'nvcc': nvcc_version(), 'arch': f'sm_{args.arch}', 'repeats': args.repeats,
                'workers': args.workers, 'trees': trees, 'per_repeat': runs}
        args.out.write_text(json.dumps({'meta': meta, 'results': results}, indent=1) + '\n')


if __name__ == '__main__':
    main()
