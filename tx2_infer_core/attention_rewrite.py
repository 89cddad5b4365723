"""ONNX ``Attention`` (opset 23/24) as opset-21 ops, the form ``passes/fuse_attention.py``
fuses into ``FusedAttention``::

    q, k, v [B, S, H*D] -Reshape [0, 0, H, -1], Transpose-> [B, H, S, D]       (3-D only)
    k, v <- Concat(past, k/v, axis 2) (present outputs); GQA: each kv head repeated
    scores = MatMul(q, Transpose(k)) * scale  [-> softcap * Tanh(scores / softcap)]
    bias = Where(bool mask, 0, -inf) | float mask  [+ Where(j <= i + past, 0, -inf)]
    y = MatMul(Softmax(scores + bias), v)   [rows whose bias is all -inf: 0]
    y -Transpose, Reshape [0, 0, -1]-> [B, S, H*D]                              (3-D only)

The qk_matmul_output output is the scores (after softcap; modes 0 and 1), the biased scores
(mode 2) or the probabilities (mode 3). Refused by name: ``nonpad_kv_seqlen``, sliding
windows, head counts shape inference cannot tell.
"""
import numpy as np
from onnx import TensorProto, helper, numpy_helper


def attr(node, name, default=None):
    """The value of ``node``'s attribute ``name`` (an ONNX NodeProto), else ``default``."""
    found = [a for a in node.attribute if a.name == name]
    return helper.get_attribute_value(found[0]) if found else default


QK_MODES = (0, 1, 2, 3)     # qk_matmul_output: the scores (softcapped), + bias, softmax


def _heads_first(e, x, heads):
    """[B, S, heads*D] -> [B, heads, S, D]."""
    return e('Transpose', [e('Reshape', [x, e.const([0, 0, heads, -1])])], perm=[0, 2, 1, 3])


def _repeat_heads(e, x, reps):
    """[B, H, S, D] -> [B, H*reps, S, D], each head repeated ``reps`` times in place."""
    wide = e('Expand', [e('Unsqueeze', [x, e.const([2])]), e.const([1, 1, reps, 1, 1])])
    shape = e('Mul', [e('Shape', [x]), e.const([1, reps, 1, 1])])
    return e('Reshape', [wide, shape])


def _seq_range(e, x):
    """Range(0, x.shape[2]) of a [B, H, S, D] value."""
    length = e('Squeeze', [e('Shape', [x], start=2, end=3)])
    return e('Range', [e.const(0), length, e.const(1)])


def _causal(e, q, k, past, zero, neg):
    """Where(j <= i + past length, 0, -inf) over [Sq, Skv]."""
    rows = _seq_range(e, q)
    if past:
        rows = e('Add', [rows, e('Squeeze', [e('Shape', [past], start=2, end=3)])])
    cols = e('Unsqueeze', [_seq_range(e, k), e.const([0])])
    allowed = e('LessOrEqual', [cols, e('Unsqueeze', [rows, e.const([1])])])
    return e('Where', [allowed, zero, neg])


def _mask_needs_guard(e, mask, causal) -> bool:
    """Whether a row of the mask can be all masked: unknown unless the mask is a constant
    (with causal masking key 0 is always allowed, so then only column 0 matters)."""
    if mask not in e.constants:
        return True
    allowed = numpy_helper.to_array(e.constants[mask])
    allowed = allowed if allowed.dtype == bool else allowed > -np.inf
    return not bool(np.all(allowed[..., 0] if causal else allowed.any(axis=-1)))


def _bias(e, node, q, k, past, dtype):
    """(additive bias or '', whether fully masked rows must be zeroed)."""
    mask = node.input[3] if len(node.input) > 3 else ''
    causal = attr(node, 'is_causal', 0)
    zero, neg = e.const(0, dtype), e.const(-np.inf, dtype)
    terms = []
    if mask:
        terms.append(e('Where', [mask, zero, neg])
                     if e.elem_type(mask) == TensorProto.BOOL else mask)
    if causal:
        terms.append(_causal(e, q, k, past, zero, neg))
    bias = e('Add', terms) if len(terms) == 2 else (terms[0] if terms else '')
    return bias, bool(mask) and _mask_needs_guard(e, mask, causal)


def _refuse_unsupported(e, node):
    if attr(node, 'qk_matmul_output_mode', 0) not in QK_MODES:
        e.refuse(f"qk_matmul_output_mode={attr(node, 'qk_matmul_output_mode')}")
    if len(node.input) > 6 and node.input[6]:
        e.refuse('nonpad_kv_seqlen')
    for side in ('left_window_size', 'right_window_size'):
        if attr(node, side, -1) != -1:
            e.refuse(f'{side}={attr(node, side)}')
    inputs = list(node.input) + [''] * 6
    if bool(inputs[4]) != bool(inputs[5]):
        e.refuse('past_key without past_value or the reverse')


def _heads(e, node, q, k):
    """(q heads, kv heads, q head size) from the attributes (3-D) or inferred shapes (4-D)."""
    q_dims, k_dims = e.dims(q), e.dims(k)
    rank = len(q_dims) if q_dims is not None else (3 if attr(node, 'q_num_heads') else 4)
    if rank == 3:
        hq, hkv = attr(node, 'q_num_heads', 0), attr(node, 'kv_num_heads', 0)
        if not hq or not hkv:
            e.refuse('3-D inputs without q_num_heads and kv_num_heads')
        size = q_dims[2] // hq if q_dims and q_dims[2] else None
    else:
        hq, hkv = (d[1] if d else None for d in (q_dims, k_dims))
        size = q_dims[3] if q_dims else None
    if not hq or not hkv or hq % hkv:
        e.refuse(f'head counts q {hq}, kv {hkv} (static, and q a multiple of kv)')
    return rank, hq, hkv, size


def _scale(e, node, size):
    scale = attr(node, 'scale')
    if scale is None:
        if not size:
            e.refuse('no scale and a head size shape inference cannot tell')
        scale = 1 / np.sqrt(size)
    return scale


def attention(e, node):
    """Attention-23/24 as the reference computes it (see the module doc)."""
    _refuse_unsupported(e, node)
    q, k, v = node.input[:3]
    past_k, past_v = (list(node.input[4:6]) + ['', ''])[:2]
    rank, hq, hkv, size = _heads(e, node, q, k)
    scale = _scale(e, node, size)
    dtype = helper.tensor_dtype_to_np_dtype(e.elem_type(q))
    if rank == 3:
        q, k, v = _heads_first(e, q, hq), _heads_first(e, k, hkv), _heads_first(e, v, hkv)
    if past_k:
        k = e('Concat', [past_k, k], axis=2)
        v = e('Concat', [past_v, v], axis=2)
    for output, value in zip(node.output[1:3], (k, v)):
        if output:
            e.last('Identity', [value], output)
    if hq != hkv:
        k, v = _repeat_heads(e, k, hq // hkv), _repeat_heads(e, v, hq // hkv)
    root = e.const(np.sqrt(scale), dtype)   # on q and k, as the reference does
    k_t = e('Transpose', [e('Mul', [k, root])], perm=[0, 1, 3, 2])
    scores = e('MatMul', [e('Mul', [q, root]), k_t])
    softcap = attr(node, 'softcap', 0.0)
    if softcap > 0:
        cap = e.const(softcap, dtype)
        scores = e('Mul', [e('Tanh', [e('Div', [scores, cap])]), cap])
    bias, guard = _bias(e, node, q, k, past_k, dtype)
    biased = e('Add', [scores, bias]) if bias else scores
    probs = e('Softmax', [biased], axis=-1)
    if guard:
        top = e('ReduceMax', [bias, e.const([-1])], keepdims=1)
        probs = e('Where', [e('IsInf', [top], detect_positive=0), e.const(0, dtype), probs])
    if len(node.output) > 3 and node.output[3]:
        mode = attr(node, 'qk_matmul_output_mode', 0)
        e.last('Identity', [(scores, scores, biased, probs)[mode]], node.output[3])
    if rank == 3:
        y = e('Transpose', [e('MatMul', [probs, v])], perm=[0, 2, 1, 3])
        e.last('Reshape', [y, e.const([0, 0, -1])], node.output[0])
    else:
        e.last('MatMul', [probs, v], node.output[0])
