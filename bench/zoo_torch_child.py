"""The torch side of ``bench_zoo.py --torch`` (issue 14 item 6), run in a child process
(``zoo_torch.TorchWorker``): a zoo ONNX model converted by onnx2torch into a torch.fx module
and run at batch 1 as "torch eager" and "torch eager + CUDA graph".

What torch gets: ``zoo_torch_onnx.torch_onnx`` of the ONNX file ONNX Runtime runs (input dims
fixed, constant-folded, SAME pads written out); where onnx2torch cannot convert the folded
graph (ORT may fuse ops into ones it lacks: SpaceToDepth), the graph unfolded.

FP16 first (weights and float inputs in half); where that raises or gives non-finite outputs,
FP32, the reason kept (``fp16_error``). Constants onnx2torch modules read on the host (Reshape
shapes, Split sizes, Resize scales, scalar Gather indices: ``HOST_READ_FROM``) stay on the CPU,
so a call needs no copy back from the GPU: without that, such a sync per Reshape fails every
CUDA graph capture (and slows eager). With a 4-D input the memory format (contiguous or
channels-last) is the faster over a few eager calls. A model onnx2torch cannot convert or run
raises ``NotConvertible`` naming the op or the error.

torchvision: onnx2torch imports it at package import (NonMaxSuppression and RoiAlign
converters). Where it is missing, ``torch_stubs/`` (bench only) goes on ``sys.path`` and a model
with those ops is not convertible.
"""
import copy
import re
import sys
import time
from pathlib import Path

import numpy as np
import onnx

from zoo_torch_onnx import torch_onnx

STUBS = Path(__file__).resolve().parent / 'torch_stubs'
NEEDS_TORCHVISION = ('NonMaxSuppression', 'RoiAlign')
FORMAT_CALLS = 10
MISSING_CONVERTER = re.compile(r"Converter is not implemented .*operation_type='(\w+)', "
                               r"version=(\d+)")
# onnx2torch modules that read their arguments from this position on (and any keyword one)
# on the host (``tolist``, ``torch.Size``): shapes, axes, pads, sizes, repeats; Gather an
# index of one value (``item``), not an index tensor
HOST_READ_FROM = dict(OnnxReshape=1, OnnxExpand=1, OnnxTile=1, OnnxSlice=1, OnnxSplit13=1,
                      OnnxPadDynamic=1, OnnxResize=1, OnnxResizeV10=1, OnnxTopK=1,
                      OnnxUnsqueezeDynamicAxes=1, OnnxSqueezeDynamicAxes=1, OnnxCumSum=1,
                      OnnxReduceSumDynamicAxes=1, OnnxGather=1, OnnxConstantOfShape=0,
                      OnnxRange=0)


def one_line(exc) -> str:
    """An exception as one short line: its type and the first line of its message."""
    return f'{type(exc).__name__}: {exc}'.splitlines()[0][:300]


class NotConvertible(Exception):
    """onnx2torch cannot convert the model; the message names the op or the error."""
    what = 'not convertible'


class NotRunnable(NotConvertible):
    """The converted module runs in neither FP16 nor FP32; the message says why."""
    what = 'not runnable'


def import_onnx2torch():
    """(onnx2torch, True where the torchvision stub stands in for a missing torchvision)."""
    try:
        import torchvision  # noqa: F401
        stub = False
    except ImportError:
        sys.path.append(str(STUBS))
        stub = True
    import onnx2torch
    return onnx2torch, stub


# --- converting and running --------------------------------------------------------------------

def convert(path, stub):
    """The fx module of the ONNX file ``path`` (FP32, eval mode), or ``NotConvertible``."""
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    missing = sorted(ops.intersection(NEEDS_TORCHVISION)) if stub else []
    if missing:
        raise NotConvertible(f"{', '.join(missing)} needs torchvision (not installed)")
    import onnx2torch          # importable: ``import_onnx2torch`` ran first
    try:
        return onnx2torch.convert(str(path)).eval()
    except Exception as exc:
        missing = MISSING_CONVERTER.search(str(exc))
        raise NotConvertible(f'no onnx2torch converter for {missing[1]}-{missing[2]}'
                             if missing else one_line(exc)) from exc


def converted(path, feeds, work, stub) -> tuple:
    """(module, ``torch_onnx`` facts): the folded graph converted, else (its error kept as
    ``fold_error``) the graph as is; ``NotConvertible`` when neither converts."""
    out = Path(work) / f'{Path(path).stem}.torch.onnx'
    try:
        prep = torch_onnx(path, feeds, out)
        return convert(prep['path'], stub), prep
    except NotConvertible as exc:
        folded_error = str(exc)
    prep = torch_onnx(path, feeds, out, fold=False)
    try:
        return convert(prep['path'], stub), dict(prep, fold_error=folded_error)
    except NotConvertible as exc:
        same = str(exc) == folded_error
        raise NotConvertible(folded_error if same else f'{folded_error} (unfolded: {exc})') \
            from exc


def as_list(out) -> list:
    """A module's output (a tensor or a sequence of them) as float32 numpy arrays."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [t.detach().float().cpu().numpy() for t in outs]


def to_inputs(feeds, names, device, half):
    """Torch tensors of ``feeds`` in ``names`` order on ``device`` (float ones in half)."""
    import torch
    tensors = [torch.from_numpy(np.ascontiguousarray(feeds[n])).to(device) for n in names]
    return [t.half() if half and t.is_floating_point() else t for t in tensors]


def input_names(path) -> list:
    """The graph inputs of the ONNX file ``path`` that are not initializers, in order."""
    graph = onnx.load(str(path)).graph
    weights = {w.name for w in graph.initializer}
    return [v.name for v in graph.input if v.name not in weights]


def run_once(module, inputs) -> list:
    import torch
    with torch.inference_mode():
        return as_list(module(*inputs))


def fp16_attempt(module, feeds, names, device):
    """(half module, inputs, outputs), or why FP16 fails (a string): it raises or its outputs
    are not finite."""
    try:
        half = copy.deepcopy(module).to(device).half()
        inputs = to_inputs(feeds, names, device, half=True)
        outputs = run_once(half, inputs)
    except Exception as exc:
        return one_line(exc)
    if not all(np.isfinite(o).all() for o in outputs):
        return 'FP16 outputs not finite'
    return half, inputs, outputs


def with_precision(module, feeds, names, device, try_fp16=True) -> tuple:
    """(module, inputs, outputs, precision, fp16_error): FP16 where it runs with finite
    outputs, else FP32; ``NotRunnable`` where FP32 fails too."""
    fp16 = fp16_attempt(module, feeds, names, device) if try_fp16 else 'not tried'
    if not isinstance(fp16, str):
        return fp16 + ('fp16', None)
    module = module.to(device)
    inputs = to_inputs(feeds, names, device, half=False)
    try:
        return module, inputs, run_once(module, inputs), 'fp32', fp16
    except Exception as exc:
        raise NotRunnable(f'FP16: {fp16}; FP32: {one_line(exc)}') from exc


def host_read_only(module, node, value) -> bool:
    """Whether every use of the fx ``node`` (a constant, ``value``) is an argument an
    onnx2torch module reads on the host (``HOST_READ_FROM``)."""
    for user in node.users:
        if user.op != 'call_module':
            return False
        kind = type(module.get_submodule(user.target)).__name__
        first = HOST_READ_FROM.get(kind)
        if first is None or node in user.args[:first]:
            return False
        if kind == 'OnnxGather' and value.dim():
            return False
    return bool(node.users)


def host_constants(module) -> dict:
    """{get_attr target: tensor} of the module's constants only read on the host (shapes,
    axes, sizes)."""
    found = {}
    for node in module.graph.nodes:
        owner, _, name = str(node.target).rpartition('.')
        holder = module.get_submodule(owner) if node.op == 'get_attr' else None
        value = holder._buffers.get(name) if holder is not None else None
        if value is not None and host_read_only(module, node, value):
            found[node.target] = value
    return found


def keep_on_host(module) -> int:
    """``host_constants`` moved back to the CPU, so that a call copies nothing back from the
    GPU: no sync, which a CUDA graph cannot capture. Returns how many."""
    found = host_constants(module)
    for target, value in found.items():
        owner, _, name = target.rpartition('.')
        module.get_submodule(owner)._buffers[name] = value.cpu()
    return len(found)


# --- on the GPU --------------------------------------------------------------------------------

def eager_ms(module, inputs, calls=FORMAT_CALLS) -> float:
    """Median CUDA-event ms of a few eager calls."""
    from bench_torch import time_calls
    return time_calls(lambda: module(*inputs), calls, 3)['median_ms']


def faster_format(module, inputs) -> tuple:
    """(module, inputs, {format: eager median ms}) in the faster memory format; only models
    with a 4-D input try channels-last. ``module`` is changed in place."""
    import torch
    if not any(t.dim() == 4 for t in inputs):
        return module, inputs, {}
    times = dict(contiguous=eager_ms(module, inputs))
    last = [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t
            for t in inputs]
    try:
        module.to(memory_format=torch.channels_last)
        times['channels_last'] = eager_ms(module, last)
    except Exception as exc:
        times['channels_last_error'] = one_line(exc)
    if times.get('channels_last', np.inf) < times['contiguous']:
        return module, last, times
    return module.to(memory_format=torch.contiguous_format), inputs, times


def capture(module, inputs) -> tuple:
    """(CUDA graph of one eager call, its static outputs), warmed up on a side stream as
    ``bench_torch.cuda_graph`` does."""
    import torch
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            module(*inputs)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static = module(*inputs)
    graph.replay()
    torch.cuda.synchronize()
    return graph, static


class Contender:
    """One zoo model in torch: the converted module, its inputs on ``device`` and, on the GPU,
    a CUDA graph of one call where capture works. ``info`` says what was chosen and why;
    ``outputs``: {'eager' | 'graph': outputs on the feeds}."""

    def __init__(self, onnx_path, feeds, work, device='cuda', try_fp16=True):
        import torch
        t0 = time.perf_counter()
        _, stub = import_onnx2torch()
        module, prep = converted(onnx_path, feeds, work, stub)
        names = input_names(prep['path'])
        self.module, self.inputs, outputs, precision, fp16_error = with_precision(
            module, feeds, names, device, try_fp16)
        self.info = dict(prep, precision=precision, fp16_error=fp16_error,
                         host_constants=keep_on_host(self.module), torchvision_stub=stub,
                         torch=torch.__version__)
        self.outputs = dict(eager=outputs)
        self.graph, self.device = None, device
        if device == 'cuda':
            with torch.inference_mode():
                self._on_gpu()
        else:
            self.info['graph_error'] = f'no CUDA graph on {device}'
        self.info['prepare_s'] = time.perf_counter() - t0

    def _on_gpu(self):
        self.module, self.inputs, self.info['formats'] = faster_format(self.module, self.inputs)
        self.outputs['eager'] = run_once(self.module, self.inputs)
        try:
            self.graph, static = capture(self.module, self.inputs)
            self.outputs['graph'] = as_list(static)
        except Exception as exc:
            self.info['graph_error'] = one_line(exc)

    def time(self, contender, runs, warmup) -> dict:
        """CUDA-event timing of ``runs`` eager calls or graph replays (wall clock off the
        GPU)."""
        import torch
        from bench_torch import time_calls
        from benchlib import stats, wall_times
        if contender == 'graph' and self.graph is None:
            return dict(error=self.info['graph_error'])
        fn = self.graph.replay if contender == 'graph' else lambda: self.module(*self.inputs)
        with torch.inference_mode():
            if self.device != 'cuda':
                return stats(wall_times(fn, runs, warmup), minimum=True)
            return time_calls(fn, runs, warmup)


def answer(state, request) -> dict:
    """One request: ('load', onnx path, feeds) -> {info, outputs}; ('time', 'eager' | 'graph',
    runs, warmup) -> a timing. A failure is {error: 'torch: ...'}, never an exception."""
    try:
        if request[0] == 'load':
            state.pop('model', None)
            state['model'] = Contender(request[1], request[2], state['work'], state['device'])
            return dict(info=state['model'].info, outputs=state['model'].outputs)
        return state['model'].time(*request[1:])
    except NotConvertible as exc:
        return dict(error=f'torch: {exc.what}: {exc}')
    except Exception as exc:
        return dict(error=f'torch: {one_line(exc)}', cuda_error=True)


def serve(conn, work, device='cuda') -> None:
    """The child's loop: answer the parent's requests on ``conn`` until ('close',)."""
    import torch
    torch.backends.cudnn.benchmark = True
    Path(work).mkdir(parents=True, exist_ok=True)
    state = dict(work=work, device=device)
    for request in iter(conn.recv, ('close',)):
        conn.send(answer(state, request))
