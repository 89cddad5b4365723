"""The op registry: ONNX op type -> reference function (one per line of ``ops/traits.py``).
An unknown op fails loudly."""
import functools
import inspect

from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ops import conv, elementwise as ew, fused, nn, pool, quant, reduce, resize
from tx2_infer_core.ops import qoperator, recurrent, tensor
from tx2_infer_core.ops import attention, index, sampling
from tx2_infer_core.ops.common import AttributeNotSupported
from tx2_infer_core.ops.traits import TRAITS

MODULES = {'conv': conv, 'elementwise': ew, 'fused': fused, 'nn': nn, 'pool': pool,
           'quant': quant, 'qoperator': qoperator, 'recurrent': recurrent, 'reduce': reduce,
           'resize': resize, 'tensor': tensor, 'attention': attention, 'index': index,
           'sampling': sampling}
# op type -> reference function: the function named after the op in its traits' module
OPS = {name: getattr(MODULES[t.module], name) for name, t in TRAITS.items()}

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
