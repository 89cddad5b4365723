"""Split-K or one pass, per convolution, measured on the GPU at hand (issues 12 and 14).

Each model is built twice on the CUDA backend (FP16): with the lowering's split-K rule and with
no split (``lower_conv.MAX_SPLITS = 1``). Every conv that the rule splits is then timed both
ways from the graph's event-record nodes (kernel time of its launches), and each build's whole
kernels-only graph is replayed (which also counts the gap of every extra launch). The rows
(M pixels, N channels, k tiles, splits, ms split, ms one pass) are what ``mma_config``'s
per-arch table is made of (``--table``).

    python bench/bench_splitk.py --onnx-dir /tmp/onnx --models resnet50,yolov5s,bert_tiny \
        --assets /tmp/tx2cache/assets --out $OUT/splitk_h200.json --table $OUT/splitk_sm90.json
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from benchlib import gpu_facts, versions, write_json  # noqa: E402
from bench_ours import _graph_event_times, kernels_graph, random_feeds, replay_times  # noqa: E402

ASSET_MODELS = {'yolov8': ('yolov8-fall.onnx', None), 'open_nsfw': ('open_nsfw.onnx', None),
                'yolov3-tiny': ('yolov3-tiny.cfg', 'yolov3-tiny.weights')}


def export_torch(names, folder) -> dict:
    """{name: onnx path} of the PyTorch models exported by bench_torch.py (random weights:
    only shapes matter here)."""
    if not names:
        return {}
    subprocess.run([sys.executable, str(HERE / 'bench_torch.py'), 'export', '--dir',
                    str(folder), '--models', ','.join(names)], check=False, timeout=300)
    return {n: (Path(folder) / f'{n}.onnx', None) for n in names
            if (Path(folder) / f'{n}.onnx').is_file()}


def conv_shape(launch) -> tuple:
    """(M, N, k tiles, splits) of a conv_mma launch from its fields."""
    f = launch.fields
    cg = f['Cg']
    ktiles = -(-f['R'] * f['S'] * cg // 32) if 'gather' in launch.kernel else \
        f['R'] * f['S'] * -(-cg // 32)
    return f['N'] * f['P'] * f['Q'], f['Kg'], ktiles, f['splits']


def build(model, weights, split):
    """The engine built with (``split``) or without split-K."""
    from tx2_infer_core.cuda import lower_conv
    from tx2_infer_core.engine import Engine
    saved = lower_conv.MAX_SPLITS
    lower_conv.MAX_SPLITS = saved if split else 1
    try:
        return Engine.build(str(model), backend='cuda', precision='fp16',
                            weights_path=weights and str(weights))
    finally:
        lower_conv.MAX_SPLITS = saved


def per_node(engine, replays) -> dict:
    """{node: (ms of its launches, launches, conv_mma shape or None)} from graph event times."""
    be = engine.backend
    with be.ctx:
        samples = np.median(_graph_event_times(be, replays), axis=0)
    nodes = {}
    for launch, ms in zip(be.launches, samples):
        ms_sum, count, shape = nodes.get(launch.node, (0.0, 0, None))
        if launch.kernel.startswith('conv_mma') and shape is None:
            shape = conv_shape(launch)
        nodes[launch.node] = (ms_sum + float(ms), count + 1, shape)
    return nodes


def whole_graph_ms(engine, runs) -> dict:
    """Event time of the kernels-only graph (launch gaps included)."""
    be = engine.backend
    engine.run(random_feeds(engine))
    graph = kernels_graph(be)
    try:
        return replay_times(be, graph.launch, runs, warmup=20)
    finally:
        with be.ctx:
            graph.close()


def measure(name, model, weights, replays, runs) -> dict:
    """Both builds of one model: launches, kernel sums, graph times and the split layers."""
    out = dict(model=name)
    builds = {}
    for split in (True, False):
        engine = build(model, weights, split)
        try:
            nodes = builds[split] = per_node(engine, replays)
            out['split' if split else 'one_pass'] = dict(
                launches=len(engine.backend.launches),
                kernel_sum_ms=round(sum(ms for ms, _, _ in nodes.values()), 5),
                graph=whole_graph_ms(engine, runs))
        finally:
            engine.close()
    rows = []
    for node, (ms, count, shape) in builds[True].items():
        if shape is None or shape[3] < 2 or node not in builds[False]:
            continue
        one_ms, one_count, one_shape = builds[False][node]
        rows.append(dict(node=node, m=shape[0], n=shape[1], ktiles=shape[2], splits=shape[3],
                         ms_split=round(ms, 5), launches_split=count,
                         ms_one_pass=round(one_ms, 5), launches_one_pass=one_count))
    out['layers'] = rows
    return out


def table(results, gap_ms) -> dict:
    """The per-arch table: every measured split layer, and whether splitting paid once the
    second launch's gap is counted."""
    rows = []
    for res in results:
        for r in res.get('layers', []):
            wins = r['ms_split'] + gap_ms * (r['launches_split'] - r['launches_one_pass']) \
                < r['ms_one_pass']
            rows.append([r['m'], r['n'], r['ktiles'], r['splits'], int(wins)])
    return dict(what='split-K measured per layer: [M, N, k tiles, splits, split paid (1/0)]',
                launch_gap_ms=gap_ms, rows=sorted(set(map(tuple, rows))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', default='resnet50,yolov5s,bert_tiny')
    ap.add_argument('--assets', default='', help='folder with yolov8/open_nsfw/yolov3-tiny')
    ap.add_argument('--onnx-dir', default='/tmp/splitk_onnx')
    ap.add_argument('--replays', type=int, default=30)
    ap.add_argument('--runs', type=int, default=200)
    ap.add_argument('--out', required=True)
    ap.add_argument('--table', default='')
    ap.add_argument('--deadline-s', type=float, default=400)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    models = export_torch([m for m in args.models.split(',') if m], args.onnx_dir)
    if args.assets:
        for name, (model, weights) in ASSET_MODELS.items():
            path = Path(args.assets) / model
            if path.is_file():
                models[name] = (path, weights and Path(args.assets) / weights)
    import pycuda.driver as drv
    doc = dict(what=__doc__.splitlines()[0], device=gpu_facts(drv),
               versions=versions('numpy'), results=[], skipped=[])
    for name, (model, weights) in models.items():
        if time.perf_counter() - t0 > args.deadline_s:
            doc['skipped'].append(name)
            continue
        try:
            doc['results'].append(measure(name, model, weights, args.replays, args.runs))
        except Exception as exc:  # noqa: BLE001 - one model's failure is reported, not fatal
            doc['results'].append(dict(model=name, error=f'{type(exc).__name__}: {exc}'))
        print(name, f'{time.perf_counter() - t0:.0f} s', flush=True)
    write_json(args.out, doc, indent=1)
    if args.table:
        write_json(args.table, table(doc['results'], gap_ms=0.0015), indent=1)
    for res in doc['results']:
        if 'error' in res:
            print(res['model'], res['error'])
            continue
        s, o = res['split'], res['one_pass']
        wins = sum(r['ms_split'] < r['ms_one_pass'] for r in res['layers'])
        print(f"{res['model']}: split {s['launches']} launches {s['graph']['median_ms']:.3f} ms | "
              f"one pass {o['launches']} launches {o['graph']['median_ms']:.3f} ms | "
              f"split layers {len(res['layers'])}, split faster on {wins}")


if __name__ == '__main__':
    main()
