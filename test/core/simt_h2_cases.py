"""Real layers for conv_simt_h2 (kernels/conv.cu) and a numpy model of its arithmetic, shared
by test/core/test_conv_simt_h2.py (no GPU) and test/cuda/test_simt_h2_cuda.py.

Layers: FusedConvs of YOLOv3-tiny (416) and open_nsfw (a ResNet-50), real weights, each fed
the real activation it sees on a real photo (fp16-rounded, as the GPU arena holds it).

The model: k flattened over (r, s, channel pair), a channel pair per half2 word; each lane
sums ``CHUNK`` products in FP16 (one rounding per fused multiply-add), then the chunk is
flushed: its two lanes added in FP16, converted, added to an FP32 accumulator.

Tolerance of the kernel against the float64 reference, relative L2: a chunk's rounding errors
of random sign add up to about u sqrt(CHUNK / 6) = 8e-4 (u = 2^-11), the FP16 output ~3e-4
more; ``REL_L2_TOL`` = 2.5e-3 leaves a factor ~3, and the same model never flushed (the lanes
summing all of K = 4608 in FP16) is ~1e-2, four times over it
(``test_tolerance_separates_flushed_from_unflushed``).
"""
import functools
import sys
from pathlib import Path

import numpy as np

from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops.fused import FusedConv, apply_activation
from tx2_infer_core.reference import execute

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / 'bench'))
import int8_models as im  # noqa: E402

CHUNK = 16  # H2_BKW of kernels/conv.cu: channel pairs a lane sums between flushes
REL_L2_TOL = 2.5e-3
# YOLOv3-tiny: 3x3 16..512 -> 1024 (K = 4608), 1x1 1024 -> 256, 3x3 concat 384 -> 256, the
# linear 1x1 head (no activation, 255 outputs: an odd pair), the stem (3 channels)
TINY = ['conv_0', 'conv_2', 'conv_8', 'conv_12', 'conv_13', 'conv_15', 'conv_21']


def fp16(x):
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


@functools.lru_cache(maxsize=None)
def model_env(model):
    """(optimised graph, every value of its run on dog.jpg) of 'yolov3-tiny' or 'open_nsfw'."""
    graph = im.yolov3_tiny(416) if model == 'yolov3-tiny' else im.open_nsfw()
    feeds = im.photo_feeds(graph)[0]
    return graph, execute(graph, feeds, keep_all=True)


def resnet_layers(count=None) -> list:
    """Names of open_nsfw's FusedConvs on the GEMM kernels: 3x3 and 1x1 (with residuals)."""
    graph, _ = model_env('open_nsfw')
    names = [n.name for n in graph.nodes if n.op == 'FusedConv' and n.attrs.get('group', 1) == 1
             and graph.weights[n.inputs[1]].shape[2] in (1, 3)]
    return names[:count]


def _value(name, shape):
    return Value(name, tuple(int(d) for d in shape), 'float32', 'NCHW')


@functools.lru_cache(maxsize=None)
def layer_case(model, name):
    """(one-FusedConv graph, feeds, float64 reference output, node) of a real layer: inputs
    'x' (and 'r', the residual), weights and bias the model's."""
    graph, env = model_env(model)
    node = next(n for n in graph.nodes if n.name == name)
    w, b = (graph.weights[n] for n in node.inputs[1:3])
    y_shape = graph.values[node.outputs[0]].shape
    feeds = {'x': fp16(env[node.inputs[0]])}
    inputs = ['x', 'w', 'b']
    if len(node.inputs) > 3 and node.inputs[3]:
        feeds['r'] = fp16(env[node.inputs[3]])
        inputs.append('r')
    values = {n: _value(n, a.shape) for n, a in feeds.items()}
    values.update(w=Value('w', w.shape, 'float32', ''), b=Value('b', b.shape, 'float32', ''),
                  y=_value('y', y_shape))
    one = Graph([Node('FusedConv', name, inputs, ['y'], dict(node.attrs))], list(feeds), ['y'],
                values, {'w': w, 'b': b})
    ref = FusedConv(feeds['x'].astype(np.float64), fp16(w).astype(np.float64),
                    b.astype(np.float64), feeds['r'].astype(np.float64) if 'r' in feeds
                    else None, **node.attrs)
    return one, feeds, ref, node


def rel_l2(out, ref) -> float:
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-30))


# -- the model of conv_simt_h2's arithmetic ------------------------------------------------
def pair_words(x, w, attrs, pixels):
    """(a [pixels, kwords, 2], b [K, kwords, 2]) float64: the input words of the output
    ``pixels`` (flat indices of image 0's P x Q) and the weight words, k flattened over
    (r, s, channel pair), an odd Cg's last pair padded with 0."""
    k_out, cg, kr, ks = w.shape
    sh, sw = attrs.get('strides') or [1, 1]
    dh, dw = attrs.get('dilations') or [1, 1]
    ph, pw = (attrs.get('pads') or [0, 0, 0, 0])[:2]
    _, _, h, wd = x.shape
    q = (wd + 2 * pw - dw * (ks - 1) - 1) // sw + 1
    cp = -(-cg // 2)
    a = np.zeros((len(pixels), kr, ks, 2 * cp))
    for i, m in enumerate(pixels):
        oh, ow = divmod(int(m), q)
        for r in range(kr):
            for s in range(ks):
                ih, iw = oh * sh - ph + r * dh, ow * sw - pw + s * dw
                if 0 <= ih < h and 0 <= iw < wd:
                    a[i, r, s, :cg] = x[0, :, ih, iw]
    b = np.zeros((k_out, kr, ks, 2 * cp))
    b[..., :cg] = w.transpose(0, 2, 3, 1)
    return a.reshape(len(pixels), -1, 2), b.reshape(k_out, -1, 2)


def h2_accumulate(a, b, chunk=CHUNK) -> np.ndarray:
    """[pixels, K] float32 sums of a . b as conv_simt_h2 computes them: per output a half2 of
    FP16 lane sums over ``chunk`` words (fused multiply-add, one rounding), then lo + hi in
    FP16, converted and added to an FP32 accumulator."""
    acc = np.zeros((a.shape[0], b.shape[0]), np.float32)
    for k0 in range(0, a.shape[1], chunk):
        lanes = np.zeros((a.shape[0], b.shape[0], 2))
        for kw in range(k0, min(k0 + chunk, a.shape[1])):
            product = a[:, None, kw, :] * b[None, :, kw, :]  # exact in float64
            lanes = (lanes + product).astype(np.float16).astype(np.float64)
        flushed = (lanes[..., 0] + lanes[..., 1]).astype(np.float16).astype(np.float32)
        acc = (acc + flushed).astype(np.float32)
    return acc


def h2_model(case, pixels, chunk=CHUNK) -> np.ndarray:
    """[pixels, K] fp16 outputs of conv_simt_h2 on ``case`` (``layer_case``) at ``pixels``:
    the model's sums, then the FP32 epilogue (bias, residual, activation) and FP16 rounding."""
    graph, feeds, _, node = case
    a, b = pair_words(feeds['x'], fp16(graph.weights['w']), node.attrs, pixels)
    v = h2_accumulate(a, b, chunk) + graph.weights['b'].astype(np.float32)
    at = node.attrs
    r = feeds['r'].reshape(feeds['r'].shape[1], -1)[:, pixels].T if 'r' in feeds else 0.0
    if not at.get('residual_after_act', 0):
        v = (v + r).astype(np.float32)
    v = apply_activation(v, at.get('activation', ''), at.get('alpha', 0.01), at.get('beta', 0.5),
                         at.get('clip_min', -np.inf), at.get('clip_max', np.inf))
    if at.get('residual_after_act', 0):
        v = (v + r).astype(np.float32)
    return fp16(v)


def offsets_case():
    """(graph, feeds, float64 reference) where conv_21's real input (384 channels at 26 x 26) is
    split 128 + 256; the 256 go through a 3x3 with conv_21's weights of those channels,
    LeakyRelu and the same 256 as residual after it, concatenated after the 128: placed, the
    conv reads, adds and writes channels 128..383 of 384-channel pixels (x_off = r_off =
    y_off = 128)."""
    graph, env = model_env('yolov3-tiny')
    node = next(n for n in graph.nodes if n.name == 'conv_21')
    x = fp16(env[node.inputs[0]])
    w = np.ascontiguousarray(graph.weights[node.inputs[1]][:, 128:])
    b = graph.weights[node.inputs[2]]
    size = x.shape[2:]
    values = {n: _value(n, (1, c) + size) for n, c in
              (('x', 384), ('xa', 128), ('xb', 256), ('yc', 256), ('y', 384))}
    values.update(w=Value('w', w.shape, 'float32', ''), b=Value('b', b.shape, 'float32', ''),
                  split=Value('split', (2,), 'int64', ''))
    attrs = dict(node.attrs, residual_after_act=1)
    nodes = [Node('Split', 'split', ['x', 'split'], ['xa', 'xb'], {'axis': 1}),
             Node('FusedConv', 'conv', ['xb', 'w', 'b', 'xb'], ['yc'], attrs),
             Node('Concat', 'cat', ['xa', 'yc'], ['y'], {'axis': 1})]
    g = Graph(nodes, ['x'], ['y'], values, {'w': w, 'b': b, 'split': np.array([128, 256])})
    x64 = x.astype(np.float64)
    conv = FusedConv(x64[:, 128:], fp16(w).astype(np.float64), b.astype(np.float64),
                     x64[:, 128:], **attrs)
    return g, {'x': x}, np.concatenate([x64[:, :128], conv], axis=1)


def sample_pixels(case, count=48) -> np.ndarray:
    """``count`` output pixels of image 0 spread over it, the first and last included."""
    p, q = case[0].values['y'].shape[2:]
    return np.unique(np.linspace(0, p * q - 1, min(count, p * q)).astype(int))
