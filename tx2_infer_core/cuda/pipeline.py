"""The per-frame GPU pipeline: uint8 camera image in, final detections out.

One CUDA graph per image size holds the whole frame: upload of the image (pinned staging) and
of the per-frame settings, ``preprocess_letterbox`` (resize + colour order + normalisation
straight into the arena input), the network, the YOLO decode and the sort + greedy NMS of
``kernels/yolo.cu``, and the download of the short list of detections (a classifier downloads
its scores, decoded on the host). Buffers are allocated when the backend is prepared; a new
camera resolution captures a new graph (no allocation unless the frame is larger than any
before).

A plan built for a batch of N images runs up to N frames in one graph (``detect_batch``):
each image has its own staging, letterbox into slice b of the input, decode, candidates, NMS
and detection list; fewer than N images fill the rest of the batch with the last one (the
shapes are static). A graph is captured per tuple of image sizes, so per batch size used
(at most N of them for cameras of one resolution).
"""
import logging

import numpy as np

from tx2_infer_core import heads
from tx2_infer_core.cuda.launch import BLOCK, grid_1d
from tx2_infer_core.cuda.params import PTR, record
from tx2_infer_core.detect import resolve_input_format
from tx2_infer_core.detect_params import DEFAULTS
from tx2_infer_core.errors import InputError, ModelFormatError

log = logging.getLogger('tx2_infer.cuda.pipeline')

MAX_CLASSES, MAX_CAND, MAX_ANCHORS, NMS_THREADS = 1024, 4096, 9, 1024  # as in yolo.cu
MAX_OUT = 1000          # detections a frame can return
MAX_FRAME = (1920, 1080)  # staging allocated at prepare; a larger frame grows it once
MAX_GRAPHS = 4          # captured image sizes kept (at least the batch)

PRE = np.dtype([('src', PTR), ('src_h', 'i4'), ('src_w', 'i4'), ('src_pitch', 'i4'),
                ('y', PTR), ('y_pix', 'i8'), ('y_chan', 'i8'), ('y_off', 'i8'),
                ('out_h', 'i4'), ('out_w', 'i4'), ('top', 'i4'), ('left', 'i4'),
                ('new_h', 'i4'), ('new_w', 'i4'), ('swap_rb', 'i4'), ('pad', 'f4'),
                ('mul', 'f4', (3,)), ('add', 'f4', (3,))], align=True)
POST = np.dtype([('conf', 'f4'), ('iou', 'f4'), ('max_det', 'i4'), ('count', 'i4'),
                 ('allow', 'u1', (MAX_CLASSES,))], align=True)
ROWS = np.dtype([('out', PTR), ('c_stride', 'i8'), ('a_stride', 'i8'), ('anchors', 'i4'),
                 ('classes', 'i4'), ('has_obj', 'i4'), ('post', PTR), ('cand', PTR)],
                align=True)
DARKNET = np.dtype([('out', PTR), ('c_stride', 'i8'), ('y_stride', 'i8'), ('x_stride', 'i8'),
                    ('H', 'i4'), ('W', 'i4'), ('na', 'i4'), ('classes', 'i4'),
                    ('row_base', 'i4'), ('stride_x', 'f4'), ('stride_y', 'f4'),
                    ('scale_x_y', 'f4'), ('anchors', 'f4', (2 * MAX_ANCHORS,)),
                    ('post', PTR), ('cand', PTR)], align=True)
NMS = np.dtype([('cand', PTR), ('post', PTR), ('out', PTR), ('pad_x', 'f4'), ('pad_y', 'f4'),
                ('scale_x', 'f4'), ('scale_y', 'f4'), ('src_w', 'f4'), ('src_h', 'f4')],
               align=True)
CAND_BYTES = 32
OUT_FLOATS = 2 + 6 * MAX_OUT    # count, candidates found, then x1 y1 x2 y2 score class rows
HEADS = ('yolov8', 'yolov5', 'darknet_yolo', 'classifier')


def frame_geometry(src_hw, out_hw, fmt):
    """(top, left, new_h, new_w, scale_x, scale_y) of a letterbox or stretch resize, as
    ``detect.letterbox``/``detect.stretch`` compute them."""
    (src_h, src_w), (out_h, out_w) = src_hw, out_hw
    if fmt['resize'] == 'stretch':
        return 0, 0, out_h, out_w, out_w / src_w, out_h / src_h
    scale = min(out_w / src_w, out_h / src_h)
    new_w, new_h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    return (out_h - new_h) // 2, (out_w - new_w) // 2, new_h, new_w, scale, scale


def supports(graph) -> bool:
    """True when the graph takes one 3-channel image and its meta names a head the pipeline
    decodes."""
    if len(graph.inputs) != 1 or not graph.meta.get('head'):
        return False
    shape = tuple(graph.values[graph.inputs[0]].shape)
    try:
        fmt = resolve_input_format(graph.meta.get('input_format'), shape)
        head = graph.meta['head']
    except (InputError, ModelFormatError):
        return False
    channels = shape[1] if fmt['layout'] == 'NCHW' else shape[-1]
    return (len(shape) == 4 and shape[0] >= 1 and channels == 3 and head.get('type') in HEADS
            and head.get('num_classes', 0) <= MAX_CLASSES)


class FramePipeline:
    """Frames through a prepared ``CudaBackend``; see the module doc. Use ``detect`` (or,
    with labels and ``DetectParams``, ``detector.Detector``: its GPU path)."""

    def __init__(self, backend):
        self.be, self.drv = backend, backend.ctx.drv
        graph = backend.graph
        self.input = graph.inputs[0]
        self.head = graph.meta['head']
        self.fmt = resolve_input_format(graph.meta.get('input_format'),
                                        graph.values[self.input].shape)
        self.batch = int(self._input_nchw()[0])
        self.graphs, self.src, self.src_bytes = {}, None, 0
        pool, n = backend.pool, self.batch
        self.post_dev = pool.alloc(n * POST.itemsize)           # per image of the batch
        self.cand = pool.alloc(n * MAX_CAND * CAND_BYTES)
        self.out_dev = pool.alloc(n * 4 * OUT_FLOATS)
        self.post = self.drv.pagelocked_zeros(n, POST)
        self.out = self.drv.pagelocked_zeros((n, OUT_FLOATS), np.float32)
        self._grow(MAX_FRAME[0] * MAX_FRAME[1] * 3)

    def _grow(self, nbytes):
        """Staging for frames of ``nbytes`` (one region per image of the batch): drops the
        captured graphs (their addresses)."""
        self.close_graphs()
        if self.src is not None:
            self.be.pool.free(self.src)
        self.src = self.be.pool.alloc(self.batch * nbytes)
        self.src_host = self.drv.pagelocked_empty(self.batch * nbytes, np.uint8)
        self.src_bytes = nbytes

    def _src(self, i):
        """Device address of image ``i``'s staging."""
        return int(self.src) + i * self.src_bytes

    def _src_view(self, i, h, w):
        """The pinned host staging of image ``i`` (h x w x 3)."""
        start = i * self.src_bytes
        return self.src_host[start:start + h * w * 3]

    # -- launches of one image size -------------------------------------------------------
    def _pre_launch(self, h, w, b=0, i=0):
        """Letterbox image ``i`` (``h`` x ``w``) into slice ``b`` of the input."""
        slot = self.be.slots[self.input]
        _, _, out_h, out_w = self._input_nchw()
        top, left, new_h, new_w, _, _ = frame_geometry((h, w), (out_h, out_w), self.fmt)
        c_dim, w_dim = (1, 3) if self.fmt['layout'] == 'NCHW' else (3, 2)
        scale = float(self.fmt['scale'])
        mean = np.zeros(3) if self.fmt['mean'] is None else np.asarray(self.fmt['mean'], float)
        rec = record(PRE, src=self._src(i), src_h=h, src_w=w, src_pitch=w * 3,
                     y=int(self.be.arena) + slot.ref.offset, y_pix=slot.strides[w_dim],
                     y_chan=slot.strides[c_dim],
                     y_off=slot.channel_off + b * slot.strides[0], out_h=out_h,
                     out_w=out_w, top=top, left=left, new_h=new_h, new_w=new_w,
                     swap_rb=int(self.fmt['color'] == 'RGB'), pad=float(self.fmt['pad_value']),
                     mul=[scale] * 3, add=list(-mean * scale))
        return 'preprocess', 'preprocess_letterbox', rec, grid_1d(out_h * out_w)

    def _input_nchw(self):
        shape = tuple(self.be.graph.values[self.input].shape)
        if self.fmt['layout'] == 'NCHW':
            return shape
        return shape[0], shape[3], shape[1], shape[2]

    def _out_addr(self, name, b=0):
        """Device address of image ``b``'s part of output ``name`` (FP16), and its slot."""
        slot = self.be.slots[name]
        elems = slot.channel_off + b * slot.strides[0]
        return int(self.be.arena) + slot.ref.offset + 2 * elems, slot

    def _per_image(self, b):
        """The decode/NMS buffers of image ``b``: settings and candidates."""
        return dict(post=int(self.post_dev) + b * POST.itemsize,
                    cand=int(self.cand) + b * MAX_CAND * CAND_BYTES)

    def _decode_launches(self, b=0):
        """yolo.cu decode launches of the head for image ``b`` (none for a classifier)."""
        head, common = self.head, self._per_image(b)
        if head['type'] in ('yolov8', 'yolov5'):
            name = head.get('output') or self.be.graph.outputs[0]
            addr, slot = self._out_addr(name, b)
            has_obj = int(head['type'] == 'yolov5')
            width = 4 + has_obj + head['num_classes']
            rows_first = slot.shape[1] == width and slot.shape[2] != width
            c_st, a_st = ((slot.strides[1], slot.strides[2]) if rows_first
                          else (slot.strides[2], slot.strides[1]))
            anchors = slot.shape[2] if rows_first else slot.shape[1]
            rec = record(ROWS, out=addr, c_stride=c_st, a_stride=a_st, anchors=anchors,
                         classes=head['num_classes'], has_obj=has_obj, **common)
            return [('yolo', 'yolo_decode_rows', rec, grid_1d(anchors))]
        if head['type'] == 'classifier':
            return []
        launches, row_base = [], 0
        for layer in head['layers']:
            launches.append(self._darknet_launch(layer, row_base, common, b))
            row_base += int(launches[-1][2]['H'] * launches[-1][2]['W'] * launches[-1][2]['na'])
        return launches

    def _darknet_launch(self, layer, row_base, common, b=0):
        addr, slot = self._out_addr(layer['output'], b)
        anchors = np.asarray(layer['anchors'], np.float32).reshape(-1)
        na = anchors.size // 2
        if na > MAX_ANCHORS:
            raise ModelFormatError(f'the GPU decode takes at most {MAX_ANCHORS} anchors a layer')
        stride = np.broadcast_to(np.asarray(layer['stride'], np.float32), (2,))
        full = np.zeros(2 * MAX_ANCHORS, np.float32)
        full[:anchors.size] = anchors
        _, _, h, w = slot.shape
        rec = record(DARKNET, out=addr, c_stride=slot.strides[1], y_stride=slot.strides[2],
                     x_stride=slot.strides[3], H=h, W=w, na=na,
                     classes=self.head['num_classes'], row_base=row_base,
                     stride_x=stride[0], stride_y=stride[1],
                     scale_x_y=float(layer.get('scale_x_y', 1.0)), anchors=full, **common)
        return 'yolo', 'yolo_decode_darknet', rec, grid_1d(h * w * na)

    def _nms_launch(self, h, w, b=0):
        _, _, out_h, out_w = self._input_nchw()
        top, left, _, _, sx, sy = frame_geometry((h, w), (out_h, out_w), self.fmt)
        rec = record(NMS, out=int(self.out_dev) + b * 4 * OUT_FLOATS, **self._per_image(b),
                     pad_x=left, pad_y=top, scale_x=sx, scale_y=sy, src_w=w, src_h=h)
        return 'yolo', 'nms_greedy', rec, (1, 1, 1)

    # -- capture and replay ---------------------------------------------------------------
    def _stages(self, sizes):
        """(letterbox launches of the whole batch, decode + NMS launches of the images):
        slots past the images take the last image."""
        pre = [self._pre_launch(*sizes[min(b, len(sizes) - 1)], b, min(b, len(sizes) - 1))
               for b in range(self.batch)]
        post = []
        for b, (h, w) in enumerate(sizes):
            post += self._decode_launches(b)
            if self.head['type'] != 'classifier':
                post.append(self._nms_launch(h, w, b))
        return pre, post

    def _frame_fn(self, sizes):
        """The function enqueuing one whole batch of images of ``sizes`` [(h, w), ...]."""
        ctx, be, drv = self.be.ctx, self.be, self.drv
        pre, post = ([(ctx.function(m, k), rec, grid,
                       (NMS_THREADS if k == 'nms_greedy' else BLOCK, 1, 1))
                      for m, k, rec, grid in stages] for stages in self._stages(sizes))
        uploads = [(self._src(i), self._src_view(i, h, w)) for i, (h, w) in enumerate(sizes)]
        post_host, out_host = self.post[:len(sizes)], self.out[:len(sizes)]

        def enqueue():
            for dev, host in uploads:
                drv.memcpy_htod_async(dev, host, be.stream)
            drv.memcpy_htod_async(self.post_dev, post_host, be.stream)
            for fn, rec, grid, block in pre + be.bound + post:
                fn(rec, grid=grid, block=block, stream=be.stream)
            if self.head['type'] == 'classifier':
                for name, host in be.host_out.items():
                    drv.memcpy_dtoh_async(host, int(be.arena) + be.slots[name].ref.offset,
                                          be.stream)
            else:
                drv.memcpy_dtoh_async(out_host, self.out_dev, be.stream)
        return enqueue

    def _graph_for(self, sizes):
        if sizes in self.graphs:
            return self.graphs[sizes]
        if len(self.graphs) >= max(MAX_GRAPHS, self.batch):
            old, _ = self.graphs.pop(next(iter(self.graphs)))
            if old is not None:
                old.close()
        enqueue = self._frame_fn(sizes)
        enqueue()  # one eager frame: loads modules, surfaces launch errors
        self.be.stream.synchronize()
        graph = None
        if self.be.use_graph:
            from tx2_infer_core.cuda.runtime import CudaGraph
            graph = CudaGraph()
            graph.capture(self.be.stream, enqueue)
        self.graphs[sizes] = (graph, enqueue)
        log.info('captured the frame graph of %d image(s) of %s (batch %d)', len(sizes),
                 ', '.join(f'{w}x{h}' for h, w in sizes), self.batch)
        return self.graphs[sizes]

    def _settings(self, conf, iou, max_det, classes):
        self.post['conf'], self.post['iou'] = conf, iou
        self.post['max_det'] = max(0, min(int(max_det), MAX_OUT))
        self.post['count'] = 0
        allow = self.post['allow']                  # [batch, MAX_CLASSES]
        allow[:] = 1 if classes is None else 0
        if classes is not None:
            allow[:, [c for c in classes if 0 <= c < MAX_CLASSES]] = 1

    def detect(self, image, conf=DEFAULTS.conf_threshold, iou=DEFAULTS.iou_threshold,
               max_det=DEFAULTS.max_detections, classes=None, overlap=None):
        """BGR uint8 HxWx3 -> (boxes xyxy [N, 4] in image pixels, scores [N], class ids [N]).
        On a batch plan, a batch of one (padded)."""
        return self.detect_batch([image], conf, iou, max_det, classes, overlap)[0]

    def detect_batch(self, images, conf=DEFAULTS.conf_threshold, iou=DEFAULTS.iou_threshold,
                     max_det=DEFAULTS.max_detections, classes=None, overlap=None):
        """1 to ``batch`` BGR uint8 HxWx3 images -> one (boxes, scores, class ids) per image,
        in one graph launch; see the module doc. ``overlap``, a callable, runs on the host
        while the GPU works on the frame (after the launch, before the wait)."""
        images = [np.asarray(image) for image in images]
        if not 1 <= len(images) <= self.batch:
            raise InputError(f'the frame pipeline takes 1 to {self.batch} images, '
                             f'got {len(images)}')
        for image in images:
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or \
                    min(image.shape[:2]) == 0:
                raise InputError(f'expected an HxWx3 uint8 image, got {image.shape} '
                                 f'{image.dtype}')
        sizes = tuple(image.shape[:2] for image in images)
        with self.be.ctx:
            largest = max(h * w * 3 for h, w in sizes)
            if largest > self.src_bytes:
                self._grow(largest)
            graph, enqueue = self._graph_for(sizes)
            for i, image in enumerate(images):
                np.copyto(self._src_view(i, *sizes[i]).reshape(image.shape), image)
            self._settings(conf, iou, max_det, classes)
            if graph is not None:
                graph.launch()
            else:
                enqueue()
            try:
                if overlap is not None:
                    overlap()
            finally:  # the buffers stay the GPU's until it is done, whatever overlap did
                self.be.stream.synchronize()
        if self.head['type'] == 'classifier':
            return [self._classify(b, h, w, max_det, classes) for b, (h, w) in enumerate(sizes)]
        return [self._found(b) for b in range(len(sizes))]

    def _found(self, b):
        """Image ``b``'s detections from its downloaded list."""
        out = self.out[b]
        n, found = int(out[0]), int(out[1])
        if found > MAX_CAND:
            log.warning('%d candidates over the threshold; the GPU keeps %d', found, MAX_CAND)
        dets = out[2:2 + 6 * n].reshape(n, 6)
        return (dets[:, :4].copy(), dets[:, 4].copy(), dets[:, 5].astype(np.int64))

    def _classify(self, b, h, w, max_det, classes):
        outputs = {n: host.astype(np.float32).reshape(self.batch, -1)[b][None]
                   for n, host in self.be.host_out.items()}
        _, scores, ids = heads.decode(outputs, self.head, 0.0, 0.0, max_det, classes)
        return np.tile(np.float32([0, 0, w, h]), (len(scores), 1)), scores, ids

    def close_graphs(self):
        """Destroy the captured frame graphs."""
        for graph, _ in self.graphs.values():
            if graph is not None:
                graph.close()
        self.graphs = {}
