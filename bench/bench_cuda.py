"""Issue 5's side-by-side benchmark, made a race by issue 12 (item 4): our FP16 engine against
PyTorch FP16 (eager, eager + CUDA graph, torch.compile reduce-overhead and max-autotune),
batch 1, on ResNet-50 224, YOLOv5s 640 and BERT-tiny (exported from PyTorch to ONNX here,
opset 17, FP32, then built by our engine), plus YOLOv8 640 and YOLOv3-tiny 416 (ours only).
Also our build time (cold and warm kernel cache, plan load) and the pooled arena vs
per-tensor allocation.

    python bench/bench_cuda.py --out-dir $OUT --data .benchdata --photos P --tag h200 \
        --phases ours,fast --repeats 3
    python bench/bench_cuda.py ... --phases ours,ma --ma-cap 400 --torch-models resnet50

Steps, each skipped when the deadline (``--deadline-s``, the call's limit) is near:
race inputs (a real photo letterboxed per CNN, a fixed token sequence for BERT-tiny) ->
export and torch eager FP32 reference outputs (child) -> our build per model (build times,
per-launch profile, allocation, our outputs on the race input) -> ``--repeats`` rounds, each
a fresh process per contender, interleaved (round 1: ours, eager + graph + reduce-overhead
per model; round 2: ...) -> max-autotune (``ma``) with its own cap: repeated only when the
first run finished, else ``finished: false`` with how far it got. Per contender the JSON has
the median of the rounds' medians and their spread; ``accuracy`` compares every output with
torch FP32 and ours with each torch FP16 contender (``race.compare``). The JSON files and the
markdown report are rewritten after every step, so a killed run still leaves its results.
"""
import argparse
import hashlib
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import cuda_report  # noqa: E402
import race  # noqa: E402
from benchlib import command_output, gpu_facts, write_json  # noqa: E402
from race_run import rounds, run_child, model_accuracy  # noqa: E402

TORCH_MODELS = ('bert_tiny', 'resnet50', 'yolov5s')
REAL_MODELS = ('yolov8', 'yolov3_tiny')
ratios = race.ratios


class Clock:
    """Seconds left before the run's deadline."""

    def __init__(self, seconds):
        self.start = time.monotonic()
        self.end = self.start + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def sources_digest() -> str:
    """sha256 (12 hex) of the kernels and the engine's Python sources that were measured."""
    h = hashlib.sha256()
    files = sorted((ROOT / 'kernels').glob('*')) + sorted((ROOT / 'tx2_infer_core').rglob('*.py'))
    for path in files:
        h.update(str(path.relative_to(ROOT)).encode() + b'\0' + path.read_bytes())
    return h.hexdigest()[:12]


def device_meta(args) -> dict:
    """Device, driver, toolchain and source identity for every JSON file (``device_error``
    where pycuda or the GPU is missing: the run goes on and records each step's failure)."""
    meta = dict(nvcc=command_output(['nvcc', '--version']).splitlines()[-1:],
                python=platform.python_version(), commit=args.commit, dirty=args.dirty,
                sources=sources_digest(), runs=args.runs, warmup=args.warmup,
                repeats=args.repeats, conv_path=args.conv_path, notes=[])
    try:
        import pycuda
        import pycuda.driver as drv
        meta.update(gpu_facts(drv), pycuda=getattr(pycuda, 'VERSION_TEXT', '?'))
    except Exception as exc:
        meta['device_error'] = repr(exc)[:300]
    return meta


class Results:
    """The three result documents, written together after every step."""

    def __init__(self, args, meta):
        self.args, self.meta = args, meta
        self.latency = dict(meta=meta, models={})
        self.build = dict(meta=meta, models={})
        self.alloc = dict(meta=meta, models={})

    def model(self, name) -> dict:
        return self.latency['models'].setdefault(name, dict(contenders={}))

    def write(self):
        out, tag = Path(self.args.out_dir), self.args.tag
        out.mkdir(parents=True, exist_ok=True)
        for stem, doc in (('cuda_vs_torch', self.latency), ('cuda_build_time', self.build),
                          ('cuda_alloc', self.alloc)):
            write_json(out / f'{stem}_{tag}.json', doc)
        (out / f'cuda_vs_torch_{tag}.md').write_text(
            cuda_report.markdown(self.latency, self.build, self.alloc))


def export_models(args, clock, work, res) -> dict:
    """Export the PyTorch models to ONNX in a child, with their FP32 reference outputs on the
    race inputs; {name: (onnx path, None)}."""
    folder = work / 'onnx'
    cmd = [sys.executable, str(HERE / 'bench_torch.py'), 'export', '--dir', str(folder),
           '--models', ','.join(args.torch_models), '--inputs', str(work / 'inputs')]
    status = run_child(cmd, min(args.export_cap, clock.left()), args.torch_log)
    info = {}
    if (folder / 'export.json').is_file():
        info = json.loads((folder / 'export.json').read_text())
    for name in args.torch_models:
        res.model(name)['onnx'] = info.get(name, dict(error=f'export {status}'))
    return {n: (folder / f'{n}.onnx', None) for n in info}


def clean_work(work):
    """Remove a former run's children's JSON, outputs and export list from ``work``."""
    for pattern in ('*-r[0-9]*.json', 'out-*.npz', 'ours-*.npz', 'onnx/export.json',
                    'onnx/*.fp32.npz'):
        for path in work.glob(pattern):
            path.unlink()


def make_inputs(args, work, res):
    """The race inputs, ``work/inputs/<model>.npz`` (key ``x``), one per PyTorch model."""
    folder = work / 'inputs'
    folder.mkdir(parents=True, exist_ok=True)
    for name in args.torch_models:
        try:
            x = race.race_input(name, args.photos)
        except Exception as exc:
            res.model(name)['input'] = dict(error=repr(exc)[:300])
            continue
        np.savez(folder / f'{name}.npz', x=x)
        source = race.PHOTO_INPUTS.get(name, ('fixed token sequence, seed 0',))[0]
        res.model(name)['input'] = dict(source=source, shape=list(x.shape))


def ours(name, path, weights, args, work, res):
    """Build times, profile, allocation and outputs on the race input of our engine on one
    model; its plan is saved for the timed rounds (``ours_child.py``)."""
    import bench_alloc
    import bench_ours
    entry = res.model(name)
    try:
        engine, build = bench_ours.build_and_load(path, work, name, args.conv_path, weights)
    except Exception as exc:
        traceback.print_exc()
        entry['contenders']['ours'] = res.build['models'][name] = dict(error=repr(exc)[:500])
        return
    res.build['models'][name] = build
    try:
        entry['input_shape'] = [list(v.shape) for v in engine.input_specs]
        x_path = work / 'inputs' / f'{name}.npz'
        if x_path.is_file():
            x = np.load(x_path)['x']
            outs = engine.run({engine.input_specs[0].name: x})
            race.save_outputs(work / f'ours-{name}.npz',
                              [outs[v.name] for v in engine.output_specs])
        if 'profile' in args.extras:
            entry['profile'] = bench_ours.profile(engine)
        if 'alloc' in args.extras:
            with engine.backend.ctx:
                res.alloc['models'][name] = bench_alloc.bench_alloc(engine.graph, args.runs)
    except Exception as exc:
        traceback.print_exc()
        entry['build_error'] = repr(exc)[:500]
    finally:
        engine.close()
    print(f'{name} ours built: {build}', flush=True)


def names(text) -> list:
    """A comma-separated list ('' is none)."""
    return [n for n in text.split(',') if n]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out-dir', default=str(ROOT / 'bench' / 'results'))
    ap.add_argument('--tag', default='h100', help='suffix of the result files')
    ap.add_argument('--data', default=str(ROOT / '.benchdata'),
                    help='packed real models (bench/devdata.py pack)')
    ap.add_argument('--work', default='/tmp/tx2_bench_cuda')
    ap.add_argument('--torch-models', type=names, default=list(TORCH_MODELS))
    ap.add_argument('--real-models', type=names, default=list(REAL_MODELS))
    ap.add_argument('--conv-path', default='tc', choices=['tc', 'simt'])
    ap.add_argument('--runs', type=int, default=300)
    ap.add_argument('--warmup', type=int, default=50)
    ap.add_argument('--deadline-s', type=float, default=560)
    ap.add_argument('--export-cap', type=float, default=120)
    ap.add_argument('--fast-cap', type=float, default=150,
                    help='cap of one model\'s eager + CUDA graph + reduce-overhead child')
    ap.add_argument('--ma-cap', type=float, default=240, help='cap of one max-autotune child')
    ap.add_argument('--ours-cap', type=float, default=90, help='cap of one round of ours')
    ap.add_argument('--phases', type=names, default=['ours', 'fast'],
                    help="ours, fast (eager, CUDA graph, reduce-overhead), ma (max-autotune)")
    ap.add_argument('--repeats', type=int, default=3, help='rounds per contender')
    ap.add_argument('--photos', default=str(Path.home() / '.cache/tx2_infer/assets'),
                    help='folder of the race photos (dog.jpg, bus.jpg)')
    ap.add_argument('--extras', type=names, default=['profile', 'alloc'],
                    help='our extra measurements: profile, alloc (empty: none)')
    ap.add_argument('--commit', default='unknown')
    ap.add_argument('--dirty', default='', help='uncommitted paths measured (from git here)')
    args = ap.parse_args(argv)
    args.torch_log = Path(args.out_dir) / f'bench_torch_{args.tag}.log'
    return args


def summary(res) -> str:
    """A short table for the end of the log."""
    lines = [f"{'model':12} {'contender':18} {'median':>8} {'p99':>8}  other"]
    for name, m in res.latency['models'].items():
        for c, v in m.get('contenders', {}).items():
            if 'median_ms' in v:
                extra = f"compile {v['compile_s']:.0f} s" if 'compile_s' in v else ''
                lines.append(f"{name:12} {c:18} {v['median_ms']:8.3f} {v['p99_ms']:8.3f}  "
                             f'{extra}')
            else:
                lines.append(f'{name:12} {c:18} {str(v)[:70]}')
        if m.get('ratios'):
            lines.append(f"{name:12} ratios {json.dumps(m['ratios'])}")
    return '\n'.join(lines)


def collect_models(args, clock, work, res) -> dict:
    """{name: (model path, Darknet weights or None)}: the exported and the real models."""
    models = export_models(args, clock, work, res)
    if 'ours' not in args.phases:
        return models
    from devdata import unpack_all
    real = unpack_all(args.data, work)
    for name in args.real_models:
        if name in real:
            path = real[name]
            models[name] = (path, path.with_suffix('.weights') if path.suffix == '.cfg'
                            else None)
        else:
            res.model(name)['contenders']['ours'] = dict(error=f'no packed model in {args.data}')
    return models


def main(argv=None):
    args = parse_args(argv)
    clock = Clock(args.deadline_s)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    clean_work(work)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    res = Results(args, device_meta(args))
    make_inputs(args, work, res)
    models = collect_models(args, clock, work, res)
    print(f'[{clock.elapsed():.0f} s] inputs and export: {sorted(models)}', flush=True)
    res.write()
    if 'ours' in args.phases:
        for name, (path, weights) in models.items():
            if clock.left() < 30:
                res.meta['notes'].append(f'{name}: ours skipped, out of call time')
                continue
            ours(name, path, weights, args, work, res)
            print(f'[{clock.elapsed():.0f} s] {name}: ours built', flush=True)
            res.write()
    names = list(args.torch_models) + [n for n in args.real_models if n in models]
    rounds(args, clock, work, res, names)
    for name in args.torch_models:
        res.model(name)['accuracy'] = model_accuracy(name, work)
    res.meta['notes'] += [f'{n}: no PyTorch definition, ours only' for n in REAL_MODELS
                          if n in models]
    res.write()
    print(summary(res))


if __name__ == '__main__':
    main()
