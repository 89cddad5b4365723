"""Issue 5's side-by-side benchmark, in one run on the GPU: our FP16 engine against PyTorch FP16
(eager, eager + CUDA graph, torch.compile reduce-overhead and max-autotune), batch 1, on
ResNet-50 224, YOLOv5s 640 and BERT-tiny (exported from PyTorch to ONNX here, opset 17, FP32,
then built by our engine), plus YOLOv8 640 and YOLOv3-tiny 416 (ours only). Also our build
time (cold and warm kernel cache, plan load) and the pooled arena vs per-tensor allocation.

    python bench/bench_cuda.py --out-dir $OUT --data .benchdata --commit HASH --tag h100

Steps, in order, each skipped when the deadline (``--deadline-s``, the call's limit) is near:
export (child) -> ours per model (build times, latency, per-launch profile, allocation) ->
PyTorch per model (one child for eager, CUDA graph and reduce-overhead, one for max-autotune,
each killed at its cap: a capped compile is reported as such). The JSON files and the
markdown report are rewritten after every step, so a killed run still leaves its results.
"""
import argparse
import hashlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import cuda_report  # noqa: E402
from benchlib import command_output, gpu_facts, write_json  # noqa: E402

TORCH_MODELS = ('bert_tiny', 'resnet50', 'yolov5s')
REAL_MODELS = ('yolov8', 'yolov3_tiny')
FAST = ('eager', 'cuda_graph', 'reduce-overhead')


class Clock:
    """Seconds left before the run's deadline."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def run_child(cmd, timeout, log) -> str:
    """Run ``cmd`` in its own process group, its output appended to ``log``: 'ok', 'failed'
    or 'capped' (the group killed at ``timeout``)."""
    with open(log, 'a') as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            return 'ok' if proc.wait(timeout=max(timeout, 1)) == 0 else 'failed'
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return 'capped'


def sources_digest() -> str:
    """sha256 (12 hex) of the kernels and the engine's Python sources that were measured."""
    h = hashlib.sha256()
    files = sorted((ROOT / 'kernels').glob('*')) + sorted((ROOT / 'tx2_infer_core').rglob('*.py'))
    for path in files:
        h.update(str(path.relative_to(ROOT)).encode() + b'\0' + path.read_bytes())
    return h.hexdigest()[:12]


def device_meta(args) -> dict:
    """Device, driver, toolchain and source identity for every JSON file."""
    import pycuda
    import pycuda.driver as drv
    return dict(gpu_facts(drv), pycuda=getattr(pycuda, 'VERSION_TEXT', '?'),
                nvcc=command_output(['nvcc', '--version']).splitlines()[-1:],
                python=platform.python_version(), commit=args.commit, dirty=args.dirty,
                sources=sources_digest(), runs=args.runs, warmup=args.warmup,
                conv_path=args.conv_path, notes=[])


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


def torch_log(args) -> Path:
    """The log of every PyTorch child (inductor's autotuning tables go there)."""
    return Path(args.out_dir) / f'bench_torch_{args.tag}.log'


def export_models(args, clock, work, res) -> dict:
    """Export the PyTorch models to ONNX in a child; {name: (onnx path, None)}."""
    folder = work / 'onnx'
    cmd = [sys.executable, str(HERE / 'bench_torch.py'), 'export', '--dir', str(folder),
           '--models', ','.join(args.torch_models)]
    status = run_child(cmd, min(args.export_cap, clock.left()), torch_log(args))
    info = {}
    if (folder / 'export.json').is_file():
        info = json.loads((folder / 'export.json').read_text())
    for name in args.torch_models:
        res.model(name)['onnx'] = info.get(name, dict(error=f'export {status}'))
    return {n: (folder / f'{n}.onnx', None) for n in info}


def ours(name, path, weights, args, work, res):
    """Build times, latency, profile and allocation of our engine on one model."""
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
        entry['contenders'].update(bench_ours.time_engine(engine, args.runs, args.warmup))
        entry['profile'] = bench_ours.profile(engine)
        with engine.backend.ctx:
            res.alloc['models'][name] = bench_alloc.bench_alloc(engine.graph, args.runs)
    except Exception as exc:
        traceback.print_exc()
        entry['contenders'].setdefault('ours', dict(error=repr(exc)[:500]))
    finally:
        engine.close()
    print(f"{name} ours: {entry['contenders'].get('ours')}\n  build {build}", flush=True)


def pytorch(name, contenders, cap, args, work, res):
    """One child timing ``contenders`` on ``name``; a killed child's unfinished ones are
    reported as capped."""
    out = work / f'torch-{name}-{contenders[0]}.json'
    cmd = [sys.executable, str(HERE / 'bench_torch.py'), 'time', '--model', name,
           '--contenders', ','.join(contenders), '--out', str(out), '--runs', str(args.runs),
           '--warmup', str(args.warmup)]
    status = run_child(cmd, cap, torch_log(args))
    done = json.loads(out.read_text()) if out.is_file() else {}
    res.meta.update({k: v for k, v in (done.get('versions') or {}).items() if k != 'device'})
    entry = res.model(name)['contenders']
    for c in contenders:
        entry[c] = done.get('contenders', {}).get(c) or (
            dict(capped_s=cap) if status == 'capped' else dict(error=f'child {status}'))
        print(f'{name} {c}: {entry[c]}', flush=True)


def ratios(entry) -> dict:
    """ours / each PyTorch contender, / the best torch.compile, / the best PyTorch."""
    c = entry.get('contenders', {})
    ours = c.get('ours', {}).get('median_ms')
    med = {k: v['median_ms'] for k, v in c.items() if 'median_ms' in v
           and not k.startswith('ours')}
    if not ours or not med:
        return {}
    out = {f'ours/{k}': ours / v for k, v in med.items()}
    compiled = [med[k] for k in ('reduce-overhead', 'max-autotune') if k in med]
    if compiled:
        out['ours/best_compile'] = ours / min(compiled)
    out['ours/best_torch'] = ours / min(med.values())
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out-dir', default=str(ROOT / 'bench' / 'results'))
    ap.add_argument('--tag', default='h100', help='suffix of the result files')
    ap.add_argument('--data', default=str(ROOT / '.benchdata'),
                    help='packed real models (bench/devdata.py pack)')
    ap.add_argument('--work', default='/tmp/tx2_bench_cuda')
    ap.add_argument('--torch-models', type=lambda s: s.split(','), default=list(TORCH_MODELS))
    ap.add_argument('--real-models', type=lambda s: s.split(','), default=list(REAL_MODELS))
    ap.add_argument('--conv-path', default='tc', choices=['tc', 'simt'])
    ap.add_argument('--runs', type=int, default=300)
    ap.add_argument('--warmup', type=int, default=50)
    ap.add_argument('--deadline-s', type=float, default=560)
    ap.add_argument('--export-cap', type=float, default=120)
    ap.add_argument('--fast-cap', type=float, default=150,
                    help='cap of one model\'s eager + CUDA graph + reduce-overhead child')
    ap.add_argument('--ma-cap', type=float, default=240, help='cap of one max-autotune child')
    ap.add_argument('--phases', type=lambda s: s.split(','), default=['ours', 'fast', 'ma'],
                    help="ours, fast (eager, CUDA graph, reduce-overhead), ma (max-autotune)")
    ap.add_argument('--commit', default='unknown')
    ap.add_argument('--dirty', default='', help='uncommitted paths measured (from git here)')
    return ap.parse_args(argv)


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


def torch_phases(args, clock, work, res):
    """The PyTorch children: all models' fast contenders, then all models' max-autotune."""
    notes = res.meta['notes']
    phases = (('fast', list(FAST), args.fast_cap), ('ma', ['max-autotune'], args.ma_cap))
    for contenders, cap in ((c, cap) for p, c, cap in phases if p in args.phases):
        for name in args.torch_models:
            left = clock.left() - 10
            if left < 20:
                res.model(name)['contenders'].update(
                    {c: dict(skipped='out of call time') for c in contenders})
                continue
            if left < cap:
                notes.append(f'{name} {contenders[-1]}: cap cut to {left:.0f} s by the deadline')
            pytorch(name, contenders, min(cap, left), args, work, res)
            res.model(name)['ratios'] = ratios(res.model(name))
            res.write()


def main(argv=None):
    args = parse_args(argv)
    clock = Clock(args.deadline_s)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    res = Results(args, device_meta(args))
    models = collect_models(args, clock, work, res) if 'ours' in args.phases else {}
    res.write()
    for name, (path, weights) in models.items():
        if clock.left() < 30:
            res.meta['notes'].append(f'{name}: ours skipped, out of call time')
            continue
        ours(name, path, weights, args, work, res)
        res.write()
    torch_phases(args, clock, work, res)
    res.meta['notes'] += [f'{n}: no PyTorch definition, ours only' for n in REAL_MODELS
                          if n in models]
    res.write()
    print(summary(res))


if __name__ == '__main__':
    main()
