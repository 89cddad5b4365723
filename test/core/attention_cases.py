"""A BERT-shaped ONNX model in the node pattern of PyTorch's TorchScript exporter (opset 17), for
the attention tests on the CPU (test_attention.py) and the GPU (test/cuda/test_attention_cuda.py).

Per layer: q/k/v MatMul + Add(bias) -> Reshape -> Transpose; the scale 1/sqrt(sqrt(d)) as a
Shape/Slice/Cast/Sqrt/Div/Cast/Sqrt chain (constant-folded at build) multiplied into Q and into
K^T; MatMul, [Add mask], Softmax, MatMul, Transpose, Reshape; o MatMul + Add, residual Add,
LayerNormalization; FFN with the Erf GELU; residual Add, LayerNormalization. ``div_scale``
writes the scale the Hugging Face way instead: Div(MatMul(Q, K^T), sqrt(d)).

Weights: seeded normal draws (std 0.02, BERT's initialisation). No trained BERT-tiny is
published in the package registries the project fetches from, so a fixed seed stands in for
real weights here; the real-model attention case is the zoo's ppocr-rec.
"""
import numpy as np
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    """Nodes and initializers of one model, with unique value names."""

    def __init__(self, seed):
        self.nodes, self.inits, self.rng, self.count = [], [], np.random.default_rng(seed), 0

    def name(self, base):
        self.count += 1
        return f'{base}_{self.count}'

    def const(self, base, array):
        name = self.name(base)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, base, shape):
        return self.const(base, (self.rng.standard_normal(shape) * 0.02).astype(np.float32))

    def constant_node(self, base, array):
        """A Constant node, as the exporter writes shapes and scalars."""
        out = self.name(base)
        self.nodes.append(helper.make_node('Constant', [], [out],
                                           value=numpy_helper.from_array(np.asarray(array))))
        return out

    def op(self, op_type, inputs, **attrs):
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def linear(self, x, n_in, n_out):
        """MatMul + Add(bias first), as the exporter writes nn.Linear."""
        y = self.op('MatMul', [x, self.weight('w', (n_in, n_out))])
        return self.op('Add', [self.weight('b', (n_out,)), y])

    def layernorm(self, x, hidden, affine=False):
        """LayerNormalization; gamma 1 and beta 0, or with ``affine`` seeded draws around
        them (std 0.1), so a gamma or beta read from the wrong column shows."""
        gamma, beta = np.ones(hidden, np.float32), np.zeros(hidden, np.float32)
        if affine:
            gamma += (self.rng.standard_normal(hidden) * 0.1).astype(np.float32)
            beta += (self.rng.standard_normal(hidden) * 0.1).astype(np.float32)
        gamma, beta = self.const('ln_w', gamma), self.const('ln_b', beta)
        return self.op('LayerNormalization', [x, gamma, beta], axis=-1, epsilon=1e-12)


def _heads(b, x, seq, heads, head_dim, perm):
    shape = b.constant_node('shape', np.array([1, seq, heads, head_dim], np.int64))
    return b.op('Transpose', [b.op('Reshape', [x, shape])], perm=perm)


def _scale_chain(b, q):
    """sqrt(1 / sqrt(d)) from Q's shape: the exporter's chain for SDPA's scale on Q and K."""
    last = b.op('Slice', [b.op('Shape', [q]), b.constant_node('s', np.array([-1], np.int64)),
                          b.constant_node('e', np.array([2 ** 62], np.int64))])
    root = b.op('Sqrt', [b.op('Cast', [last], to=TensorProto.FLOAT)])
    inv = b.op('Div', [b.constant_node('one', np.array(1.0, np.float32)), root])
    return b.op('Sqrt', [b.op('Cast', [inv], to=TensorProto.FLOAT)])


def _attention(b, x, seq, hidden, heads, mask, div_scale):
    d = hidden // heads
    q = _heads(b, b.linear(x, hidden, hidden), seq, heads, d, [0, 2, 1, 3])
    k = _heads(b, b.linear(x, hidden, hidden), seq, heads, d, [0, 2, 3, 1])
    v = _heads(b, b.linear(x, hidden, hidden), seq, heads, d, [0, 2, 1, 3])
    if div_scale:
        scores = b.op('Div', [b.op('MatMul', [q, k]),
                              b.constant_node('sqrt_d', np.array(np.sqrt(d), np.float32))])
    else:
        scale = _scale_chain(b, q)
        scores = b.op('MatMul', [b.op('Mul', [q, scale]), b.op('Mul', [k, scale])])
    if mask is not None:
        scores = b.op('Add', [scores, b.const('mask', mask)])
    ctx = b.op('MatMul', [b.op('Softmax', [scores], axis=-1), v])
    ctx = b.op('Transpose', [ctx], perm=[0, 2, 1, 3])
    return b.op('Reshape', [ctx, b.constant_node('shape', np.array([1, seq, hidden], np.int64))])


def _gelu(b, x):
    erf = b.op('Erf', [b.op('Div', [x, b.constant_node('sqrt2', np.float32(np.sqrt(2)))])])
    y = b.op('Mul', [x, b.op('Add', [erf, b.constant_node('one', np.float32(1.0))])])
    return b.op('Mul', [y, b.constant_node('half', np.float32(0.5))])


def bert_model(layers=2, hidden=128, heads=2, ffn=512, seq=128, mask=None, div_scale=False,
               seed=0, ln_affine=False):
    """The ModelProto of a BERT encoder on embeddings [1, seq, hidden] (input 'embeddings').
    ``mask``: a constant added to the scores (e.g. [1, 1, 1, seq] with -10000 at padding);
    ``ln_affine``: seeded LayerNorm gammas and betas (else 1 and 0)."""
    b = _Builder(seed)
    x = b.layernorm('embeddings', hidden, ln_affine)
    for _ in range(layers):
        att = b.linear(_attention(b, x, seq, hidden, heads, mask, div_scale), hidden, hidden)
        x = b.layernorm(b.op('Add', [x, att]), hidden, ln_affine)
        ffn_out = b.linear(_gelu(b, b.linear(x, hidden, ffn)), ffn, hidden)
        x = b.layernorm(b.op('Add', [x, ffn_out]), hidden, ln_affine)
    graph = helper.make_graph(
        b.nodes, 'bert_shaped',
        [helper.make_tensor_value_info('embeddings', TensorProto.FLOAT, [1, seq, hidden])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, seq, hidden])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8  # what opset 17 needs: an older ONNX Runtime than onnx loads it too
    return model


def padding_mask(seq, valid):
    """BERT's extended attention mask: 0 for the first ``valid`` keys, -10000 after."""
    mask = np.zeros((1, 1, 1, seq), np.float32)
    mask[..., valid:] = -10000.0
    return mask


def embeddings(seq=128, hidden=128, seed=1):
    """Seeded embeddings [1, seq, hidden] (the model's input)."""
    return np.random.default_rng(seed).standard_normal((1, seq, hidden)).astype(np.float32)
