"""CUDA accuracy acceptance of issue 5: the three real models on the real photos, both conv
paths, against ONNX Runtime FP32.

Two steps, so the device gets only small files:

- ``prepare DIR`` (on any CPU): re-encodes the photos, runs ONNX Runtime FP32 (YOLOv8 and
  open_nsfw from their ONNX files; YOLOv3-tiny through our ONNX export of the Darknet import)
  and our CPU engine, keeps only their detections (``refs.json``), and writes each built
  plan with its weight matrices stored FP16 (what the CUDA backend uploads anyway).
- ``run DIR OUT.json`` (on the GPU): loads each plan on the CUDA backend with conv_path 'tc'
  and 'simt', detects on every photo through ``engine.run`` + host decode and through the
  GPU frame pipeline, and scores both as mAP@0.5 against ORT's detections (classifier:
  top-1 equal).
"""
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tx2_infer_core import assets  # noqa: E402
from tx2_infer_core.detect_params import DEFAULTS, DetectParams  # noqa: E402
from tx2_infer_core.detector import Detector  # noqa: E402
from tx2_infer_core.engine import Engine  # noqa: E402
from tx2_infer_core.metrics import map50, pairing  # noqa: E402

NSFW_FORMAT = {'color': 'BGR', 'layout': 'NHWC', 'mean': [104, 117, 123], 'scale': 1.0,
               'resize': 'stretch'}
AT_REF = DEFAULTS                                # ORT's and the CPU engine's detections
AT_OURS = DetectParams(conf_threshold=0.05)      # ours, scored down to a low threshold
CONF_REF, CONF_OURS, IOU = AT_REF.conf_threshold, AT_OURS.conf_threshold, AT_REF.iou_threshold
PATHS = ('tc', 'simt')


def _models():
    cfg, weights, names = assets.yolov3_tiny()
    return {'yolov8': {'model': assets.fetch('yolov8-fall.onnx')},
            'yolov3-tiny': {'model': cfg, 'weights': weights, 'names': names},
            'open_nsfw': {'model': assets.fetch('open_nsfw.onnx'), 'format': NSFW_FORMAT}}


def rows(dets) -> list:
    """[Detection] -> [[x1, y1, x2, y2, score, class], ...] (JSON-able)."""
    return [[round(d.x1, 3), round(d.y1, 3), round(d.x2, 3), round(d.y2, 3),
             round(d.score, 5), d.class_id] for d in dets]


def _ort_session(spec):
    import onnxruntime as ort
    if 'weights' in spec:
        from tx2_infer_core.darknet import load_darknet
        from tx2_infer_core.onnx_export import to_onnx
        graph = load_darknet(spec['model'], spec['weights'], names_path=spec['names'])
        data = to_onnx(graph).SerializeToString()
    else:
        data = Path(spec['model']).read_bytes()
    return ort.InferenceSession(data, providers=['CPUExecutionProvider'])


class OrtEngine:
    """Enough of the Engine interface for a host-path ``Detector`` over an ORT session."""

    def __init__(self, session, engine):
        self.session, self.engine = session, engine
        self.meta, self.input_specs = engine.meta, engine.input_specs
        self.output_specs = engine.output_specs

    def run(self, feeds):
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feeds)))


def _fp16_plan(engine, path):
    """Save ``engine``'s plan with its float weight matrices (ndim >= 2) stored FP16."""
    weights = engine.graph.weights
    for name, array in list(weights.items()):
        array = np.asarray(array)
        if array.dtype == np.float32 and array.ndim >= 2:
            weights[name] = array.astype(np.float16)
    engine.save(path)


def prepare(folder):
    """Photos, ORT and CPU-engine detections and FP16 plans into ``folder``."""
    folder = Path(folder)
    (folder / 'photos').mkdir(parents=True, exist_ok=True)
    photos = {}
    for path in assets.fetch_photos():
        out = folder / 'photos' / f'{path.stem}.jpg'
        cv2.imwrite(str(out), cv2.imread(str(path)), [cv2.IMWRITE_JPEG_QUALITY, 92])
        photos[out.name] = cv2.imread(str(out))
    refs = {}
    for name, spec in _models().items():
        t0 = time.time()
        engine = Engine.build(spec['model'], backend='numpy', weights_path=spec.get('weights'))
        if 'format' in spec:
            engine.graph.meta['input_format'] = dict(spec['format'])
        oracle = Detector(OrtEngine(_ort_session(spec), engine), AT_REF, path='host')
        ours = Detector(engine, AT_REF)
        refs[name] = {}
        for photo, image in photos.items():
            refs[name][photo] = {'ort': rows(oracle.detect(image)),
                                 'cpu': rows(ours.detect(image))}
        _fp16_plan(engine, folder / f'{name}.tx2plan')
        engine.close()
        print(f'{name}: {time.time() - t0:.1f} s', flush=True)
    (folder / 'refs.json').write_text(json.dumps(refs))


def _score(model, refs, ours):
    """mAP@0.5 (detectors) or the top-1 agreement (classifier) of ``ours`` {photo: rows}."""
    names = sorted(refs)
    if model == 'open_nsfw':
        same = [bool(ours[p] and refs[p]['ort'] and ours[p][0][5] == refs[p]['ort'][0][5])
                for p in names]
        return {'top1_equal': sum(same), 'of': len(same)}
    return {'map50': map50([ours[p] for p in names], [refs[p]['ort'] for p in names])}


def _pairs(refs, ours):
    """``metrics.pairing`` both ways between ours and the CPU engine's detections."""
    total = {'exact': 0, 'flip': 0, 'missing': 0, 'min_iou': 1.0}
    for photo in refs:
        for a, b in ((ours[photo], refs[photo]['cpu']), (refs[photo]['cpu'], ours[photo])):
            pair = pairing(a, b, CONF_REF)
            for key in ('exact', 'flip', 'missing'):
                total[key] += pair[key]
            total['min_iou'] = min(total['min_iou'], pair['min_iou'])
    return total


def run(folder, out_json):
    """Both conv paths of every plan on this GPU, scored against ORT (see the module doc)."""
    folder = Path(folder)
    refs = json.loads((folder / 'refs.json').read_text())
    photos = {p.name: cv2.imread(str(p)) for p in sorted((folder / 'photos').glob('*.jpg'))}
    result = {'conf_ours': CONF_OURS, 'conf_ort': CONF_REF, 'iou': IOU, 'photos': len(photos),
              'models': {}}
    for model in refs:
        for path in PATHS:
            engine = Engine.load(folder / f'{model}.tx2plan', backend='cuda',
                                 backend_options={'conv_path': path})
            host_path, gpu_path = Detector(engine, path='host'), Detector(engine, path='gpu')
            host = {p: rows(host_path.detect(img, AT_OURS)) for p, img in photos.items()}
            gpu = {p: rows(gpu_path.detect(img, AT_OURS)) for p, img in photos.items()}
            at_ref = {p: rows(gpu_path.detect(img, AT_REF)) for p, img in photos.items()}
            result['device'] = engine.backend.ctx.name
            engine.close()
            entry = {'engine_run_host_decode': _score(model, refs[model], host),
                     'gpu_pipeline': _score(model, refs[model], gpu),
                     'gpu_pipeline_vs_cpu_detect_image': _pairs(refs[model], at_ref)}
            result['models'][f'{model}/{path}'] = entry
            print(f'{model:12s} {path:5s} {json.dumps(entry)}', flush=True)
    result['versions'] = _versions()
    Path(out_json).write_text(json.dumps(result, indent=1))
    return result


def _versions():
    import pycuda.driver as drv
    return {'python': platform.python_version(), 'numpy': np.__version__,
            'driver': drv.get_driver_version(), 'cuda_runtime': drv.get_version()}


if __name__ == '__main__':
    if sys.argv[1] == 'prepare':
        prepare(sys.argv[2])
    else:
        run(sys.argv[2], sys.argv[3])
