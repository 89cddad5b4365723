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
A plan built for a batch of N images (input N x 3 x H x W) runs up to N frames at once with
``detect_batch`` (one engine run, or one graph launch on the GPU; each image decoded alone); a
call with fewer images pads the batch with copies of the last image so the shapes stay static
(counted in ``padded``). ``detect`` on such a plan is a batch of one.
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
        self.batch = int(self.spec.shape[0]) if len(self.spec.shape) == 4 else 1
        self.batches = self.padded = 0   # detect_batch calls, and the slots padded in them

    def input_size(self) -> tuple:
        """(height, width) of the network input, whatever its layout."""
        shape = tuple(self.spec.shape)
        return shape[2:4] if self.input_format['layout'] == 'NCHW' else shape[1:3]

    def detect(self, image, params: DetectParams = None, times: dict = None,
               overlap=None) -> list:
        """One frame -> [Detection] in image pixels, best first.

        ``params`` default to the detector's; ``times``, when a dict, receives the seconds of
        each of ``STAGES`` (on the GPU path the whole frame counts as 'infer'). ``overlap``, a
        callable that does not need the frame's detections (the tracker's prediction), runs
        while the GPU works on the frame; on the host path, before the engine runs.
        """
        if self.batch > 1:
            return self.detect_batch([image], params, times, overlap)[0]
        params = self.params if params is None else params
        image = as_bgr(image)
        run = self._detect_gpu if self.frames is not None else self._detect_host
        dets, stage_times = run(image, params, overlap)
        if times is not None:
            times.update(stage_times)
        return dets

    def detect_batch(self, images, params: DetectParams = None, times: dict = None,
                     overlap=None) -> list:
        """Up to ``batch`` frames -> one [Detection] list per frame, in order, as ``detect``
        gives each: one engine run (one graph launch on the GPU) for all of them. Fewer frames
        than ``batch`` pad the rest of the batch with the last one (``padded`` counts the
        slots). ``times`` and ``overlap`` as ``detect``'s, for the whole batch."""
        params = self.params if params is None else params
        images = [as_bgr(image) for image in images]
        if not 1 <= len(images) <= self.batch:
            raise InputError(f'detect_batch takes 1 to {self.batch} images (the engine\'s '
                             f'batch), got {len(images)}')
        run = self._batch_gpu if self.frames is not None else self._batch_host
        results, stage_times = run(images, params, overlap)
        self.batches += 1
        self.padded += self.batch - len(images)
        if times is not None:
            times.update(stage_times)
        return results

    def warm_up(self) -> None:
        """One frame of the input size (grey), so every buffer is touched before real ones."""
        height, width = self.input_size()
        grey = np.full((height, width, 3), 114, np.uint8)
        params = DetectParams(conf_threshold=0.5, max_detections=1)
        if self.batch > 1:      # a full batch; not counted
            self.detect_batch([grey] * self.batch, params)
            self.batches = self.padded = 0
        else:
            self.detect(grey, params)

    def _detect_host(self, image, params, overlap=None):
        if overlap is not None:
            overlap()
        t0 = time.perf_counter()
        tensor, lb = detect.preprocess(image, self.spec.shape, self.input_format)
        t1 = time.perf_counter()
        outputs = self.engine.run({self.spec.name: tensor.astype(self.spec.dtype, copy=False)})
        t2 = time.perf_counter()
        dets = self._decode(outputs, lb, params)
        t3 = time.perf_counter()
        return dets, {'preprocess': t1 - t0, 'infer': t2 - t1, 'postprocess': t3 - t2}

    def _decode(self, outputs, lb, params):
        """One image's outputs (batch of one) -> [Detection] in its pixels."""
        boxes, scores, ids, rows = heads.decode_rows(
            outputs, self.head, params.conf_threshold, params.iou_threshold,
            params.max_detections, params.classes)
        dets = detect.to_detections(boxes, scores, ids, lb, self.head, self.labels)
        if self.head['type'] == 'yolov8_pose':   # the GPU path has no pose decode: host only
            heads_pose.attach_keypoints(dets, outputs, self.head, rows, lb)
        return dets

    def _batch_host(self, images, params, overlap=None):
        if overlap is not None:
            overlap()
        t0 = time.perf_counter()
        one = (1,) + tuple(self.spec.shape[1:])
        prepared = [detect.preprocess(image, one, self.input_format) for image in images]
        tensor = detect.stack_batch([t for t, _ in prepared], self.batch)
        t1 = time.perf_counter()
        outputs = self.engine.run({self.spec.name: tensor.astype(self.spec.dtype, copy=False)})
        t2 = time.perf_counter()
        results = [self._decode(detect.image_outputs(outputs, b), lb, params)
                   for b, (_, lb) in enumerate(prepared)]
        t3 = time.perf_counter()
        return results, {'preprocess': t1 - t0, 'infer': t2 - t1, 'postprocess': t3 - t2}

    def _batch_gpu(self, images, params, overlap=None):
        t0 = time.perf_counter()
        found = self.frames.detect_batch(images, params.conf_threshold, params.iou_threshold,
                                         params.max_detections, params.classes, overlap)
        t1 = time.perf_counter()
        results = [detect.make_detections(boxes, scores, ids, self.labels)
                   for boxes, scores, ids in found]
        t2 = time.perf_counter()
        return results, {'preprocess': 0.0, 'infer': t1 - t0, 'postprocess': t2 - t1}

    def _detect_gpu(self, image, params, overlap=None):
        t0 = time.perf_counter()
        boxes, scores, ids = self.frames.detect(image, params.conf_threshold,
                                                params.iou_threshold, params.max_detections,
                                                params.classes, overlap)
        t1 = time.perf_counter()
        dets = detect.make_detections(boxes, scores, ids, self.labels)
        t2 = time.perf_counter()
        return dets, {'preprocess': 0.0, 'infer': t1 - t0, 'postprocess': t2 - t1}
