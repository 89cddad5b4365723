"""The PyTorch side of ``bench_cuda.py``, run as a child process so that the parent can cap a
slow ``torch.compile`` (it kills the child's process group at its deadline) and every
contender starts from a fresh process.

    python bench/bench_torch.py export --dir D [--models resnet50,yolov5s] [--inputs I]
    python bench/bench_torch.py time --model yolov5s --contenders eager,cuda_graph,\
reduce-overhead --out F.json [--runs 300 --warmup 50] [--input I/yolov5s.npz --outputs P]

``export`` writes ``D/<model>.onnx`` (opset 17, FP32, fixed shapes), ``D/export.json`` and,
with ``--inputs`` (the race inputs ``I/<model>.npz``, key ``x``), the reference: torch eager
FP32 (TF32 off) on that input, ``D/<model>.fp32.npz`` (``race.save_outputs``).
``time`` runs FP16 batch-1 contenders (``eager``, ``cuda_graph``, ``reduce-overhead``,
``max-autotune``) on the race input (random without ``--input``), timing each call with CUDA
events, saves each contender's output on that input to ``P-<contender>.npz`` and rewrites
``F.json`` after each step (a contender's ``stage`` first) so that a killed child still
leaves what it finished and how far it got.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from benchlib import stats  # noqa: E402
from race import save_outputs  # noqa: E402
from torch_models import MODELS, make  # noqa: E402

OPSET = 17


def as_list(out) -> list:
    """A model's output (a tensor or a tuple of them) as float32 numpy arrays."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return [t.detach().float().cpu().numpy() for t in outs]


def load_input(path, shape):
    """The race input (``path``: an .npz with ``x``) or, without one, a seeded random one."""
    if not path or not Path(path).is_file():
        return torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with np.load(path) as data:
        return torch.from_numpy(data['x'].astype(np.float32))


def reference(model, x):
    """Torch eager FP32 outputs on ``x``, TF32 off (on the GPU when there is one)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    with torch.inference_mode():
        return as_list(model.to(dev)(x.to(dev)))


def export(names, folder, inputs=None):
    """Export each model to ``folder/<name>.onnx`` (and its FP32 reference outputs on the race
    input of ``inputs``); returns {name: exporter used or error}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done = {}
    for name in names:
        model, shape, input_name, _ = make(name)
        path = folder / f'{name}.onnx'
        x = load_input(inputs and Path(inputs) / f'{name}.npz', shape)
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                torch.onnx.export(model, (x,), str(path), opset_version=OPSET,
                                  input_names=[input_name], do_constant_folding=True,
                                  dynamo=False)
            done[name] = dict(exporter='torchscript', opset=OPSET)
        except Exception as exc:  # the TorchScript exporter may be gone from this torch
            print(f'{name}: TorchScript export failed ({exc!r}); trying dynamo', flush=True)
            with torch.no_grad():
                torch.onnx.export(model, (x,), str(path), opset_version=OPSET,
                                  input_names=[input_name], dynamo=True, external_data=False)
            done[name] = dict(exporter='dynamo', opset=OPSET, torchscript_error=repr(exc))
        done[name].update(seconds=time.perf_counter() - t0, input=input_name,
                          shape=list(shape), bytes=path.stat().st_size)
        if inputs and (Path(inputs) / f'{name}.npz').is_file():
            save_outputs(folder / f'{name}.fp32.npz', reference(model, x))
        print(f'exported {name}: {done[name]}', flush=True)
    (folder / 'export.json').write_text(json.dumps(done, indent=1))
    return done


def time_calls(fn, runs, warmup) -> dict:
    """CUDA-event time of each of ``runs`` calls of ``fn()`` (synchronised), after warm-up."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(runs):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return stats(times, minimum=True)


def prepare(name, input_path=None):
    """FP16 model and the race input on the GPU (channels-last for convolution nets)."""
    model, shape, _, channels_last = make(name)
    model = model.cuda().half().eval()
    x = load_input(input_path, shape).cuda().half()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x


def eager(model, x, runs, warmup, stage):
    """Plain eager calls; (timing, outputs on ``x``)."""
    return time_calls(lambda: model(x), runs, warmup), as_list(model(x))


def cuda_graph(model, x, runs, warmup, stage):
    """Eager model captured once with torch.cuda.graph, replayed; (timing, outputs)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            model(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = model(x)
    return time_calls(graph.replay, runs, warmup), as_list(static_out)


def compiled(model, x, runs, warmup, stage, mode):
    """torch.compile(mode=...); compile_s covers compilation and the first three calls;
    ``stage('timing')`` once compiled. (timing, outputs on ``x``)."""
    stage('compiling')
    torch._dynamo.reset()
    t0 = time.perf_counter()
    fn = torch.compile(model, mode=mode)

    def call():
        torch.compiler.cudagraph_mark_step_begin()
        return fn(x)

    for _ in range(3):
        call()
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - t0
    stage('timing', compile_s=compile_s)
    result = time_calls(call, runs, warmup)
    result['compile_s'] = compile_s
    return result, as_list(call())


CONTENDERS = {'eager': eager, 'cuda_graph': cuda_graph,
              'reduce-overhead': lambda *a: compiled(*a, mode='reduce-overhead'),
              'max-autotune': lambda *a: compiled(*a, mode='max-autotune')}


def versions() -> dict:
    """torch, CUDA, cuDNN and Triton versions and the device name."""
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return dict(torch=torch.__version__, torch_cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version(), triton=triton_version,
                device=torch.cuda.get_device_name(0))


def time_model(name, contenders, out, runs, warmup, input_path=None, outputs=None):
    """Time ``contenders`` on model ``name``; rewrite ``out`` (JSON) after each step; save
    each contender's outputs to ``outputs-<contender>.npz``."""
    torch.backends.cudnn.benchmark = True
    result = dict(model=name, versions=versions(), contenders={})
    t0 = time.perf_counter()

    def write():
        Path(out).write_text(json.dumps(result, indent=1))

    model, x = prepare(name, input_path)
    with torch.inference_mode():
        for c in contenders:
            print(f'{name} {c} ...', flush=True)

            def stage(what, **extra):
                result['contenders'][c] = dict(stage=what, at_s=time.perf_counter() - t0,
                                               **extra)
                write()

            stage('started')
            try:
                timing, outs = CONTENDERS[c](model, x, runs, warmup, stage)
                result['contenders'][c] = dict(timing, finished=True)
                if outputs:
                    save_outputs(f'{outputs}-{c}.npz', outs)
            except Exception as exc:
                result['contenders'][c] = dict(error=repr(exc)[:500])
            print(f'{name} {c}: {result["contenders"][c]}', flush=True)
            write()
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('command', choices=['export', 'time'])
    ap.add_argument('--dir', help='export: output folder')
    ap.add_argument('--models', default=','.join(MODELS))
    ap.add_argument('--model')
    ap.add_argument('--contenders', default='eager,cuda_graph,reduce-overhead')
    ap.add_argument('--out')
    ap.add_argument('--runs', type=int, default=300)
    ap.add_argument('--warmup', type=int, default=50)
    ap.add_argument('--inputs', help='export: folder of the race inputs (<model>.npz)')
    ap.add_argument('--input', help='time: the race input (.npz with x)')
    ap.add_argument('--outputs', help='time: prefix of the saved outputs (.npz)')
    args = ap.parse_args()
    if args.command == 'export':
        export(args.models.split(','), args.dir, args.inputs)
    else:
        time_model(args.model, args.contenders.split(','), args.out, args.runs, args.warmup,
                   args.input, args.outputs)


if __name__ == '__main__':
    main()
