"""The op registry: ONNX op type -> reference function. An unknown op fails loudly."""
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ops import elementwise

OPS = {
    'Relu': elementwise.Relu,
    'Add': elementwise.Add,
}


def supported_ops():
    """Sorted list of op types the engine can execute."""
    return sorted(OPS)


def run_node(node, inputs):
    """Run ``node`` on numpy ``inputs`` (None for omitted optionals); returns a list of outputs."""
    fn = OPS.get(node.op)
    if fn is None:
        raise UnsupportedOpError(node.op, node.name, OPS)
    args = list(inputs)
    while args and args[-1] is None:
        args.pop()
    result = fn(*args, **node.attrs)
    return list(result) if isinstance(result, tuple) else [result]
