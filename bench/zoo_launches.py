"""Kernel launches per zoo model on the CUDA backend, counted without a GPU (issue 14).

Every zoo model (``zoo_data.ZOO``: YOLOv3-tiny and open-nsfw included) is built the way
``Engine.build(..., backend='cuda')`` builds it (import, passes at ``POINTWISE_LEVEL``) and
lowered by ``cuda.lowering.lower_graph`` for an H200 (sm_90, 132 SMs). Per model: launches,
compute nodes (conv/GEMM/attention: ``COMPUTE_OPS``), their ratio, launches by kernel and by
the op of the node that made them. The counts are deterministic: no timing.

    python bench/zoo_launches.py                          # table + bench/results/...json
    python bench/zoo_launches.py --models ppocr-rec --nodes   # also each non-compute launch
    python bench/zoo_launches.py --before old.json        # keep old.json's counts as 'before'

An older tree's counts: ``git archive COMMIT | tar -x -C /tmp/old``, copy this file into
``/tmp/old/bench/`` and run it there with ``--out old.json`` (the JSON's 'before' is 7519f04's:
the counts before the convolution epilogue took Elu, Selu, Celu, Softplus, ThresholdedRelu
and PRelu).
"""
import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'bench'))
import zoo_data  # noqa: E402
from benchlib import write_json  # noqa: E402

from tx2_infer_core.cuda.lowering import lower_graph  # noqa: E402
from tx2_infer_core.engine_build import default_meta, import_model  # noqa: E402
from tx2_infer_core.passes import POINTWISE_LEVEL, optimize  # noqa: E402

# the recurrent layers are GEMMs too; FusedLinearNorm a GEMM with its rows' LayerNorm
COMPUTE_OPS = frozenset({'Conv', 'FusedConv', 'ConvTranspose', 'FusedConvTranspose', 'Gemm',
                         'MatMul', 'FusedConvInt8', 'FusedAttention', 'FusedLinear',
                         'FusedLinearNorm', 'LSTM', 'GRU', 'RNN'})
ARCH, SM_COUNT = 90, 132
OUT = ROOT / 'bench' / 'results' / 'zoo_launches_cpu.json'


def cuda_graph(model):
    """The optimised graph the cuda backend lowers for zoo entry ``model``."""
    model_path, weights = zoo_data.model_files(model)
    graph = import_model(model_path, model.input_shape, weights)
    default_meta(graph)
    return optimize(graph, POINTWISE_LEVEL)[0]


def count(graph, launches) -> dict:
    """Launches, compute nodes, their ratio, and launches by kernel and by source op."""
    ops = {node.name: node.op for node in graph.nodes}
    computes = sum(node.op in COMPUTE_OPS for node in graph.nodes)
    by_kernel = Counter(k.kernel for k in launches)
    by_op = Counter(ops.get(k.node, '?') for k in launches)
    return dict(launches=len(launches), compute_nodes=computes,
                ratio=round(len(launches) / max(computes, 1), 3),
                by_kernel=dict(by_kernel.most_common()), by_op=dict(by_op.most_common()))


def extra_launches(graph, launches) -> list:
    """(node, op, kernel) of every launch not made by a compute node."""
    ops = {node.name: node.op for node in graph.nodes}
    return [(k.node, ops.get(k.node, '?'), k.kernel) for k in launches
            if ops.get(k.node) not in COMPUTE_OPS]


def model_row(model, show_nodes=False) -> dict:
    """One model's counts, or its error (a model that does not lower is a row, not an abort)."""
    try:
        graph = cuda_graph(model)
        launches = lower_graph(graph, arch=ARCH, sm_count=SM_COUNT).launches
    except Exception as exc:  # a refusal is a result
        return dict(model=model.name, error=f'{type(exc).__name__}: {str(exc)[:200]}')
    if show_nodes:
        for node, op, kernel in extra_launches(graph, launches):
            print(f'  {model.name}: {op:18s} {kernel:14s} {node}')
    return dict(model=model.name, **count(graph, launches))


def with_before(rows, before_doc) -> list:
    """``rows`` with each model's 'before' launches, compute nodes and ratio from an older
    document of this script."""
    old = {r['model']: r for r in before_doc['models']}
    for row in rows:
        prev = old.get(row['model'], {})
        if 'launches' in prev:
            row['before'] = {k: prev[k] for k in ('launches', 'compute_nodes', 'ratio',
                                                  'by_kernel', 'by_op')}
    return rows


def table(rows) -> str:
    """A markdown table: before (when known) and now, per model."""
    lines = ['| model | launches before | launches | compute nodes | ratio before | ratio |',
             '|---|---|---|---|---|---|']
    for r in rows:
        if 'error' in r:
            lines.append(f"| {r['model']} | - | - | - | - | {r['error'][:60]} |")
            continue
        b = r.get('before', {})
        lines.append(f"| {r['model']} | {b.get('launches', '-')} | {r['launches']} | "
                     f"{r['compute_nodes']} | {b.get('ratio', '-')} | {r['ratio']} |")
    return '\n'.join(lines)


def git_commit() -> str:
    """The checkout's commit, '-dirty' when tracked files differ from it."""
    out = subprocess.run(['git', 'describe', '--always', '--dirty'], cwd=ROOT,
                         capture_output=True, text=True)
    return out.stdout.strip()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--models', type=lambda s: s.split(','), default=None)
    ap.add_argument('--nodes', action='store_true', help='print every non-compute launch')
    ap.add_argument('--before', default='', help='an older JSON of this script')
    ap.add_argument('--out', default=str(OUT))
    args = ap.parse_args(argv)
    models = [m for m in zoo_data.ZOO if args.models is None or m.name in args.models]
    rows = [model_row(m, args.nodes) for m in models]
    doc = dict(arch=ARCH, sm_count=SM_COUNT, commit=git_commit(),
               compute_ops=sorted(COMPUTE_OPS), models=rows)
    if args.before:
        before = json.loads(Path(args.before).read_text())
        doc['before_commit'] = before.get('commit', '')
        with_before(rows, before)
    print(table(rows))
    write_json(args.out, doc)
    return doc


if __name__ == '__main__':
    main()
