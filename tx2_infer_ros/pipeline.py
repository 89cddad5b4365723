"""The detector's engine side without ROS: load or build the engine, then run one frame with
per-stage timings. Same steps as ``tx2_infer_core.detect.detect_image``, timed one by one.
"""
import ctypes
import time
from pathlib import Path

import numpy as np

from tx2_infer_core import detect
from tx2_infer_core.engine import Engine, cuda_available
from tx2_infer_core.errors import Tx2InferError

MODEL_SUFFIXES = ('.onnx', '.cfg', '.tx2plan')


def default_model():
    """(cfg path, labels path) of the default model, Darknet YOLOv3-tiny (COCO)."""
    from tx2_infer_core import assets
    cfg, _weights, names = assets.yolov3_tiny()
    return str(cfg), str(names)


def _check_model_path(model_path):
    path = Path(model_path)
    if path.suffix not in MODEL_SUFFIXES:
        raise Tx2InferError(f"model_path '{model_path}' is not a model file; expected "
                            f"{', '.join(MODEL_SUFFIXES)}")
    if not path.is_file():
        raise Tx2InferError(f"model_path '{model_path}' does not exist")
    if path.suffix == '.cfg' and not path.with_suffix('.weights').is_file():
        raise Tx2InferError(f"Darknet weights '{path.with_suffix('.weights')}' not found "
                            f"beside '{model_path}'")


def reuse_freed_memory(max_block=32 << 20) -> bool:
    """Ask glibc to keep freed blocks up to ``max_block`` bytes (32 MiB, the most every glibc
    accepts) for reuse instead of unmapping them. A frame's big arrays (input tensor, outputs,
    the received image) then cost no munmap and no fresh page faults: measured here (416x416,
    2-core VM) preprocess 6.6 -> 2-3 ms and 1.5 ms saved freeing the outputs. Process-wide;
    resident memory stays at its peak. False where mallopt is not available (not glibc)."""
    m_trim_threshold, m_mmap_threshold = -1, -3
    try:
        libc = ctypes.CDLL('libc.so.6')
        return bool(libc.mallopt(m_mmap_threshold, int(max_block)) and
                    libc.mallopt(m_trim_threshold, 4 * int(max_block)))
    except (OSError, AttributeError):
        return False


class DetectorPipeline:
    """An engine plus what a frame needs: input spec, head, input format and labels."""

    def __init__(self, model_path='', labels_path='', input_size=0, backend='auto',
                 precision='fp32', log=print):
        """Load a plan or build (and cache) the engine; ``log(text)`` reports progress."""
        default_labels = ''
        if not model_path:
            model_path, default_labels = default_model()
        _check_model_path(model_path)
        if backend == 'auto':
            backend = 'cuda' if cuda_available() else 'cpu'
        self.backend = backend
        shape = (1, 3, input_size, input_size) if input_size else None
        start = time.perf_counter()
        if model_path.endswith('.tx2plan'):
            log(f'loading plan {model_path} on {self.backend}')
            self.engine = Engine.load(model_path, self.backend)
        else:
            log(f'loading or building the engine for {model_path} ({precision}, '
                f'{self.backend}, input {input_size or "from the model"}); a first build '
                'takes a while and is cached')
            self.engine = Engine.build_cached(model_path, shape, precision, self.backend)
        log(f'engine ready in {time.perf_counter() - start:.1f} s')
        self.model_path, self.precision = model_path, precision
        self.spec = self.engine.input_specs[0]
        meta = self.engine.meta or {}
        self.head = meta.get('head') or detect.head_from_outputs(
            {v.name: v.shape for v in self.engine.output_specs})
        self.input_format = meta.get('input_format')
        labels_path = labels_path or default_labels
        self.labels = detect.load_labels(labels_path) if labels_path else meta.get('labels')
        self.warm_up()

    def warm_up(self) -> None:
        """One run on a grey frame, so buffers are touched before the first real image."""
        h, w = (self.spec.shape[2], self.spec.shape[3]) if self.spec.shape[1] == 3 else \
            (self.spec.shape[1], self.spec.shape[2])
        self.process(np.full((h, w, 3), 114, np.uint8), 0.5, 0.45, 1, None)

    def process(self, image_bgr, conf, iou, max_detections, class_ids):
        """One frame -> ([Detection] in original pixels, {stage: seconds}).

        On a CUDA engine with a frame pipeline the whole frame (preprocess, inference, decode,
        NMS) is one GPU graph launch, timed as 'infer'."""
        if getattr(self.engine.backend, 'frame_pipeline', None) is not None:
            start = time.perf_counter()
            dets = detect.detect_image(self.engine, image_bgr, conf, iou, max_detections,
                                       class_ids, self.labels)
            return dets, {'preprocess': 0.0, 'infer': time.perf_counter() - start,
                          'postprocess': 0.0}
        t0 = time.perf_counter()
        tensor, lb = detect.preprocess(image_bgr, self.spec.shape, self.input_format)
        t1 = time.perf_counter()
        outputs = self.engine.run({self.spec.name: tensor.astype(self.spec.dtype, copy=False)})
        t2 = time.perf_counter()
        boxes, scores, ids = detect.decode(outputs, self.head, conf, iou, max_detections,
                                           class_ids)
        dets = detect.to_detections(boxes, scores, ids, lb, self.head, self.labels)
        t3 = time.perf_counter()
        return dets, {'preprocess': t1 - t0, 'infer': t2 - t1, 'postprocess': t3 - t2}

    def info(self) -> dict:
        """Facts for diagnostics: backend, precision, model, input shape."""
        return {'backend': self.backend, 'precision': self.precision,
                'model': Path(self.model_path).name,
                'input_shape': 'x'.join(str(d) for d in self.spec.shape)}

    def close(self) -> None:
        """Release the engine."""
        self.engine.close()
