"""The PyTorch side of ``bench_cuda.py``, run as a child process so that the parent can cap a
slow ``torch.compile`` (it kills the child's process group at its deadline) and every
contender starts from a fresh process.

    python bench/bench_torch.py export --dir D [--models resnet50,yolov5s]
    python bench/bench_torch.py time --model yolov5s --contenders eager,cuda_graph,\
reduce-overhead --out F.json [--runs 300 --warmup 50]

``export`` writes ``D/<model>.onnx`` (opset 17, FP32, fixed shapes) and ``D/export.json``.
``time`` runs FP16 batch-1 contenders (``eager``, ``cuda_graph``, ``reduce-overhead``,
``max-autotune``), timing each call with CUDA events, and rewrites ``F.json`` after each one
so that a killed child still leaves what it finished.
"""
import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from benchlib import stats  # noqa: E402
from torch_models import MODELS, make  # noqa: E402

OPSET = 17


def export(names, folder):
    """Export each model to ``folder/<name>.onnx``; returns {name: exporter used or error}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    done = {}
    for name in names:
        model, shape, input_name, _ = make(name)
        path = folder / f'{name}.onnx'
        x = torch.randn(shape)
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


def prepare(name):
    """FP16 model and a random input on the GPU (channels-last for convolution nets)."""
    model, shape, _, channels_last = make(name)
    model = model.cuda().half().eval()
    x = torch.randn(shape, device='cuda').half()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x


def eager(model, x, runs, warmup):
    """Plain eager calls."""
    return time_calls(lambda: model(x), runs, warmup)


def cuda_graph(model, x, runs, warmup):
    """Eager model captured once with torch.cuda.graph, replayed."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            model(x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(x)
    return time_calls(graph.replay, runs, warmup)


def compiled(model, x, runs, warmup, mode):
    """torch.compile(mode=...); compile_s covers compilation and the first three calls."""
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
    result = time_calls(call, runs, warmup)
    result['compile_s'] = compile_s
    return result


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


def time_model(name, contenders, out, runs, warmup):
    """Time ``contenders`` on model ``name``; rewrite ``out`` (JSON) after each."""
    torch.backends.cudnn.benchmark = True
    result = dict(model=name, versions=versions(), contenders={})
    model, x = prepare(name)
    with torch.inference_mode():
        for c in contenders:
            print(f'{name} {c} ...', flush=True)
            try:
                result['contenders'][c] = CONTENDERS[c](model, x, runs, warmup)
            except Exception as exc:
                result['contenders'][c] = dict(error=repr(exc)[:500])
            print(f'{name} {c}: {result["contenders"][c]}', flush=True)
            Path(out).write_text(json.dumps(result, indent=1))
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
    args = ap.parse_args()
    if args.command == 'export':
        export(args.models.split(','), args.dir)
    else:
        time_model(args.model, args.contenders.split(','), args.out, args.runs, args.warmup)


if __name__ == '__main__':
    main()
