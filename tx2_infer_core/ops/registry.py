"""The op registry: ONNX op type -> reference function. An unknown op fails loudly."""
import functools
import inspect

from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ops import conv, elementwise as ew, fused, nn, pool, reduce, resize
from tx2_infer_core.ops import tensor
from tx2_infer_core.ops.common import AttributeNotSupported

OPS = {
    # activations
    'Relu': ew.Relu,
    'LeakyRelu': ew.LeakyRelu,
    'PRelu': ew.PRelu,
    'Sigmoid': ew.Sigmoid,
    'Tanh': ew.Tanh,
    'HardSigmoid': ew.HardSigmoid,
    'HardSwish': ew.HardSwish,
    'Clip': ew.Clip,
    'Elu': ew.Elu,
    'Softplus': ew.Softplus,
    # arithmetic
    'Add': ew.Add,
    'Sub': ew.Sub,
    'Mul': ew.Mul,
    'Div': ew.Div,
    'Pow': ew.Pow,
    'Mod': ew.Mod,
    'Sqrt': ew.Sqrt,
    'Exp': ew.Exp,
    'Log': ew.Log,
    'Erf': ew.Erf,
    'Neg': ew.Neg,
    'Abs': ew.Abs,
    'Floor': ew.Floor,
    'Ceil': ew.Ceil,
    'Round': ew.Round,
    'Reciprocal': ew.Reciprocal,
    'Sign': ew.Sign,
    'Sin': ew.Sin,
    'Cos': ew.Cos,
    'Sum': ew.Sum,
    'Mean': ew.Mean,
    'Max': ew.Max,
    'Min': ew.Min,
    # comparison and logic
    'Equal': ew.Equal,
    'Less': ew.Less,
    'LessOrEqual': ew.LessOrEqual,
    'Greater': ew.Greater,
    'GreaterOrEqual': ew.GreaterOrEqual,
    'Not': ew.Not,
    'And': ew.And,
    'Or': ew.Or,
    'Xor': ew.Xor,
    'Where': ew.Where,
    'IsNaN': ew.IsNaN,
    'IsInf': ew.IsInf,
    # convolution, pooling, normalisation, matrix products
    'Conv': conv.Conv,
    'ConvTranspose': conv.ConvTranspose,
    'MaxPool': pool.MaxPool,
    'AveragePool': pool.AveragePool,
    'LpPool': pool.LpPool,
    'GlobalAveragePool': pool.GlobalAveragePool,
    'GlobalMaxPool': pool.GlobalMaxPool,
    'BatchNormalization': nn.BatchNormalization,
    'InstanceNormalization': nn.InstanceNormalization,
    'LayerNormalization': nn.LayerNormalization,
    'LRN': nn.LRN,
    'Softmax': nn.Softmax,
    'LogSoftmax': nn.LogSoftmax,
    'Hardmax': nn.Hardmax,
    'MatMul': nn.MatMul,
    'Gemm': nn.Gemm,
    # reductions
    'ReduceMean': reduce.ReduceMean,
    'ReduceSum': reduce.ReduceSum,
    'ReduceMax': reduce.ReduceMax,
    'ReduceMin': reduce.ReduceMin,
    'ReduceProd': reduce.ReduceProd,
    'ReduceL1': reduce.ReduceL1,
    'ReduceL2': reduce.ReduceL2,
    'ReduceSumSquare': reduce.ReduceSumSquare,
    'ReduceLogSum': reduce.ReduceLogSum,
    'ReduceLogSumExp': reduce.ReduceLogSumExp,
    'ArgMax': reduce.ArgMax,
    'ArgMin': reduce.ArgMin,
    # resampling
    'Resize': resize.Resize,
    'Upsample': resize.Upsample,
    # shape and data movement
    'Identity': tensor.Identity,
    'Dropout': tensor.Dropout,
    'Cast': tensor.Cast,
    'CastLike': tensor.CastLike,
    'Shape': tensor.Shape,
    'Size': tensor.Size,
    'Constant': tensor.Constant,
    'ConstantOfShape': tensor.ConstantOfShape,
    'Range': tensor.Range,
    'Reshape': tensor.Reshape,
    'Flatten': tensor.Flatten,
    'Transpose': tensor.Transpose,
    'Squeeze': tensor.Squeeze,
    'Unsqueeze': tensor.Unsqueeze,
    'Concat': tensor.Concat,
    'Split': tensor.Split,
    'Slice': tensor.Slice,
    'Gather': tensor.Gather,
    'GatherElements': tensor.GatherElements,
    'Expand': tensor.Expand,
    'Tile': tensor.Tile,
    'Pad': tensor.Pad,
    'DepthToSpace': tensor.DepthToSpace,
    'SpaceToDepth': tensor.SpaceToDepth,
    'NonZero': tensor.NonZero,
    # internal fused ops (produced by passes)
    'FusedConv': fused.FusedConv,
}

# Ops whose output count is an attribute defaulting to the node's number of outputs.
_OUTPUT_COUNT_ATTR = {'Split': 'num_outputs'}


def supported_ops():
    """Sorted list of op types the engine can execute."""
    return sorted(OPS)


@functools.lru_cache(maxsize=None)
def _attribute_names(fn):
    """Keyword-only parameter names of ``fn`` (None: it takes any attribute)."""
    params = inspect.signature(fn).parameters.values()
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind == p.KEYWORD_ONLY or p.default is not
                     p.empty)


def _check_attributes(node, fn):
    names = _attribute_names(fn)
    unknown = sorted(set(node.attrs) - names) if names is not None else []
    if unknown:
        raise UnsupportedOpError(node.op, node.name, OPS, f'attribute {unknown[0]!r}')


def run_node(node, inputs):
    """Run ``node`` on numpy ``inputs`` (None for omitted optionals); returns a list of outputs.

    The list has one entry per node output (optional outputs the node does not name are
    dropped); an op or attribute value that is not implemented raises UnsupportedOpError.
    """
    fn = OPS.get(node.op)
    if fn is None:
        raise UnsupportedOpError(node.op, node.name, OPS)
    _check_attributes(node, fn)
    args = list(inputs)
    while args and args[-1] is None:
        args.pop()
    attrs = dict(node.attrs)
    count_attr = _OUTPUT_COUNT_ATTR.get(node.op)
    if count_attr and count_attr not in attrs:
        attrs[count_attr] = len(node.outputs)
    try:
        result = fn(*args, **attrs)
    except AttributeNotSupported as exc:
        raise UnsupportedOpError(node.op, node.name, OPS, str(exc)) from None
    results = list(result) if isinstance(result, tuple) else [result]
    if len(results) < len(node.outputs) and any(node.outputs[len(results):]):
        raise UnsupportedOpError(node.op, node.name, OPS,
                                 f'output {len(results)} ({node.outputs[len(results)]!r})')
    return results[:len(node.outputs)] if node.outputs else results
