"""The one frame path: an HxWx3 BGR (or HxW grey) uint8 image in, [Detection] out.

    detector = Detector(engine)              # host or GPU path, chosen here, once
    dets = detector.detect(image_bgr)        # the DetectParams given at construction
    times = {}
    dets = detector.detect(image_bgr, DetectParams(conf_threshold=0.4), times)

Host path: ``detect.preprocess`` (letterbox or stretch, colour order, scaling), ``engine.run``,
``heads.decode`` (numpy decode + class-aware NMS) and ``detect.to_detections`` (boxes back in
image pixels; a pose head's keypoints too, ``heads_pose.attach_keypoints``). GPU path: the
backend's frame pipeline (``Backend.frame_pipeline``: upload, letterbox, network, decode and NMS
in one CUDA graph launch; only the detections come back); it decodes boxes only, so a pose head
takes the host path after the GPU engine.
``path='auto'`` takes the GPU path when the backend offers one; 'host' and 'gpu' force a path
('gpu' raises when there is none). Both paths give the same detections up to FP16 rounding.

Used by the CLI (``tx2-infer run``) and the ROS node (``tx2_infer_ros``).
"""
import time

import cv2
import numpy as np

from tx2_infer_core import detect, heads, heads_pose
from tx2_infer_core.detect_params import DEFAULTS, DetectParams
from tx2_infer_core.errors import InputError, Tx2InferError

__all__ = ['Detector', 'DetectParams', 'PATHS', 'STAGES', 'as_bgr']

PATHS = ('auto', 'host', 'gpu')
STAGES = ('preprocess', 'infer', 'postprocess')   # the keys of ``detect``'s ``times``


def as_bgr(image) -> np.ndarray:
    """An HxWx3 uint8 image as it is, an HxW uint8 (grey) image as HxWx3; else InputError."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or not (
            image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        shape = getattr(image, 'shape', type(image).__name__)
        dtype = getattr(image, 'dtype', '')
        raise InputError(f'expected an HxWx3 or HxW uint8 image, got {shape} {dtype}'.rstrip())
    if min(image.shape[:2]) == 0:
        raise InputError(f'the image is empty ({image.shape})')
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image


class Detector:
    """An engine seen as a detector: images in, detections in image pixels out.

    ``engine`` is an ``Engine`` (or anything with ``input_specs``, ``output_specs``, ``meta``,
    ``run`` and, unless ``path='host'``, ``backend``). The head, labels and input format come
    from ``engine.meta`` (the head is guessed from the output shapes when absent); ``labels``
    overrides the model's. ``params`` are the default ``DetectParams`` of ``detect``.
    """

    def __init__(self, engine, params: DetectParams = DEFAULTS, labels=None, path='auto'):
        if path not in PATHS:
            raise Tx2InferError(f"path must be one of {', '.join(PATHS)}, not {path!r}")
        meta = engine.meta or {}
        self.engine, self.params = engine, params
        self.spec = engine.input_specs[0]
        self.head = meta.get('head') or heads.head_from_outputs(
            {v.name: v.shape for v in engine.output_specs})
        heads.check_head(self.head)
        self.input_format = detect.resolve_input_format(meta.get('input_format'),
                                                        self.spec.shape)
        self.labels = labels if labels is not None else meta.get('labels')
        self.frames = None if path == 'host' else engine.backend.frame_pipeline
        if path == 'gpu' and self.frames is None:
            raise Tx2InferError('this engine has no GPU frame pipeline (it needs the cuda '
                                'backend, one 3-channel image input and a yolov8, yolov5, '
                                'darknet_yolo or classifier head)')
        self.path = 'host' if self.frames is None else 'gpu'

    def input_size(self) -> tuple:
        """(height, width) of the network input, whatever its layout."""
        shape = tuple(self.spec.shape)
        return shape[2:4] if self.input_format['layout'] == 'NCHW' else shape[1:3]

    def detect(self, image, params: DetectParams = None, times: dict = None) -> list:
        """One frame -> [Detection] in image pixels, best first.

        ``params`` default to the detector's; ``times``, when a dict, receives the seconds of
        each of ``STAGES`` (on the GPU path the whole frame counts as 'infer').
        """
        params = self.params if params is None else params
        image = as_bgr(image)
        run = self._detect_gpu if self.frames is not None else self._detect_host
        dets, stage_times = run(image, params)
        if times is not None:
            times.update(stage_times)
        return dets

    def warm_up(self) -> None:
        """One frame of the input size (grey), so every buffer is touched before real ones."""
        height, width = self.input_size()
        self.detect(np.full((height, width, 3), 114, np.uint8),
                    DetectParams(conf_threshold=0.5, max_detections=1))

    def _detect_host(self, image, params):
        t0 = time.perf_counter()
        tensor, lb = detect.preprocess(image, self.spec.shape, self.input_format)
        t1 = time.perf_counter()
        outputs = self.engine.run({self.spec.name: tensor.astype(self.spec.dtype, copy=False)})
        t2 = time.perf_counter()
        boxes, scores, ids, rows = heads.decode_rows(
            outputs, self.head, params.conf_threshold, params.iou_threshold,
            params.max_detections, params.classes)
        dets = detect.to_detections(boxes, scores, ids, lb, self.head, self.labels)
        if self.head['type'] == 'yolov8_pose':   # the GPU path has no pose decode: host only
            heads_pose.attach_keypoints(dets, outputs, self.head, rows, lb)
        t3 = time.perf_counter()
        return dets, {'preprocess': t1 - t0, 'infer': t2 - t1, 'postprocess': t3 - t2}

    def _detect_gpu(self, image, params):
        t0 = time.perf_counter()
        boxes, scores, ids = self.frames.detect(image, params.conf_threshold,
                                                params.iou_threshold, params.max_detections,
                                                params.classes)
        t1 = time.perf_counter()
        dets = detect.make_detections(boxes, scores, ids, self.labels)
        t2 = time.perf_counter()
        return dets, {'preprocess': 0.0, 'infer': t1 - t0, 'postprocess': t2 - t1}
