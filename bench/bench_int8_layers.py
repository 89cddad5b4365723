"""Device run: every convolution of ResNet-50 (open_nsfw, real weights), YOLOv3-tiny (real
weights) and YOLOv5s (bench_cuda_kernels.YOLOV5S shapes) timed alone on four paths in the same
run: fp16 mma (conv_mma), fp16 half2 SIMT (the TX2's fp16 path), int8 mma (conv_i8_mma) and
int8 dp4a (the TX2's int8 path, forced). Kernel medians from CUDA events around a CUDA graph of
``reps`` back-to-back launches of the layer (no copies, no Quantize launch); JSON with the device
name and versions.

    python bench/bench_int8_layers.py --out bench/results/int8_layers_h200.json

``layer_gains(graph)`` gives the sensitivity helper measured per-layer savings: {FusedConv
name: fp16 ms - int8 ms} on the GPU at hand (int8_models and this file need no GPU to import).
YOLOv5s has no real model in the assets: its weights are real open_nsfw weight values resized
to each shape (timing does not depend on the values).
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import int8_models as im  # noqa: E402
from benchlib import event_times, gpu_facts, stats, versions, write_json  # noqa: E402
from tx2_infer_core import cuda  # noqa: E402
from tx2_infer_core.errors import Tx2InferError  # noqa: E402
from tx2_infer_core.int8.schedule import LayerQuant  # noqa: E402
from tx2_infer_core.ir import Graph, Node, Value  # noqa: E402
from tx2_infer_core.passes.quantize import quantize_graph  # noqa: E402

PATHS = {'fp16_mma': dict(conv_path='tc'), 'fp16_simt': dict(conv_path='simt'),
         'int8_mma': dict(int8_path='mma'), 'int8_dp4a': dict(int8_path='dp4a')}


def conv_graph(name, x_shape, w, b, attrs, y_shape, res=False) -> Graph:
    """A float graph of one FusedConv ``name`` (weights ``w``, ``b``; a residual input)."""
    def val(n, shape):
        return Value(n, tuple(int(d) for d in shape), 'float32', 'NCHW')

    values = {'x': val('x', x_shape), 'y': val('y', y_shape)}
    inputs = ['x', f'{name}_w', f'{name}_b' if b is not None else '']
    weights = {f'{name}_w': np.asarray(w, np.float32)}
    if b is not None:
        weights[f'{name}_b'] = np.asarray(b, np.float32)
    if res:
        values['r'] = val('r', y_shape)
        inputs.append('r')
    for n, a in weights.items():
        values[n] = Value(n, a.shape, 'float32', '')
    return Graph([Node('FusedConv', name, inputs, ['y'], dict(attrs))],
                 ['x'] + (['r'] if res else []), ['y'], values, weights, name=name)


def graph_layers(graph) -> list:
    """[(name, one-FusedConv float graph)] of every 2-D FusedConv of an optimised graph."""
    out = []
    for node in graph.nodes:
        if node.op != 'FusedConv' or node.inputs[1] not in graph.weights:
            continue
        w = graph.weights[node.inputs[1]]
        if w.ndim != 4:
            continue
        b = graph.weights.get(node.inputs[2]) if len(node.inputs) > 2 else None
        res = len(node.inputs) > 3 and bool(node.inputs[3])
        out.append((node.name, conv_graph(node.name, graph.values[node.inputs[0]].shape, w, b,
                                          node.attrs, graph.values[node.outputs[0]].shape,
                                          res)))
    return out


def yolov5s_layers(pool) -> list:
    """[(name, graph, count)] of bench_cuda_kernels.YOLOV5S's shapes, weights resized from the
    real weight values ``pool``."""
    from bench_cuda_kernels import YOLOV5S
    out = []
    for layer, count in YOLOV5S:
        name, n, c, h, w, k, r, s, p, d, g, act, res = layer
        wt = np.resize(pool, (k, c // g, r, r)).astype(np.float32)
        ho, wo = (h + 2 * p - r) // s + 1, (w + 2 * p - r) // s + 1
        attrs = dict(kernel_shape=[r, r], strides=[s, s], pads=[p] * 4, dilations=[d, d],
                     group=g, activation=act, residual_after_act=int(res == 'after'))
        out.append((name, conv_graph(name, (n, c, h, w), wt, np.resize(pool, k), attrs,
                                     (n, k, ho, wo), bool(res)), count))
    return out


def int8_graph(graph, name):
    """``graph`` with its conv in int8 (any valid scale: timing only), float output."""
    return quantize_graph(graph, {name: LayerQuant(0.02)})


def time_node(graph, name, iters=100, reps=10, **options):
    """Median ms of the launches of node ``name`` alone, or None where the path is refused
    (int8 mma below sm_80)."""
    from tx2_infer_core.backends.cuda_backend import CudaBackend
    from tx2_infer_core.cuda.runtime import CudaGraph
    be = CudaBackend(**options)
    try:
        be.prepare(graph)
    except Tx2InferError:
        return None
    try:
        bound = [b for b, k in zip(be.bound, be.launches) if k.node == name]

        def enqueue():
            for _ in range(reps):
                for fn, rec, grid, block in bound:
                    fn(rec, grid=grid, block=block, stream=be.stream)

        with be.ctx:
            cg = CudaGraph()
            cg.capture(be.stream, enqueue)
            try:
                t = stats(event_times(be.ctx.drv, be.stream, cg.launch, iters, 10))
            finally:
                cg.close()
        return t['median_ms'] / reps, [k.kernel for k in be.launches if k.node == name]
    finally:
        be.close()


def time_layer(name, graph, iters=100, reps=10) -> dict:
    """{path: {'ms', 'kernels'}} of one float FusedConv graph on the four paths."""
    q = int8_graph(graph, name)
    out = {}
    for path, options in PATHS.items():
        got = time_node(q if path.startswith('int8') else graph, name, iters, reps, **options)
        out[path] = None if got is None else dict(ms=got[0], kernels=got[1])
    return out


def layer_gains(graph, names=None, int8_path='auto', conv_path='auto', iters=100,
                reps=10) -> dict:
    """{FusedConv name: ms saved running it in int8} (fp16 ``conv_path`` time minus int8
    ``int8_path`` time, measured alone on this GPU; negative where int8 is slower), for the
    FusedConvs of an optimised float ``graph`` (or ``names`` of them). Needs a CUDA GPU."""
    if not cuda.available():
        raise Tx2InferError('layer_gains measures on a CUDA GPU; none found (pycuda)')
    gains = {}
    for name, g in graph_layers(graph):
        if names is not None and name not in names:
            continue
        fp16 = time_node(g, name, iters, reps, conv_path=conv_path)
        int8 = time_node(int8_graph(g, name), name, iters, reps, int8_path=int8_path)
        if fp16 is not None and int8 is not None:
            gains[name] = fp16[0] - int8[0]
    return gains


def collect_layers() -> dict:
    """{model: [(name, graph, count)]} (built on the CPU)."""
    nsfw = im.open_nsfw()
    pool = np.concatenate([w.ravel() for w in nsfw.weights.values()
                           if w.dtype == np.float32 and w.ndim == 4])
    return {'resnet50 (open_nsfw)': [(n, g, 1) for n, g in graph_layers(nsfw)],
            'yolov3-tiny': [(n, g, 1) for n, g in graph_layers(im.yolov3_tiny(416))],
            'yolov5s': yolov5s_layers(pool)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--out', default='bench/results/int8_layers_h200.json')
    ap.add_argument('--iters', type=int, default=100)
    ap.add_argument('--reps', type=int, default=10)
    args = ap.parse_args(argv)
    models = collect_layers()
    print({m: len(v) for m, v in models.items()}, 'layers')
    if not cuda.available():
        raise SystemExit('bench_int8_layers: needs pycuda and a CUDA GPU (none found); the '
                         'layers were built, nothing was timed')
    import pycuda.driver as drv
    rows, sums = [], {}
    for model, layers in models.items():
        for name, graph, count in layers:
            t = time_layer(name, graph, args.iters, args.reps)
            x, w = graph.values['x'].shape, graph.weights[graph.nodes[0].inputs[1]].shape
            rows.append(dict(model=model, layer=name, count=count, x=list(x), w=list(w),
                             strides=list(graph.nodes[0].attrs.get('strides') or [1, 1]),
                             **{p: v for p, v in t.items()}))
            cells = ' '.join(f"{p} {v['ms'] * 1e3:8.1f}us" if v else f'{p} refused'
                             for p, v in t.items())
            print(f'{model:22s} {name:28s} {cells}', flush=True)
            for p, v in t.items():
                if v:
                    sums.setdefault(model, {}).setdefault(p, 0.0)
                    sums[model][p] += count * v['ms']
    doc = dict(gpu=gpu_facts(drv), versions=versions('numpy', 'pycuda'), iters=args.iters,
               reps=args.reps, sums_ms=sums, layers=rows)
    print(write_json(args.out, doc), sums)


if __name__ == '__main__':
    main()
