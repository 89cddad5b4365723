"""End-to-end frame latency of the GPU pipeline: a 640x480 uint8 BGR frame in, detections out.

``python bench/bench_pipeline.py DATA OUT.json`` with DATA from ``bench/cuda_accuracy.py
prepare``. Per model and conv path: warm-up, then >= 300 timed frames of
the backend's ``frame_pipeline.detect`` (host wall clock around the whole call: copy into pinned
staging, one graph launch, synchronise, read the detections) and CUDA events around the graph
replay alone; beside it ``Detector(engine, path='host')`` (cv2 letterbox + ``engine.run`` +
numpy decode).
"""
import json
import platform
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import event_times, stats, wall_times  # noqa: E402
from tx2_infer_core.detector import Detector  # noqa: E402
from tx2_infer_core.engine import Engine  # noqa: E402

WARMUP, RUNS = 50, 500


def time_wall(fn, runs=RUNS):
    return stats(wall_times(fn, runs, WARMUP), mean=True, minimum=True)


def time_graph_events(backend, runs=RUNS):
    """CUDA events around the replay of the captured frame graph (device time)."""
    pipe = backend.frame_pipeline
    graph = next(iter(pipe.graphs.values()))[0]
    with backend.ctx:
        times = event_times(backend.ctx.drv, backend.stream, graph.launch, runs, WARMUP)
    return stats(times, mean=True, minimum=True)


def bench_model(folder, model, path, frame):
    engine = Engine.load(folder / f'{model}.tx2plan', backend='cuda',
                         backend_options={'conv_path': path})
    be = engine.backend
    host = Detector(engine, path='host')
    try:
        dets = be.frame_pipeline.detect(frame)
        allocs = be.device_allocations
        row = {'model': model, 'conv_path': path, 'frame': list(frame.shape),
               'detections': int(len(dets[2])),
               'pipeline_end_to_end': time_wall(lambda: be.frame_pipeline.detect(frame)),
               'pipeline_graph_replay_events': time_graph_events(be),
               'host_path_end_to_end': time_wall(lambda: host.detect(frame), runs=300),
               'allocations_during_timing': be.device_allocations - allocs,
               'device': be.ctx.name}
    finally:
        engine.close()
    return row


def main(folder, out_json):
    import pycuda.driver as drv
    folder = Path(folder)
    frame = cv2.resize(cv2.imread(str(folder / 'photos' / 'bus.jpg')), (640, 480))
    rows = [bench_model(folder, m, p, frame) for m in ('yolov8', 'yolov3-tiny')
            for p in ('tc', 'simt')]
    info = {'device': drv.Device(0).name(), 'driver': drv.get_driver_version(),
            'cuda': drv.get_version(),
            'python': platform.python_version(), 'numpy': np.__version__,
            'opencv': cv2.__version__, 'warmup': WARMUP}
    Path(out_json).write_text(json.dumps({'info': info, 'rows': rows}, indent=1))
    print(f"{'model':12s} {'path':5s} {'e2e med':>8s} {'e2e p99':>8s} {'graph med':>9s} "
          f"{'host med':>8s} dets allocs")
    for r in rows:
        print(f"{r['model']:12s} {r['conv_path']:5s} "
              f"{r['pipeline_end_to_end']['median_ms']:8.3f} "
              f"{r['pipeline_end_to_end']['p99_ms']:8.3f} "
              f"{r['pipeline_graph_replay_events']['median_ms']:9.3f} "
              f"{r['host_path_end_to_end']['median_ms']:8.3f} {r['detections']:4d} "
              f"{r['allocations_during_timing']}")


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
