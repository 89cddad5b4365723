"""Ultralytics YOLO11 pose checkpoints (``.pt``) to ONNX, without PyTorch.

A ``.pt`` file is a zip of a pickle whose tensors live in ``data/<key>`` entries. The pickle is
read with stand-in classes (nothing from the file is imported or run), the modules' attributes
give the architecture, and each module becomes the ONNX nodes of its ``forward``. The graph ends
like Ultralytics' own ONNX export: ``output0[1, 4 + nc + nk, anchors]`` (xywh in input pixels,
class scores, then x, y, visibility per keypoint). Supported: the YOLO11 blocks (Conv, DWConv,
C3k2, C3k, Bottleneck, SPPF, C2PSA, Upsample, Concat) and the Pose head.
"""
import collections
import pickle
import zipfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import ModelFormatError

_DTYPES = {'HalfStorage': np.float16, 'FloatStorage': np.float32, 'DoubleStorage': np.float64,
           'LongStorage': np.int64, 'IntStorage': np.int32, 'BoolStorage': np.bool_}


class Stub:
    """Stand-in for any class the pickle names: keeps its state, runs nothing."""

    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)


def _rebuild_tensor(storage, offset, size, stride, *_):
    step = [s * storage.itemsize for s in stride]
    view = np.lib.stride_tricks.as_strided(storage[offset:], tuple(size), step)
    return np.array(view, dtype=np.float32 if storage.dtype == np.float16 else storage.dtype)


class _Unpickler(pickle.Unpickler):
    def __init__(self, zf, root):
        super().__init__(zf.open(f'{root}/data.pkl'))
        self.zf, self.root, self.classes = zf, root, {}

    def find_class(self, module, name):
        if (module, name) == ('collections', 'OrderedDict'):
            return collections.OrderedDict
        if (module, name) == ('torch._utils', '_rebuild_tensor_v2'):
            return _rebuild_tensor
        if (module, name) == ('torch._utils', '_rebuild_parameter'):
            return lambda data, *_: data
        if module == 'torch' and name.endswith('Storage'):
            return name
        key = f'{module}.{name}'
        if key not in self.classes:
            self.classes[key] = type(name, (Stub,), {})
        return self.classes[key]

    def persistent_load(self, pid):
        kind, key = pid[1], pid[2]
        if kind not in _DTYPES:
            raise ModelFormatError(f'unsupported tensor storage {kind!r} in the checkpoint')
        return np.frombuffer(self.zf.read(f'{self.root}/data/{key}'), dtype=_DTYPES[kind])


def load_checkpoint(path) -> dict:
    """The checkpoint dict of a ``.pt`` file, tensors as float32 numpy arrays."""
    try:
        with zipfile.ZipFile(path) as zf:
            root = zf.namelist()[0].split('/')[0]
            return _Unpickler(zf, root).load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, KeyError) as exc:
        raise ModelFormatError(f'{path}: not a PyTorch zip checkpoint ({exc})') from exc


def children(module):
    return list(module._modules.values())


def child(module, name):
    return module._modules[name]


class _Graph:
    """Collects ONNX nodes and initializers; every helper returns its output's name."""

    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, hint):
        self.count += 1
        return f'{hint}_{self.count}'

    def const(self, array, hint='c'):
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, outputs=1, **attrs):
        names = [self.name(op_type) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, **attrs))
        return names[0] if outputs == 1 else names


def conv2d(g, m, x):
    """A plain torch Conv2d (with its bias, no BatchNorm)."""
    w = m._parameters['weight']
    b = m._parameters.get('bias')
    return _conv(g, m, x, w, b)


def _conv(g, m, x, w, b):
    pads = list(m.padding) * 2
    inputs = [x, g.const(w, 'w')] + ([g.const(b, 'b')] if b is not None else [])
    return g.op('Conv', inputs, kernel_shape=list(m.kernel_size), strides=list(m.stride),
                pads=pads, dilations=list(m.dilation), group=m.groups)


def conv_block(g, m, x):
    """Ultralytics Conv / DWConv: SiLU(BN(conv(x))), BN folded into the weights."""
    conv, bn = child(m, 'conv'), child(m, 'bn')
    scale = bn._parameters['weight'] / np.sqrt(bn._buffers['running_var'] + bn.eps)
    w = conv._parameters['weight'] * scale[:, None, None, None]
    b = bn._parameters['bias'] - bn._buffers['running_mean'] * scale
    y = _conv(g, conv, x, w.astype(np.float32), b.astype(np.float32))
    act = type(child(m, 'act')).__name__
    if act == 'SiLU':
        return g.op('Mul', [y, g.op('Sigmoid', [y])])
    if act != 'Identity':
        raise ModelFormatError(f'unsupported activation {act} in a Conv block')
    return y


def split_half(g, x, channels):
    return g.op('Split', [x, g.const(np.array([channels, channels], np.int64))], 2, axis=1)


def sequence(g, m, x):
    for sub in children(m):
        x = block(g, sub, x)
    return x


def bottleneck(g, m, x):
    y = conv_block(g, child(m, 'cv2'), conv_block(g, child(m, 'cv1'), x))
    return g.op('Add', [x, y]) if m.add else y


def c3k(g, m, x):
    a = sequence(g, child(m, 'm'), conv_block(g, child(m, 'cv1'), x))
    b = conv_block(g, child(m, 'cv2'), x)
    return conv_block(g, child(m, 'cv3'), g.op('Concat', [a, b], axis=1))


def c3k2(g, m, x):
    parts = list(split_half(g, conv_block(g, child(m, 'cv1'), x), m.c))
    for sub in children(child(m, 'm')):
        parts.append(block(g, sub, parts[-1]))
    return conv_block(g, child(m, 'cv2'), g.op('Concat', parts, axis=1))


def sppf(g, m, x):
    pool = child(m, 'm')
    k, p = pool.kernel_size, pool.padding
    parts = [conv_block(g, child(m, 'cv1'), x)]
    for _ in range(3):
        parts.append(g.op('MaxPool', [parts[-1]], kernel_shape=[k, k], pads=[p] * 4,
                          strides=[1, 1]))
    return conv_block(g, child(m, 'cv2'), g.op('Concat', parts, axis=1))


def attention(g, m, x):
    """Area-free YOLO11 attention: softmax(q^T k * scale) over the H*W positions, plus pe(v)."""
    kd, hd, heads = m.key_dim, m.head_dim, m.num_heads
    qkv = conv_block(g, child(m, 'qkv'), x)
    qkv = g.op('Reshape', [qkv, g.const(np.array([0, heads, 2 * kd + hd, -1], np.int64))])
    q, k, v = g.op('Split', [qkv, g.const(np.array([kd, kd, hd], np.int64))], 3, axis=2)
    scores = g.op('MatMul', [g.op('Transpose', [q], perm=[0, 1, 3, 2]), k])
    scores = g.op('Mul', [scores, g.const(np.array(m.scale, np.float32))])
    attn = g.op('Softmax', [scores], axis=-1)
    out = g.op('MatMul', [v, g.op('Transpose', [attn], perm=[0, 1, 3, 2])])
    shape = g.op('Shape', [x])
    out = g.op('Reshape', [out, shape])
    pe = conv_block(g, child(m, 'pe'), g.op('Reshape', [v, shape]))
    return conv_block(g, child(m, 'proj'), g.op('Add', [out, pe]))


def psa_block(g, m, x):
    y = attention(g, child(m, 'attn'), x)
    x = g.op('Add', [x, y]) if m.add else y
    y = sequence(g, child(m, 'ffn'), x)
    return g.op('Add', [x, y]) if m.add else y


def c2psa(g, m, x):
    a, b = split_half(g, conv_block(g, child(m, 'cv1'), x), m.c)
    b = sequence(g, child(m, 'm'), b)
    return conv_block(g, child(m, 'cv2'), g.op('Concat', [a, b], axis=1))


def upsample(g, m, x):
    if m.mode != 'nearest':
        raise ModelFormatError(f'unsupported Upsample mode {m.mode!r}')
    s = float(m.scale_factor)
    return g.op('Resize', [x, '', g.const(np.array([1, 1, s, s], np.float32))], mode='nearest',
                coordinate_transformation_mode='asymmetric', nearest_mode='floor')


_BLOCKS = {'Conv': conv_block, 'DWConv': conv_block, 'Conv2d': conv2d, 'Sequential': sequence,
           'Bottleneck': bottleneck, 'C3k': c3k, 'C3k2': c3k2, 'SPPF': sppf, 'C2PSA': c2psa,
           'PSABlock': psa_block, 'Upsample': upsample}


def block(g, m, x):
    kind = type(m).__name__
    if kind not in _BLOCKS:
        raise ModelFormatError(f'unsupported Ultralytics module {kind}')
    return _BLOCKS[kind](g, m, x)


def make_anchors(grid_sizes, strides):
    """Anchor centres (2, A) in grid cells and their strides (1, A), level by level, row-major."""
    points, steps = [], []
    for (h, w), s in zip(grid_sizes, strides):
        ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing='ij')
        points.append(np.stack([xs.ravel(), ys.ravel()]))
        steps.append(np.full((1, h * w), s))
    return (np.concatenate(points, 1).astype(np.float32),
            np.concatenate(steps, 1).astype(np.float32))


def pose_head(g, m, feats, image_hw):
    """Ultralytics Pose head (export form): [xywh, class scores, (x, y, visibility) x nk]."""
    strides = [float(s) for s in m.stride]
    grids = [(image_hw[0] // int(s), image_hw[1] // int(s)) for s in strides]
    anchors, steps = make_anchors(grids, strides)
    flat = g.const(np.array([0, 0, -1], np.int64))

    def level_cat(heads):
        outs = [g.op('Reshape', [sequence(g, h, f), flat]) for h, f in zip(heads, feats)]
        return g.op('Concat', outs, axis=2)
    box = level_cat(children(child(m, 'cv2')))
    cls = level_cat(children(child(m, 'cv3')))
    kpt = level_cat(children(child(m, 'cv4')))
    reg = child(m, 'dfl').c1
    box = g.op('Reshape', [box, g.const(np.array([0, 4, reg, -1], np.int64))])
    box = g.op('Softmax', [g.op('Transpose', [box], perm=[0, 2, 1, 3])], axis=1)
    bins = g.const(np.arange(reg, dtype=np.float32).reshape(1, reg, 1, 1), 'dfl')
    dist = g.op('Reshape', [g.op('Conv', [box, bins]), g.const(np.array([0, 4, -1], np.int64))])
    lt, rb = g.op('Split', [dist, g.const(np.array([2, 2], np.int64))], 2, axis=1)
    a, s = g.const(anchors, 'anchors'), g.const(steps, 'strides')
    x1y1, x2y2 = g.op('Sub', [a, lt]), g.op('Add', [a, rb])
    centre = g.op('Div', [g.op('Add', [x1y1, x2y2]), g.const(np.array(2.0, np.float32))])
    dbox = g.op('Mul', [g.op('Concat', [centre, g.op('Sub', [x2y2, x1y1])], axis=1), s])
    nkpt, ndim = m.kpt_shape
    kpt = g.op('Reshape', [kpt, g.const(np.array([0, nkpt, ndim, -1], np.int64))])
    xy, vis = g.op('Split', [kpt, g.const(np.array([2, ndim - 2], np.int64))], 2, axis=2)
    xy = g.op('Add', [g.op('Mul', [xy, g.const(np.array(2.0, np.float32))]),
                      g.const(anchors - 0.5, 'anchors_m')])
    kpt = g.op('Concat', [g.op('Mul', [xy, s]), g.op('Sigmoid', [vis])], axis=2)
    kpt = g.op('Reshape', [kpt, g.const(np.array([0, nkpt * ndim, -1], np.int64))])
    return g.op('Concat', [dbox, g.op('Sigmoid', [cls]), kpt], axis=1)


def pose_to_onnx(checkpoint, image_hw=(640, 640), opset=13) -> onnx.ModelProto:
    """ONNX graph ``images[1,3,H,W] -> output0[1, 4 + nc + 3 * nk, A]`` of a pose checkpoint."""
    model = checkpoint.get('ema') or checkpoint.get('model')
    if type(model).__name__ != 'PoseModel':
        raise ModelFormatError(f'expected an Ultralytics PoseModel, got {type(model).__name__}')
    g, saved, x = _Graph(), [], 'images'
    for layer in children(child(model, 'model')):
        src = layer.f
        inputs = x if src == -1 else [x if j == -1 else saved[j] for j in src]
        kind = type(layer).__name__
        if kind == 'Concat':
            x = g.op('Concat', inputs, axis=layer.d)
        elif kind == 'Pose':
            x = pose_head(g, layer, inputs, image_hw)
        else:
            x = block(g, layer, inputs)
        saved.append(x)
    g.nodes[-1].output[0] = 'output0'
    names = ','.join(f'{k}:{v}' for k, v in sorted(model.names.items()))
    graph = helper.make_graph(
        g.nodes, 'yolo_pose',
        [helper.make_tensor_value_info('images', TensorProto.FLOAT, [1, 3, *image_hw])],
        [helper.make_tensor_value_info('output0', TensorProto.FLOAT, [1, None, None])], g.inits)
    out = helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)],
                            producer_name='tx2_infer.ultralytics_pt')
    meta = {'names': names, 'kpt_shape': ','.join(map(str, model.kpt_shape)),
            'license': str(checkpoint.get('license', ''))}
    for key, value in meta.items():
        out.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(out)
    return out
