"""The torch columns of ``bench_zoo.py --torch`` (issue 14 item 6: no zoo model slower than
torch eager + CUDA graph where torch can run it).

Each zoo ONNX model is converted by onnx2torch and run at batch 1 on the GPU in a child process
(``zoo_torch_child.py``: what torch gets, FP16 or why FP32, memory format, capture), spawned
once so torch is imported once, and restarted after a crash, a timeout or a CUDA error. Timing
goes in rounds interleaved with ours as ``race_run.py`` does for the race: per round our
kernels-only graph replay, torch eager, torch eager + CUDA graph (``torch.cuda.CUDAGraph``
replays), each call CUDA-event timed; per contender the median of the rounds' medians and
their spread (``race.combine_rounds``), ratios ours / torch from those medians
(``race.ratios``). Outputs (eager and graph) are compared with ONNX Runtime FP32 as ours are.
A model onnx2torch cannot convert or torch cannot run is a row with the reason
(``torch: not convertible: <op or error>``), never dropped.

This module imports neither torch nor onnx2torch (the child does).
"""
import multiprocessing
from contextlib import contextmanager

import race
import zoo_torch_child

CONTENDERS = {'eager': 'eager', 'cuda_graph': 'graph'}    # race name -> the child's request
LOAD_TIMEOUT_S = 240


class TorchWorker:
    """The torch child process: ``call(request)`` -> its answer (a dict); a child that dies or
    does not answer in time is killed and the answer is an error. Started on first use;
    ``device`` 'cpu' loads models only (tests without a GPU)."""

    def __init__(self, work, device='cuda'):
        self.work, self.device = str(work), device
        self.proc = self.conn = self.exitcode = None

    def start(self):
        ctx = multiprocessing.get_context('spawn')       # the parent holds a CUDA context
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=zoo_torch_child.serve, args=(child, self.work, self.device),
                                daemon=True)
        self.proc.start()
        child.close()

    def call(self, request, timeout) -> dict:
        if self.proc is None:
            self.start()
        try:
            self.conn.send(request)
            if self.conn.poll(timeout):
                return self.conn.recv()
            error = f'torch child: no answer in {timeout:.0f} s (killed)'
        except (EOFError, OSError):
            error = 'torch child died'
        self.stop()
        return dict(error=f'{error} (exit code {self.exitcode})', crashed=True)

    def stop(self):
        """Ask the child to close; kill it where it does not."""
        if self.proc is None:
            return
        if self.proc.is_alive():
            try:
                self.conn.send(('close',))
            except OSError:
                pass
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.exitcode = self.proc.exitcode
        self.conn.close()
        self.proc = self.conn = None


@contextmanager
def ours_rounds(engine):
    """A function ``(runs, warmup) -> timing`` of the engine's kernels-only graph replays (the
    race's ``ours``), the graph closed after."""
    from bench_ours import kernels_graph, replay_times
    be = engine.backend
    graph = kernels_graph(be)
    try:
        yield lambda runs, warmup: replay_times(be, graph.launch, runs, warmup)
    finally:
        with be.ctx:
            graph.close()


def interleaved(worker, ours, runs, warmup, rounds, timeout) -> dict:
    """{contender: [one timing (or failure) per round]}: per round ``ours(runs, warmup)``,
    torch eager, torch eager + CUDA graph."""
    raw = dict(ours=[], **{c: [] for c in CONTENDERS})
    for rnd in range(1, rounds + 1):
        raw['ours'].append(dict(ours(runs, warmup), round=rnd))
        for name, request in CONTENDERS.items():
            raw[name].append(dict(worker.call(('time', request, runs, warmup), timeout),
                                  round=rnd))
    return raw


def torch_row(worker, ours, onnx_path, feeds, names, compare, args) -> dict:
    """The ``torch`` block of one zoo model's row: what the child chose (``info``), the
    accuracy of eager and graph outputs (``compare(outputs by name)``), the rounds combined
    (ours: ``ours_rounds``) and the ratios; or {error} with the reason. ``names``: the
    outputs in model order."""
    loaded = worker.call(('load', str(onnx_path), feeds), LOAD_TIMEOUT_S)
    if 'error' in loaded:
        return loaded
    row = dict(info=loaded['info'], accuracy={})
    for name, outputs in loaded['outputs'].items():
        if len(outputs) != len(names):
            return dict(row, error=f'torch: {len(outputs)} outputs, ONNX Runtime {len(names)}')
        row['accuracy'][name] = compare(dict(zip(names, outputs)))
    raw = interleaved(worker, ours, args.torch_runs, args.warmup, args.torch_rounds,
                      timeout=60 + args.torch_runs)
    row['contenders'] = {c: race.combine_rounds(r) for c, r in raw.items()}
    row['ratios'] = race.ratios(row)
    if 'graph_error' in row['info'] or any(r.get('cuda_error') or r.get('crashed')
                                           for rs in raw.values() for r in rs):
        worker.stop()                   # a fresh child for the next model
    return row


def _ms(entry) -> str:
    if 'median_ms' not in entry:
        return '-'
    return f"{entry['median_ms']:.3f}/{entry['p99_ms']:.3f}"


def _status(torch) -> str:
    """'ok', the reason there is no torch timing, or what torch runs instead of FP16 + graph."""
    if 'error' in torch:
        return torch['error'][:160]
    info, notes = torch['info'], []
    if info['precision'] != 'fp16':
        notes.append(f"FP32 (FP16: {info['fp16_error']})"[:120])
    if 'graph_error' in info:
        notes.append(f"no CUDA graph: {info['graph_error']}"[:120])
    return '; '.join(notes) or 'ok'


def markdown(models) -> list:
    """Lines of the torch table: one row per model of ``bench_zoo``'s document."""
    lines = ['', '## torch (onnx2torch) on the same GPU, rounds interleaved with ours', '',
             'Medians of the rounds\' medians (p99: median of the rounds\' p99s), CUDA events; '
             'ours: the kernels-only graph replay; ours / torch < 1: ours is faster; max rel '
             'vs ONNX Runtime FP32.', '',
             '| model | torch precision | max rel eager / graph | torch eager p50/p99 ms | '
             'eager + CUDA graph p50/p99 ms | ours graph p50/p99 ms | ours / eager | '
             'ours / graph | torch status |', '|' + '---|' * 9]
    for r in models:
        torch = r.get('torch') or dict(error=f"not measured: {r.get('error', '-')}")
        c, acc, ratio = torch.get('contenders', {}), torch.get('accuracy', {}), \
            torch.get('ratios', {})
        rels = ' / '.join(f"{acc[k]['max_rel']:.1e}" if k in acc else '-'
                          for k in ('eager', 'graph'))
        ratios = [f"{ratio[k]:.2f}" if k in ratio else '-'
                  for k in ('ours/eager', 'ours/cuda_graph')]
        lines.append(f"| {r['model']} | {torch.get('info', {}).get('precision', '-')} | "
                     f"{rels} | {_ms(c.get('eager', {}))} | {_ms(c.get('cuda_graph', {}))} | "
                     f"{_ms(c.get('ours', {}))} | {ratios[0]} | {ratios[1]} | "
                     f"{_status(torch)} |")
    return lines
