"""INT8 agreement with FP32 on held-out frames, side by side (issue 11), on the CPU.

    python bench/bench_int8_cpu.py [--models yolov3-tiny,yolov8-fall,open_nsfw] [--video 8]

Per model, on the fixed frame set (``int8/frames.py``: photos + vtest.avi frames, calibration
and held-out lists apart), the held-out agreement (mAP@0.5 vs FP32 for detectors, top-1 for
classifiers) of:
- ours, all INT8, entropy; ours, all INT8, min-max (the exact numpy emulation);
- ours, ``mixed`` (budget 0.005; gains = FLOPs here: no GPU timings on the CPU);
- ONNX Runtime's own static quantization (``quantize_static``: QDQ, per-channel, int8
  activations and weights, Entropy and Percentile calibrators, the same calibration frames),
  run by ONNX Runtime.
Writes bench/results/int8_agreement_cpu.json and the per-layer reports of ``mixed``
(bench/results/int8_reports/). Speed is not measured here: INT8 pays only on a GPU.
"""
import argparse
import tempfile
import time
from pathlib import Path

from benchlib import cpu_name, versions, write_json
from tx2_infer_core import assets
from tx2_infer_core.engine import default_meta, import_model
from tx2_infer_core.int8 import calibrate as cal
from tx2_infer_core.int8 import frames as fr
from tx2_infer_core.int8 import sensitivity as sens
from tx2_infer_core.int8.report import write_report
from tx2_infer_core.onnx_export import to_onnx
from tx2_infer_core.passes import optimize

RESULTS = Path(__file__).parent / 'results'
MODELS = {   # name -> (model path, weights, input shape)
    'yolov3-tiny': lambda: (assets.yolov3_tiny()[0], assets.yolov3_tiny()[1], (1, 3, 416, 416)),
    'yolov8-fall': lambda: (assets.fetch('yolov8-fall.onnx'), None, None),
    'open_nsfw': lambda: (assets.fetch('open_nsfw.onnx'), None, None),
    'nudenet-320n': lambda: (assets.fetch('nudenet-320n.onnx'), None, None),
}


class FeedReader:
    """The calibration-data reader ``quantize_static`` asks for."""

    def __init__(self, feeds):
        self.items = iter(feeds)

    def get_next(self):
        return next(self.items, None)


def ort_static(graph, calib, held, method):
    """ONNX Runtime's static quantization of the FP32 model, run on ``held``: outputs."""
    import onnx
    import onnxruntime as ort
    from onnxruntime import quantization as q
    calibrators = {'entropy': q.CalibrationMethod.Entropy,
                   'percentile': q.CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / 'fp32.onnx', Path(tmp) / 'int8.onnx'
        onnx.save(to_onnx(graph), str(fp32))
        q.quantize_static(str(fp32), str(int8), FeedReader(calib),
                          quant_format=q.QuantFormat.QDQ, per_channel=True,
                          activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                          calibrate_method=calibrators[method], op_types_to_quantize=['Conv'])
        session = ort.InferenceSession(str(int8), providers=['CPUExecutionProvider'])
        return [dict(zip(graph.outputs, session.run(graph.outputs, f))) for f in held]


def bench_model(name, video_frames, budget):
    model, weights, shape = MODELS[name]()
    graph = import_model(model, shape, weights)
    default_meta(graph)
    graph, _ = optimize(graph, 2)
    frames = fr.default_frames(video_frames)
    calib = fr.input_feeds(frames.calibration, graph)
    held = fr.input_feeds(frames.held_out, graph)
    evaluator = sens.Evaluator(graph, held)
    thresholds = {m: cal.calibrate(graph, calib, m)[0] for m in cal.METHODS}
    row = {'input_shape': list(graph.values[graph.inputs[0]].shape),
           'head': graph.meta.get('head', {}).get('type'),
           'frames': {'calibration': len(calib), 'held_out': len(held)},
           'fused_convs': sum(n.op == 'FusedConv' for n in graph.nodes)}
    for method in ('entropy', 'minmax', 'percentile'):
        start = time.perf_counter()
        row[f'ours_all_int8_{method}'] = evaluator.agreement(
            sens.full_schedule(graph, thresholds[method]))
        print(f'{name}: all INT8 {method}: {row[f"ours_all_int8_{method}"]:.4f} '
              f'({time.perf_counter() - start:.0f} s)', flush=True)
    start = time.perf_counter()
    schedule, report = sens.choose_schedule(graph, thresholds, calib, held, budget)
    row['ours_mixed'] = report['held_out_agreement']
    row['mixed_int8_layers'] = len(schedule)
    row['mixed_seconds'] = round(time.perf_counter() - start, 1)
    write_report(report, RESULTS / 'int8_reports', f'{name}-mixed')
    print(f'{name}: mixed {row["ours_mixed"]:.4f} with {len(schedule)}/{row["fused_convs"]} '
          'layers in INT8', flush=True)
    for method in ('entropy', 'percentile'):
        outs = ort_static(graph, calib, held, method)
        row[f'ort_static_{method}'] = evaluator.metric([evaluator.results(o) for o in outs])
        print(f'{name}: ORT static {method}: {row[f"ort_static_{method}"]:.4f}', flush=True)
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', default='yolov3-tiny,yolov8-fall,open_nsfw')
    parser.add_argument('--video', type=int, default=8, help='video frames in each list')
    parser.add_argument('--budget', type=float, default=sens.DEFAULT_BUDGET)
    parser.add_argument('--out', default=str(RESULTS / 'int8_agreement_cpu.json'))
    args = parser.parse_args()
    doc = {'what': 'held-out agreement with FP32 (mAP@0.5 detectors, top-1 classifiers); '
                   'ours = exact numpy INT8 emulation; mixed gains = FLOPs (no GPU here)',
           'cpu': cpu_name(), 'versions': versions('numpy', 'onnxruntime', 'onnx'),
           'budget': args.budget, 'models': {}}
    for name in args.models.split(','):
        doc['models'][name] = bench_model(name, args.video, args.budget)
        write_json(args.out, doc)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
