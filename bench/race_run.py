"""The rounds of ``bench_cuda.py``'s race: every contender in a fresh child process, killed
at its cap, rounds interleaved; max-autotune repeated only when its first run finished.

    raw = rounds(args, clock, work, res, ['resnet50', 'yolov5s', 'bert_tiny'])
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import race

HERE = Path(__file__).resolve().parent
# phase -> the contenders its child times
PHASES = dict(ours=['ours', 'ours_with_copies'],
              fast=['eager', 'cuda_graph', 'reduce-overhead'], ma=['max-autotune'])


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


def child_cmd(phase, name, rnd, args, work) -> tuple:
    """(command, its JSON) of one round's child: ours (the saved plan) or a PyTorch one."""
    out = work / f'{phase}-{name}-r{rnd}.json'
    common = ['--runs', str(args.runs), '--warmup', str(args.warmup)]
    if phase == 'ours':
        plan = work / f'{name}-{args.conv_path}.tx2plan'
        return [sys.executable, str(HERE / 'ours_child.py'), str(plan), str(out),
                '--conv-path', args.conv_path] + common, out
    return [sys.executable, str(HERE / 'bench_torch.py'), 'time', '--model', name,
            '--contenders', ','.join(PHASES[phase]), '--out', str(out), '--input',
            str(work / 'inputs' / f'{name}.npz'), '--outputs',
            str(work / f'out-{name}-r{rnd}')] + common, out


def read_from(path, offset) -> str:
    """The text of ``path`` from byte ``offset`` on ('' when it is missing)."""
    if not Path(path).is_file():
        return ''
    with open(path, 'rb') as f:
        f.seek(offset)
        return f.read().decode(errors='replace')


def run_round(phase, name, rnd, cap, args, work) -> dict:
    """One child of one round: {contender: timing or failure} (a capped one: finished false,
    the cap and how far it got) and 'versions' (torch's, or None)."""
    cmd, out = child_cmd(phase, name, rnd, args, work)
    if phase == 'ours' and not Path(cmd[2]).is_file():
        return {c: dict(error=f'no plan {Path(cmd[2]).name}: our build failed', round=rnd)
                for c in PHASES[phase]}
    log = Path(args.torch_log)
    start = log.stat().st_size if log.is_file() else 0
    if out.is_file():
        out.unlink()
    status = run_child(cmd, cap, log)
    done = json.loads(out.read_text()) if out.is_file() else {}
    got = {}
    for c in PHASES[phase]:
        entry = done.get('contenders', {}).get(c, {})
        if 'median_ms' in entry or 'error' in entry:
            got[c] = dict(entry, round=rnd)
        elif status == 'capped':
            progress = race.autotune_progress(read_from(log, start), out)
            got[c] = dict(finished=False, capped_s=cap, round=rnd, progress=progress)
        else:
            got[c] = dict(error=f'child {status} (see {log.name})', round=rnd)
    got['versions'] = done.get('versions')
    return got


def plan_rounds(phases, names, torch_models, repeats) -> list:
    """(round, model, phase) in the order they run: round by round, per model its phases."""
    order = [p for p in ('ours', 'fast', 'ma') if p in phases]
    return [(rnd, name, phase) for rnd in range(1, repeats + 1) for name in names
            for phase in order if phase == 'ours' or name in torch_models]


def rounds(args, clock, work, res, names, run=run_round) -> dict:
    """Run the planned rounds, each child capped by its phase's cap and the deadline; after
    each, the model's contenders become ``race.combine_rounds`` of their rounds so far.
    Returns {model: {contender: [round results]}}."""
    raw = {}
    caps = dict(ours=args.ours_cap, fast=args.fast_cap, ma=args.ma_cap)
    notes = res.meta['notes']
    for rnd, name, phase in plan_rounds(args.phases, names, args.torch_models, args.repeats):
        first = raw.get(name, {}).get(PHASES[phase][0], [{}])[0]
        if rnd > 1 and first.get('finished') is False:
            continue  # capped (max-autotune): one run only
        left = clock.left() - 10
        if left < 20:
            notes.append(f'{name} {phase} round {rnd}: skipped, out of call time')
            continue
        if left < caps[phase]:
            notes.append(f'{name} {phase} round {rnd}: cap cut to {left:.0f} s by the deadline')
        got = run(phase, name, rnd, min(caps[phase], left), args, work)
        versions = got.pop('versions', None) or {}
        res.meta.update({k: v for k, v in versions.items() if k != 'device'})
        entry = res.model(name)
        for c, r in got.items():
            raw.setdefault(name, {}).setdefault(c, []).append(r)
            entry['contenders'][c] = race.combine_rounds(raw[name][c])
            print(f'[{clock.elapsed():.0f} s] {name} {c} round {rnd}: {str(r)[:160]}',
                  flush=True)
        entry['ratios'] = race.ratios(entry)
        res.write()
    return raw


def model_accuracy(name, work) -> dict:
    """``race.accuracy`` of one model from the saved outputs (each contender's first round)."""
    def load(path):
        return race.load_outputs(path) if Path(path).is_file() else None

    torch_outs = {}
    for c in PHASES['fast'] + PHASES['ma']:
        found = sorted(Path(work).glob(f'out-{name}-r*-{c}.npz'))
        if found:
            torch_outs[c] = race.load_outputs(found[0])
    return race.accuracy(load(Path(work) / f'ours-{name}.npz'),
                         load(Path(work) / 'onnx' / f'{name}.fp32.npz'), torch_outs)
