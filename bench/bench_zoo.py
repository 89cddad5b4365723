"""Model zoo benchmark (issue 14 item 6; the models: bench/ZOO.md, bench/zoo_data.py).

Per model, on a real photo at its zoo input shape: build time; our CPU oracle (numpy backend)
against ONNX Runtime FP32 (relative L2 error); our engine on ``--backend`` (cuda: FP16, its
range measured on the same input at build: ``range_feeds``) against ORT FP32 (relative L2
and max relative error = max |diff| / max |ref|, per output, worst reported; classifiers:
top-1 equal); on CUDA the launches (and per conv/GEMM node), the kernel-time sum and the
slowest launches of the captured graph (bench_ours.profile, with GB/s beside TFLOP/s); our
``engine.run`` latency and ORT CPU latency on all cores (median, p99). With ``--torch``
(cuda): torch eager and torch eager + CUDA graph of the model converted by onnx2torch, in rounds
interleaved with our graph replay, outputs vs ORT FP32, ratios (``zoo_torch.py``).
Writes ``zoo_<tag>.json`` and ``zoo_<tag>.md`` to ``--out-dir``. A model that fails to build
or run is a row with its error, never an abort.

    python bench/bench_zoo.py --backend cpu --models ppocr-cls,mtcnn-onet --out-dir /tmp/z
    # GPU machine, one call per pack group (python bench/zoo_data.py groups | pack .zoo N):
    python bench/bench_zoo.py --packed .zoo --backend cuda --out-dir $OUT --tag h200_g1
    python bench/bench_zoo.py --packed .zoo --backend cuda --torch --tag h200_torch  # + torch
"""
import argparse
import math
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402
from benchlib import cpu_name, stats, versions, wall_times, write_json  # noqa: E402
from zoo_launches import COMPUTE_OPS  # noqa: E402 - one definition of a conv/GEMM node
from zoo_torch import TorchWorker, ours_rounds, torch_row  # noqa: E402
from zoo_torch import markdown as torch_markdown  # noqa: E402


def ort_session(path, threads):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3          # no shape-mismatch warnings per run
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def accuracy(ours, ref, classifier=False) -> dict:
    """Worst relative L2 and max relative error over the outputs (and top-1 agreement)."""
    rel_l2, max_rel = 0.0, 0.0
    for name, expected in ref.items():
        got = np.asarray(ours[name], np.float64)
        rel_l2 = max(rel_l2, zoo_data.rel_error(got, expected))
        scale = max(float(np.abs(expected).max()), 1e-30)
        max_rel = max(max_rel, float(np.abs(got - expected).max()) / scale)
    out = dict(rel_l2=rel_l2, max_rel=max_rel)
    if classifier:
        out['top1_equal'] = all(int(np.argmax(ours[n])) == int(np.argmax(r))
                                for n, r in ref.items())
    return out


def _gbps(row, graph) -> float:
    """Bytes a launch's node reads and writes (fp16 activations and weights) per second."""
    node = next((n for n in graph.nodes if n.name == row['node']), None)
    if node is None or row['ms'] <= 0 or node.op in COMPUTE_OPS:
        return None
    names = [v for v in list(node.inputs) + list(node.outputs) if v]
    count = 0
    for name in names:
        if name in graph.values:
            count += int(np.prod(graph.values[name].shape))
        elif name in graph.weights:
            count += int(np.asarray(graph.weights[name]).size)
    return count * 2 / (row['ms'] * 1e-3) / 1e9


def cuda_profile(engine, args) -> dict:
    """Launches, graph replay latency and the per-launch profile of a cuda engine."""
    import bench_ours
    times = bench_ours.time_engine(engine, args.runs, args.warmup)
    prof = bench_ours.profile(engine, replays=args.replays, top=args.top)
    graph = engine.backend.graph
    for row in prof['top']:
        row['gbps'] = _gbps(row, graph)
    computes = sum(n.op in COMPUTE_OPS for n in graph.nodes)
    launches = times['ours']['launches']
    return dict(launches=launches, compute_nodes=computes,
                launches_per_compute=launches / max(computes, 1),
                kernel_sum_ms=prof['sum_ms'], graph_replay=times['ours'],
                graph_replay_with_copies=times['ours_with_copies'], top=prof['top'],
                by_kernel=prof['by_kernel'], profile_method=prof['method'])


def filled_buffers(engine, feeds) -> tuple:
    """(feeds written into the engine's own input buffers, preallocated outputs): the
    no-copy ``engine.run`` (issue 14 item 5)."""
    buffers = engine.input_buffers()
    for name, array in feeds.items():
        buffers[name][...] = array
    out = {s.name: np.empty(s.shape, np.float32) for s in engine.output_specs}
    return {name: buffers[name] for name in feeds}, out


def bench_model(model, model_path, weights, args, work, worker=None) -> dict:
    """One zoo model's row; ``worker`` (a ``TorchWorker``, cuda only) adds its torch block."""
    from tx2_infer_core.engine import Engine
    row = dict(model=model.name, task=model.task, input_shape=list(model.input_shape),
               file=Path(model_path).name)
    oracle = Engine.build(model_path, input_shape=model.input_shape, weights_path=weights)
    feeds = zoo_data.feeds(model, oracle.input_specs)   # the photo; states (if any) zero
    ref_path = zoo_data.reference_onnx(model, model_path, weights, work)
    session = ort_session(ref_path, os.cpu_count())
    names = [o.name for o in session.get_outputs()]
    ref = dict(zip(names, session.run(names, feeds)))
    row['ort_cpu'] = stats(wall_times(lambda: session.run(names, feeds), args.runs_cpu, 3))
    classifier = model.task.startswith('classification')
    row['cpu_accuracy'] = accuracy(oracle.run(feeds), ref, classifier)
    oracle.close()
    precision = 'fp16' if args.backend == 'cuda' else 'fp32'
    t0 = time.perf_counter()
    engine = Engine.build(model_path, input_shape=model.input_shape, weights_path=weights,
                          backend=args.backend, precision=precision,
                          range_feeds=feeds if precision == 'fp16' else None)
    row['build_s'] = time.perf_counter() - t0
    try:
        row['precision'] = engine.precision
        row['accuracy'] = accuracy(engine.run(feeds), ref, classifier)
        runs = args.runs if args.backend == 'cuda' else args.runs_cpu
        row['ours_run'] = stats(wall_times(lambda: engine.run(feeds), runs, 3))
        pinned, out = filled_buffers(engine, feeds)
        row['ours_run_no_copy'] = stats(wall_times(lambda: engine.run(pinned, out=out), runs,
                                                   3))
        if args.backend == 'cuda':
            row['cuda'] = cuda_profile(engine, args)
        if worker is not None:
            with ours_rounds(engine) as ours:
                row['torch'] = torch_row(worker, ours, ref_path, feeds, names,
                                         lambda outs: accuracy(outs, ref, classifier), args)
        row['speedup_vs_ort_cpu'] = row['ort_cpu']['median_ms'] / row['ours_run']['median_ms']
    finally:
        engine.close()
    return row


def _fmt(value, spec='.3g'):
    return '-' if value is None else format(value, spec)


def _status(row, acc) -> str:
    """'ok', the error's first line, or why the outputs are not usable."""
    if 'error' in row:
        return row['error'].splitlines()[0][:80]
    if acc.get('max_rel') is not None and not math.isfinite(acc['max_rel']):
        return 'outputs not finite (past the FP16 range)'
    return 'ok'


def markdown(doc) -> str:
    lines = [f"# Model zoo, backend {doc['backend']} ({doc['device']})", '',
             '| model | task | build s | CPU rel L2 | ours max rel | top-1 | launches '
             '(/conv) | kernel sum ms | ours p50/p99 ms | no-copy run / graph replay p50 ms | '
             'ORT CPU p50 ms | x ORT | status |',
             '|' + '---|' * 13]
    for r in doc['models']:
        acc, cpu, cuda = r.get('accuracy', {}), r.get('cpu_accuracy', {}), r.get('cuda', {})
        run = r.get('ours_run', {})
        launches = (f"{cuda['launches']} ({cuda['launches_per_compute']:.2f})" if cuda
                    else '-')
        lat = (f"{run['median_ms']:.2f}/{run['p99_ms']:.2f}" if run else '-')
        no_copy = r.get('ours_run_no_copy', {}).get('median_ms')
        replay = cuda.get('graph_replay', {}).get('median_ms') if cuda else None
        host = f"{_fmt(no_copy, '.3f')} / {_fmt(replay, '.3f')}"
        top1 = {True: 'yes', False: 'NO'}.get(acc.get('top1_equal'), '-')
        status = _status(r, acc)
        lines.append(
            f"| {r['model']} | {r['task']} | {_fmt(r.get('build_s'), '.2f')} | "
            f"{_fmt(cpu.get('rel_l2'), '.1e')} | {_fmt(acc.get('max_rel'), '.1e')} | {top1} | "
            f"{launches} | {_fmt(cuda.get('kernel_sum_ms'), '.3f')} | {lat} | {host} | "
            f"{_fmt(r.get('ort_cpu', {}).get('median_ms'), '.2f')} | "
            f"{_fmt(r.get('speedup_vs_ort_cpu'), '.1f')} | {status} |")
    if doc.get('torch'):
        lines += torch_markdown(doc['models'])
    return '\n'.join(lines) + '\n'


def model_sources(args, work) -> dict:
    """{name: (model path, weights or None)}: unpacked from ``--packed`` or the asset cache."""
    if args.packed:
        found = zoo_data.unpack(args.packed, work / 'models')
    else:
        found = {m.name: zoo_data.model_files(m) for m in zoo_data.ZOO}
    wanted = args.models or list(found)
    return {name: found[name] for name in wanted if name in found}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--backend', default='cuda', choices=['cuda', 'cpu', 'numpy', 'ort'])
    ap.add_argument('--models', type=lambda s: s.split(','), default=None)
    ap.add_argument('--packed', default='', help='a folder from `zoo_data.py pack`')
    ap.add_argument('--work', default='/tmp/tx2_bench_zoo')
    ap.add_argument('--out-dir', default=str(ROOT / 'bench' / 'results'))
    ap.add_argument('--tag', default='')
    ap.add_argument('--runs', type=int, default=200, help='timed runs on the GPU')
    ap.add_argument('--runs-cpu', type=int, default=20, help='timed runs on the CPU')
    ap.add_argument('--warmup', type=int, default=20)
    ap.add_argument('--replays', type=int, default=20, help='profile replays')
    ap.add_argument('--top', type=int, default=8, help='slowest launches kept per model')
    ap.add_argument('--deadline-s', type=float, default=540)
    ap.add_argument('--torch', action='store_true',
                    help='add torch eager and eager + CUDA graph (onnx2torch; cuda only)')
    ap.add_argument('--torch-rounds', type=int, default=3, help='rounds interleaved with ours')
    ap.add_argument('--torch-runs', type=int, default=100, help='timed calls per round')
    args = ap.parse_args(argv)
    if args.torch and args.backend != 'cuda':
        ap.error('--torch needs --backend cuda')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    device = cpu_name()
    if args.backend == 'cuda':
        import pycuda.driver as drv

        from benchlib import gpu_facts
        device = gpu_facts(drv)['device']
    doc = dict(backend=args.backend, device=device, cpu=cpu_name(), cores=os.cpu_count(),
               versions=versions('numpy', 'onnx', 'onnxruntime', 'pycuda', 'torch',
                                 'onnx2torch'), torch=args.torch, models=[])
    worker = TorchWorker(work / 'torch') if args.torch else None
    try:
        run_models(doc, args, work, start, worker)
    finally:
        if worker is not None:
            worker.stop()
    write_results(doc, args)
    return doc


def write_results(doc, args) -> None:
    """``zoo_<tag>.json`` and ``.md`` as they stand (rewritten after each model, so a call
    killed at its limit still leaves the models it finished)."""
    tag = args.tag or args.backend
    out = Path(args.out_dir)
    write_json(out / f'zoo_{tag}.json', doc)
    (out / f'zoo_{tag}.md').write_text(markdown(doc))


def run_models(doc, args, work, start, worker) -> None:
    """Bench each model into ``doc['models']`` (a row with the error where one fails)."""
    for name, (model_path, weights) in model_sources(args, work).items():
        if time.monotonic() - start > args.deadline_s:
            doc['models'].append(dict(model=name, task='', error='skipped: deadline'))
            write_results(doc, args)
            continue
        model = zoo_data.BY_NAME[name]
        try:
            row = bench_model(model, model_path, weights, args, work, worker)
        except Exception as exc:  # a refusal or a crash is a result, not an abort
            row = dict(model=name, task=model.task, error=f'{type(exc).__name__}: {exc}',
                       traceback=traceback.format_exc()[-2000:])
        doc['models'].append(row)
        write_results(doc, args)
        print(markdown(dict(doc, torch=False, models=[row])).splitlines()[-1], flush=True)
        if worker is not None:
            print(torch_markdown([row])[-1], flush=True)


if __name__ == '__main__':
    main()
