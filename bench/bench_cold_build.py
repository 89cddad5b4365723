"""Cold build (empty kernel cache) and plan load of the CUDA engine with the kernel compiles
limited to N parallel workers (issue 12's goal: at most 10 s a model with 4, as on a Jetson's
CPU; plan load under 0.5 s). Models: PyTorch exports (random weights: only the graph matters).

    python bench/bench_cold_build.py --models resnet50,yolov5s --workers 4,16 --out x.json
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from bench_ours import build_and_load  # noqa: E402
from bench_splitk import export_torch  # noqa: E402
from benchlib import cpu_name, gpu_facts, versions, write_json  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', default='resnet50,yolov5s')
    ap.add_argument('--workers', default='4,16')
    ap.add_argument('--onnx-dir', default='/tmp/splitk_onnx')
    ap.add_argument('--out', required=True)
    args = ap.parse_args(argv)
    models = export_torch(args.models.split(','), args.onnx_dir)
    import pycuda.driver as drv
    doc = dict(what=__doc__.splitlines()[0], device=gpu_facts(drv), cpu=cpu_name(),
               cores=os.cpu_count(), versions=versions('numpy', 'pycuda'), results={})
    for name, (model, _) in models.items():
        for workers in args.workers.split(','):
            os.environ['TX2_INFER_COMPILE_WORKERS'] = workers
            with tempfile.TemporaryDirectory() as folder:
                engine, times = build_and_load(model, folder, name)
                engine.close()
            doc['results'][f'{name} workers={workers}'] = times
            print(name, workers, {k: round(v, 3) for k, v in times.items()}, flush=True)
    write_json(args.out, doc, indent=1)


if __name__ == '__main__':
    main()
