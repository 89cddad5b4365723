"""Darknet model (``.cfg`` + ``.weights``) -> IR graph of standard ONNX ops.

Each cfg section becomes a few ONNX nodes (Conv, BatchNormalization, LeakyRelu, MaxPool, Resize,
Concat, Slice, Add, ...) over NCHW float32 values whose shapes are computed while building. The
graph outputs are the raw maps of the convolutions feeding each ``[yolo]`` layer; the head itself
(anchors, strides, classes) goes to ``graph.meta['head']`` for ``detect.py``.

Darknet conventions reproduced here (checked against OpenCV's own Darknet importer):
- a convolution with ``pad=1`` pads ``size // 2``, else ``padding`` (default 0);
- a maxpool pads ``padding`` (default ``size - 1``) in total, ``padding // 2`` before and the rest
  after, so the stride-1 size-2 maxpool of YOLOv3-tiny pads only right and bottom;
- the weights file is a header (major, minor, revision as int32, ``seen`` as int64 from version
  0.2 on) then, per convolution, the biases (BatchNorm beta), BatchNorm scale, mean and variance
  when ``batch_normalize=1``, then the OIHW weights.
"""
import logging
import math
from pathlib import Path

import numpy as np

from tx2_infer_core.darknet_cfg import parse_cfg
from tx2_infer_core.errors import ModelFormatError
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.limits import DEFAULT_LIMITS

log = logging.getLogger('tx2_infer.darknet')

# Darknet's BatchNorm divides by sqrt(var + .00001f) (pjreddie's GPU path, AlexeyAB's CPU and GPU
# paths); OpenCV's importer uses 1e-6 instead, pjreddie's CPU path sqrt(var) + .000001f.
BN_EPSILON = 1e-5
INPUT_NAME = 'images'
INPUT_FORMAT = {'color': 'RGB', 'layout': 'NCHW', 'scale': 1 / 255, 'resize': 'letterbox',
                'pad_value': 127}


# Largest tensor (elements) an imported model may have; ``load_darknet(max_elements=...)``.
MAX_TENSOR_ELEMENTS = DEFAULT_LIMITS.max_tensor_elements
LAYER_SECTIONS = ('convolutional', 'maxpool', 'upsample', 'route', 'shortcut', 'yolo',
                  'dropout')
# Keys that change what a layer computes and are not implemented: {key: the harmless value}.
UNSUPPORTED_KEYS = {'dilation': '1', 'stride_x': None, 'stride_y': None, 'antialiasing': '0',
                    'binary': '0', 'xnor': '0', 'share_index': None, 'maxpool_depth': '0',
                    'deform': '0', 'weights_type': 'none',
                    'new_coords': '0'}  # [yolo] new_coords=1 (YOLOv4-csp, YOLOv7): other decode


def _resolve_index(sec, key, ref, index, layers):
    """Output name of layer ``ref`` (negative: relative to ``index``) referenced by ``sec``."""
    target = index + ref if ref < 0 else ref
    if not 0 <= target < index or layers[target] is None:
        raise sec.error(key, f'{key}={ref} does not refer to an earlier layer with an output')
    return layers[target]


def conv_output_size(size_in, kernel, stride, pad):
    """Output length of a convolution along one axis with ``pad`` on both sides."""
    return (size_in + 2 * pad - kernel) // stride + 1


def maxpool_pads(padding):
    """Darknet's total maxpool ``padding`` as ONNX pads (begin H, W, end H, W)."""
    before = padding // 2
    after = padding - before
    return [before, before, after, after]


def maxpool_output_size(size_in, kernel, stride, padding):
    """Output length of a Darknet maxpool along one axis (``padding`` is the total)."""
    return (size_in + padding - kernel) // stride + 1


class WeightsReader:
    """Reads a Darknet ``.weights`` file: a header, then float32 parameters in cfg order."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFormatError(f'Darknet weights file not found: {self.path}')
        raw = self.path.read_bytes()
        if len(raw) < 16:
            raise ModelFormatError(f'{self.path}: too short for a Darknet weights header '
                                   f'({len(raw)} bytes)')
        major, minor, revision = (int(v) for v in np.frombuffer(raw[:12], dtype='<i4'))
        seen_bytes = 8 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 4
        self.version = (major, minor, revision)
        body = raw[12 + seen_bytes:]
        if len(body) % 4:
            raise ModelFormatError(f'{self.path}: {len(body)} bytes of parameters is not a '
                                   'whole number of float32 values (truncated?)')
        self.floats = np.frombuffer(body, dtype='<f4')
        self.pos, self.first_missing = 0, None

    def take(self, count, what):
        """The next ``count`` floats for ``what``. Past the end of the file: a read-only zero
        view (no memory), reported by ``finish``."""
        if self.pos + count > len(self.floats):
            self.first_missing = self.first_missing or what
            self.pos += count
            return np.broadcast_to(np.float32(0), (count,))
        chunk = self.floats[self.pos:self.pos + count].astype(np.float32)
        self.pos += count
        return chunk

    def finish(self, strict):
        """Check the cfg used exactly the floats the file holds (extra: warning if not strict)."""
        found, needed = len(self.floats), self.pos
        if needed > found:
            raise ModelFormatError(
                f'{self.path}: weights file too short: the cfg needs {needed} floats but the '
                f'file holds {found} ({needed - found} missing, first for {self.first_missing})')
        if needed < found:
            msg = (f'{self.path}: weights file too long: the cfg needs {needed} floats but the '
                   f'file holds {found} ({found - needed} left over: a cfg for other weights?)')
            if strict:
                raise ModelFormatError(msg)
            log.warning(msg)


class _Builder:
    """Accumulates nodes, values and weights while the cfg sections are converted."""

    def __init__(self, input_shape, bn_epsilon, max_elements=MAX_TENSOR_ELEMENTS):
        self.nodes, self.weights, self.bn_epsilon = [], {}, bn_epsilon
        self.max_elements = max_elements
        self.values = {INPUT_NAME: Value(INPUT_NAME, tuple(input_shape), 'float32', 'NCHW')}

    def shape(self, name):
        return self.values[name].shape

    def check_size(self, sec, name, shape):
        """Refuse a tensor of more than ``max_elements`` elements (before building it)."""
        count = math.prod(shape)
        if count > self.max_elements:
            raise sec.error(None, f"tensor '{name}' of shape {tuple(shape)} has {count} "
                            f'elements, more than the limit of {self.max_elements}')

    def const(self, name, array):
        # a read-only zero view stands for weights past the end of a short file (see ``take``)
        self.weights[name] = array if not array.flags.writeable else np.ascontiguousarray(array)
        return name

    def add(self, op, name, inputs, shape, **attrs):
        """Append one node with a single output named ``name`` of the given shape."""
        self.nodes.append(Node(op, name, list(inputs), [name], attrs))
        layout = 'NCHW' if len(shape) == 4 else ''
        self.values[name] = Value(name, tuple(int(d) for d in shape), 'float32', layout)
        return name


_ACTIVATIONS = {'leaky': ('LeakyRelu', {'alpha': 0.1}), 'relu': ('Relu', {}),
                'logistic': ('Sigmoid', {}), 'tanh': ('Tanh', {})}


def _activation(b, x, kind, tag, sec):
    """Append the nodes of a Darknet activation; returns the output name."""
    shape = b.shape(x)
    if kind == 'linear':
        return x
    if kind in _ACTIVATIONS:
        op, attrs = _ACTIVATIONS[kind]
        return b.add(op, f'{kind}_{tag}', [x], shape, **attrs)
    if kind == 'swish':
        sig = b.add('Sigmoid', f'swish_{tag}.sigmoid', [x], shape)
        return b.add('Mul', f'swish_{tag}', [x, sig], shape)
    if kind == 'mish':
        soft = b.add('Softplus', f'mish_{tag}.softplus', [x], shape)
        tanh = b.add('Tanh', f'mish_{tag}.tanh', [soft], shape)
        return b.add('Mul', f'mish_{tag}', [x, tanh], shape)
    raise sec.error('activation', f"unsupported activation '{kind}' (supported: linear, "
                    f"{', '.join(_ACTIVATIONS)}, swish, mish)")


def _conv(b, sec, x, tag, reader):
    n, c = sec.int('filters'), b.shape(x)[1]
    size, stride = sec.int('size', 1), sec.int('stride', 1)
    groups = sec.int('groups', 1)
    pad = size // 2 if sec.int('pad', 0) else sec.int('padding', 0)
    if n <= 0 or size <= 0 or stride <= 0 or groups <= 0 or c % groups:
        raise sec.error('filters', f'bad convolution: filters={n} size={size} stride={stride} '
                        f'groups={groups} on {c} input channels')
    b.check_size(sec, f'conv_{tag}.weight', (n, c // groups, size, size))
    bn = sec.int('batch_normalize', 0)
    bias = reader.take(n, f'{sec} biases')
    if bn:
        scale, mean, var = (reader.take(n, f'{sec} batchnorm {w}')
                            for w in ('scales', 'mean', 'variance'))
    w = reader.take(n * (c // groups) * size * size, f'{sec} weights')
    w = w.reshape(n, c // groups, size, size)
    h_in, w_in = b.shape(x)[2:]
    shape = (b.shape(x)[0], n, conv_output_size(h_in, size, stride, pad),
             conv_output_size(w_in, size, stride, pad))
    inputs = [x, b.const(f'conv_{tag}.weight', w)]
    if not bn:
        inputs.append(b.const(f'conv_{tag}.bias', bias))
    y = b.add('Conv', f'conv_{tag}', inputs, shape, kernel_shape=[size, size],
              strides=[stride, stride], pads=[pad] * 4, group=groups)
    if bn:
        params = [b.const(f'bn_{tag}.{k}', v)
                  for k, v in (('scale', scale), ('bias', bias), ('mean', mean), ('var', var))]
        y = b.add('BatchNormalization', f'bn_{tag}', [y] + params, shape, epsilon=b.bn_epsilon)
    return _activation(b, y, sec.str('activation', 'logistic'), tag, sec)


def _maxpool(b, sec, x, tag):
    stride = sec.int('stride', 1)
    size = sec.int('size', stride)
    padding = sec.int('padding', size - 1)
    if size <= 0 or stride <= 0 or padding < 0:
        raise sec.error('size', f'bad maxpool: size={size} stride={stride} padding={padding}')
    n, c, h, w = b.shape(x)
    shape = (n, c, maxpool_output_size(h, size, stride, padding),
             maxpool_output_size(w, size, stride, padding))
    return b.add('MaxPool', f'pool_{tag}', [x], shape, kernel_shape=[size, size],
                 strides=[stride, stride], pads=maxpool_pads(padding))


def _upsample(b, sec, x, tag):
    stride = sec.int('stride', 2)
    if stride <= 0:
        raise sec.error('stride', f'upsample stride must be positive, got {stride}')
    if sec.float('scale', 1.0) != 1.0:
        raise sec.error('scale', 'upsample with scale != 1 is not supported')
    n, c, h, w = b.shape(x)
    scales = b.const(f'up_{tag}.scales', np.array([1, 1, stride, stride], np.float32))
    return b.add('Resize', f'up_{tag}', [x, '', scales], (n, c, h * stride, w * stride),
                 mode='nearest', coordinate_transformation_mode='asymmetric',
                 nearest_mode='floor')


def _route(b, sec, tag, layers, index):
    sources = [_resolve_index(sec, 'layers', i, index, layers)
               for i in sec.ints('layers')]
    groups, group_id = sec.int('groups', 1), sec.int('group_id', 0)
    if groups <= 0 or not 0 <= group_id < groups:
        raise sec.error('group_id', f'bad groups={groups} group_id={group_id}')
    parts = []
    for k, src in enumerate(sources):
        if groups == 1:
            parts.append(src)
            continue
        n, c, h, w = b.shape(src)
        if c % groups:
            raise sec.error('groups', f'{c} channels of layer input {k} not divisible by {groups}')
        step = c // groups
        consts = [b.const(f'route_{tag}.{k}.{key}', np.array([v], np.int64))
                  for key, v in (('starts', group_id * step), ('ends', (group_id + 1) * step),
                                 ('axes', 1))]
        parts.append(b.add('Slice', f'route_{tag}.{k}', [src] + consts, (n, step, h, w)))
    if len(parts) == 1:
        return parts[0]
    first = b.shape(parts[0])
    if any(b.shape(p)[2:] != first[2:] for p in parts):
        raise sec.error('layers', 'routed layers differ in height/width: '
                        + ', '.join(str(b.shape(p)) for p in parts))
    shape = (first[0], sum(b.shape(p)[1] for p in parts)) + first[2:]
    return b.add('Concat', f'route_{tag}', parts, shape, axis=1)


def _shortcut(b, sec, x, tag, layers, index):
    froms = sec.ints('from')
    if len(froms) != 1:
        raise sec.error('from', f'shortcut from {len(froms)} layers is not supported (only 1)')
    other = _resolve_index(sec, 'from', froms[0], index, layers)
    if b.shape(other) != b.shape(x):
        raise sec.error('from', f'shortcut shapes differ: {b.shape(x)} and {b.shape(other)}')
    y = b.add('Add', f'shortcut_{tag}', [x, other], b.shape(x))
    return _activation(b, y, sec.str('activation', 'linear'), tag, sec)


def _yolo(b, sec, x, input_hw):
    mask = sec.ints('mask')
    anchors = [int(a) if a == int(a) else a for a in sec.floats('anchors')]
    classes = sec.int('classes')
    if len(anchors) % 2 or any(not 0 <= m < len(anchors) // 2 for m in mask):
        raise sec.error('mask', f'mask {mask} does not index {len(anchors) // 2} anchor pairs')
    channels, map_h = b.shape(x)[1], b.shape(x)[2]
    if channels != len(mask) * (classes + 5):
        raise sec.error('classes', f'input has {channels} channels, expected '
                        f'{len(mask)} * ({classes} + 5) = {len(mask) * (classes + 5)}')
    layer = {'output': x, 'anchors': [[anchors[2 * m], anchors[2 * m + 1]] for m in mask],
             'stride': input_hw[0] // map_h}
    scale_xy = sec.float('scale_x_y', 1.0)
    if scale_xy != 1.0:
        layer['scale_x_y'] = scale_xy
    return layer, classes


def _check_supported_keys(sec):
    for key, harmless in UNSUPPORTED_KEYS.items():
        if key in sec.options and sec.options[key] != harmless:
            raise sec.error(key, f"'{key}={sec.options[key]}' is not supported")


def _build(sections, reader, input_shape, bn_epsilon, max_elements):
    """Convert the sections after [net] into nodes; returns (builder, head layers, classes)."""
    b = _Builder(input_shape, bn_epsilon, max_elements)
    layers, head, classes, x = [], [], None, INPUT_NAME
    for index, sec in enumerate(sections):
        sec.index = index
        _check_supported_keys(sec)
        if x is None and sec.kind != 'route':
            raise sec.error(None, 'only a [route] may follow a [yolo] layer')
        if sec.kind == 'convolutional':
            x = _conv(b, sec, x, index, reader)
        elif sec.kind == 'maxpool':
            x = _maxpool(b, sec, x, index)
        elif sec.kind == 'upsample':
            x = _upsample(b, sec, x, index)
        elif sec.kind == 'route':
            x = _route(b, sec, index, layers, index)
        elif sec.kind == 'shortcut':
            x = _shortcut(b, sec, x, index, layers, index)
        elif sec.kind == 'yolo':
            layer, classes = _yolo(b, sec, x, input_shape[2:])
            head.append(layer)
            x = None
        elif sec.kind == 'dropout':
            pass
        else:
            raise sec.error(None, f"unsupported section [{sec.kind}] (supported: "
                            f"{', '.join(LAYER_SECTIONS)})")
        if x is not None and min(b.shape(x)) <= 0:
            raise sec.error(None, f'layer output would be empty: shape {b.shape(x)}')
        if x is not None:
            b.check_size(sec, x, b.shape(x))
        layers.append(x)
    return b, head, classes


def _read_names(path, classes):
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f'class names file not found: {path}')
    labels = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if classes is not None and len(labels) != classes:
        raise ModelFormatError(f'{path}: {len(labels)} class names but the cfg has '
                               f'{classes} classes')
    return labels


def load_darknet(cfg_path, weights_path, input_shape=None, names_path=None, strict=True,
                 bn_epsilon=BN_EPSILON, max_elements=MAX_TENSOR_ELEMENTS) -> Graph:
    """Import a Darknet model as an IR graph of standard ONNX ops (NCHW float32).

    ``input_shape`` (N, C, H, W) overrides the [net] width/height/channels. The graph input is
    ``images``; the outputs are the raw maps feeding each [yolo] layer, described in
    ``graph.meta['head']``. With ``strict`` a weights file longer than the cfg needs is an error,
    otherwise a warning. ``bn_epsilon`` is the BatchNormalization epsilon (see ``BN_EPSILON``).
    Malformed files, and tensors over ``max_elements`` elements, raise ``ModelFormatError``
    naming file, line and section.
    """
    net, sections = parse_cfg(cfg_path)
    if input_shape is None:
        input_shape = (1, net.int('channels', 3), net.int('height'), net.int('width'))
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 4 or min(input_shape) <= 0:
        raise ModelFormatError(f'input_shape must be (N, C, H, W) positive, got {input_shape}')
    if math.prod(input_shape) > max_elements:
        raise ModelFormatError(f'{cfg_path}: input shape {input_shape} has '
                               f'{math.prod(input_shape)} elements, more than the limit of '
                               f'{max_elements}')
    reader = WeightsReader(weights_path)
    builder, head, classes = _build(sections, reader, input_shape, bn_epsilon, max_elements)
    reader.finish(strict)
    if not head:
        raise ModelFormatError(f'{cfg_path}: no [yolo] section; only YOLO detectors are '
                               'supported')
    outputs = [layer['output'] for layer in head]
    meta = {'source': 'darknet',
            'head': {'type': 'darknet_yolo', 'num_classes': classes, 'layers': head},
            'input_format': dict(INPUT_FORMAT)}
    if names_path is not None:
        meta['labels'] = _read_names(names_path, classes)
    graph = Graph(nodes=builder.nodes, inputs=[INPUT_NAME], outputs=outputs,
                  values=builder.values, weights=builder.weights,
                  name=Path(cfg_path).stem, meta=meta)
    graph.prune()
    log.info('darknet: %s -> %d nodes, %d weights, outputs %s', Path(cfg_path).name,
             len(graph.nodes), len(graph.weights), outputs)
    return graph
