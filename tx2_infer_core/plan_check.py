"""Validation of a plan file's header: a crafted file is refused before anything uses it.

The sha256 of a plan file detects accidents, not a crafted file (whoever edits the header can
recompute it). So every field is checked before use, and the first bad one is named in a
``PlanFileError``:

- weights: names unique, dtypes from ``DTYPES``, shapes of non-negative ints, byte sizes that
  match the shape, offsets inside the blob region and no two blobs overlapping;
- values: dtypes from ``DTYPES``, static shapes, layouts from ``LAYOUTS``, sizes within the
  arena limit;
- nodes: op types the engine runs, unique names, a valid topological order over declared
  values (every input a graph input, a weight or an earlier output; each value produced once);
  ops whose inputs and output share one dtype (``SAME_DTYPE_OPS``) do;
- node attributes (``plan_attrs.check_attrs``) and the detector head in ``graph.meta``
  (``head_check``), naming the node and attribute or the head field;
- the memory plan: re-checked with ``planner.check_plan`` (offsets inside the arena, aligned,
  no live overlap, placed concats real), its arena no larger than the naive sum of its values
  and than ``max_arena_bytes``.
"""
import math

import numpy as np

from tx2_infer_core.errors import PlanFileError, Tx2InferError
from tx2_infer_core.head_check import head_problem
from tx2_infer_core.limits import DEFAULT_LIMITS
from tx2_infer_core.ops import OPS
from tx2_infer_core.plan_attrs import check_attrs
from tx2_infer_core.planner import MemoryPlan, align, check_plan

# The dtypes a plan may declare (little-endian or byte-order free): nothing else is read.
DTYPES = frozenset(np.dtype(d) for d in ('<f4', '<f2', '<i8', '<i4', '|i1', '|u1', '|b1'))
# Arrays inside node attributes (never in the arena) may also be float64, by dtype string.
ATTR_DTYPES = {d.str: d for d in (*DTYPES, np.dtype('<f8'))}
LAYOUTS = ('', 'NCHW', 'NHWC')
# Largest arena (bytes) a loaded plan may ask for; ``load_plan(max_arena_bytes=...)`` changes it.
MAX_ARENA_BYTES = DEFAULT_LIMITS.max_arena_bytes
# Ops whose present inputs and first output all have one dtype (ONNX type constraint T).
SAME_DTYPE_OPS = frozenset((
    'Relu', 'LeakyRelu', 'Sigmoid', 'Tanh', 'Clip', 'HardSwish', 'HardSigmoid', 'SiLU', 'Mish',
    'Add', 'Sub', 'Mul', 'Div', 'Max', 'Min', 'Sum', 'Mean', 'PRelu', 'Exp', 'Log', 'Sqrt',
    'Neg', 'Abs', 'Reciprocal', 'Erf', 'Gelu', 'Elu', 'Softplus', 'Conv', 'FusedConv',
    'ConvTranspose', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'GlobalMaxPool',
    'BatchNormalization', 'InstanceNormalization', 'MatMul', 'Gemm', 'Concat', 'Softmax',
    'LogSoftmax'))


def refuse(field, problem):
    """Raise the ``PlanFileError`` for a bad header ``field``."""
    raise PlanFileError(f'plan header field {field}: {problem}')


def _require(ok, field, problem):
    if not ok:
        refuse(field, problem)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _dtype(text, field) -> np.dtype:
    """The numpy dtype named ``text`` if it is in ``DTYPES``."""
    try:
        dtype = np.dtype(text) if isinstance(text, str) else None
    except TypeError:
        dtype = None
    _require(dtype in DTYPES, field, f'dtype {text!r} is not one of '
             'float32, float16, int64, int32, int8, uint8, bool (little-endian)')
    return dtype


def _shape(shape, field) -> tuple:
    _require(isinstance(shape, list) and all(_is_int(d) and d >= 0 for d in shape), field,
             f'shape {str(shape)[:60]} is not a list of non-negative ints')
    return tuple(shape)


def _entry(table, field, keys):
    _require(isinstance(table, dict), field, 'is not an object')
    missing = [k for k in keys if k not in table]
    _require(not missing, field, f'has no {missing}')


def check_weights(table, blob_bytes) -> None:
    """Weight table entries: whitelisted dtypes, sizes matching shapes, blobs inside the blob
    region (``blob_bytes`` long) and not overlapping one another."""
    _require(isinstance(table, list), 'weights', 'is not a list')
    spans, names = [], set()
    for k, entry in enumerate(table):
        field = f'weights[{k}]'
        _entry(entry, field, ('name', 'dtype', 'shape', 'offset', 'nbytes'))
        name, offset, nbytes = entry['name'], entry['offset'], entry['nbytes']
        _require(isinstance(name, str) and name not in names, f'{field}.name',
                 f'{name!r} is not a new string')
        names.add(name)
        size = math.prod(_shape(entry['shape'], f'{field}.shape'))
        size *= _dtype(entry['dtype'], f'{field}.dtype').itemsize
        _require(_is_int(nbytes) and nbytes == size, f'{field}.nbytes',
                 f'{nbytes!r} does not match its shape and dtype ({size} bytes)')
        _require(_is_int(offset) and 0 <= offset <= blob_bytes - nbytes, f'{field}.offset',
                 f"'{name}' at {offset!r} ({nbytes} bytes) is outside the weight region of "
                 f'{blob_bytes} bytes')
        spans.append((offset, offset + nbytes, name))
    spans.sort()
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        _require(start >= end, 'weights', f"blobs '{first}' and '{second}' overlap")


def check_values(values, max_bytes) -> None:
    """Graph values ``[name, shape, dtype, layout]``: whitelisted dtypes, static shapes."""
    _require(isinstance(values, list), 'graph.values', 'is not a list')
    names = set()
    for k, entry in enumerate(values):
        field = f'graph.values[{k}]'
        _require(isinstance(entry, list) and len(entry) == 4, field,
                 'is not [name, shape, dtype, layout]')
        name, shape, dtype, layout = entry
        _require(isinstance(name, str) and name and name not in names, f'{field}.name',
                 f'{name!r} is not a new non-empty string')
        names.add(name)
        nbytes = math.prod(_shape(shape, f'{field}.shape')) * _dtype(dtype, field).itemsize
        _require(nbytes <= max_bytes, f'{field}.shape',
                 f"'{name}' needs {nbytes} bytes, more than the limit {max_bytes}")
        _require(layout in LAYOUTS, f'{field}.layout', f'{layout!r} is not one of {LAYOUTS}')


def _names(items, field, allow_empty=False) -> list:
    ok = isinstance(items, list) and all(isinstance(n, str) for n in items)
    _require(ok and (allow_empty or all(items)), field, 'is not a list of value names')
    return items


def check_nodes(graph, weight_names) -> None:
    """Nodes of the graph header: known ops, unique names, topological order over declared
    values, every value produced once; graph inputs and outputs declared."""
    values = {entry[0] for entry in graph['values']}
    inputs = _names(graph['inputs'], 'graph.inputs')
    ready = set(weight_names) | {''}
    for name in inputs:
        _require(name in values and name not in ready, 'graph.inputs',
                 f"'{name}' is not a declared activation (or is listed twice)")
        ready.add(name)
    _require(isinstance(graph['nodes'], list), 'graph.nodes', 'is not a list')
    seen = set()
    for k, node in enumerate(graph['nodes']):
        field = f'graph.nodes[{k}]'
        _entry(node, field, ('op', 'name', 'inputs', 'outputs', 'attrs'))
        _require(node['op'] in OPS, f'{field}.op', f'{node["op"]!r} is not an op the engine '
                 'runs')
        _require(isinstance(node['name'], str) and node['name'] not in seen, f'{field}.name',
                 f'{node["name"]!r} is not a new node name')
        seen.add(node['name'])
        _require(isinstance(node['attrs'], dict), f'{field}.attrs', 'is not an object')
        for name in _names(node['inputs'], f'{field}.inputs', allow_empty=True):
            _require(name in ready, f'{field}.inputs', f"'{name}' is read before it is "
                     'produced (nodes out of topological order, or an undeclared value)')
        for name in _names(node['outputs'], f'{field}.outputs', allow_empty=True):
            _require(not name or (name in values and name not in ready), f'{field}.outputs',
                     f"'{name}' is undeclared, a weight, or produced twice")
            ready.add(name)
    for name in _names(graph['outputs'], 'graph.outputs'):
        _require(name in ready, 'graph.outputs', f"'{name}' is produced by no node")


def _dtype_of(graph, name):
    if name in graph.weights:
        return graph.weights[name].dtype
    return np.dtype(graph.values[name].dtype)


def dtype_covers(declared, computed) -> bool:
    """``declared`` is ``computed`` or a wider float: a plan may keep its float weights
    narrower (float16 for a float32 graph), and what they compute is then narrower too."""
    declared, computed = np.dtype(declared), np.dtype(computed)
    return declared == computed or (declared.kind == computed.kind == 'f'
                                    and computed.itemsize < declared.itemsize)


def _dtype_fits(graph, name, want) -> bool:
    """An activation has the output's dtype; a weight may be stored in a narrower float,
    never another kind."""
    have = _dtype_of(graph, name)
    return dtype_covers(want, have) if name in graph.weights else have == want


def check_dtypes(graph) -> None:
    """Ops in ``SAME_DTYPE_OPS`` read and write one dtype (a weight's dtype lie shows here);
    float weights may be stored narrower (``_dtype_fits``)."""
    for k, node in enumerate(graph.nodes):
        if node.op not in SAME_DTYPE_OPS or not node.outputs or not node.outputs[0]:
            continue
        want = _dtype_of(graph, node.outputs[0])
        for name in filter(None, node.inputs):
            _require(_dtype_fits(graph, name, want), f'graph.nodes[{k}].inputs',
                     f"{node.op} '{node.name}' reads '{name}' as {_dtype_of(graph, name)} "
                     f'but writes {want}')


def check_head(graph) -> None:
    """``graph.meta['head']`` (when present) decodes the graph's outputs (``head_check``)."""
    if 'head' in graph.meta:
        shapes = {name: graph.values[name].shape for name in graph.outputs}
        problem = head_problem(graph.meta['head'], shapes)
        _require(problem is None, 'graph.meta.head', problem)


def check_graph(graph) -> None:
    """The decoded graph: dtypes, node attributes, the detector head."""
    check_dtypes(graph)
    check_attrs(graph)
    check_head(graph)


def check_memory_plan(graph, plan_dict, max_arena_bytes=MAX_ARENA_BYTES,
                      source='the plan') -> MemoryPlan:
    """The header's memory plan as a ``MemoryPlan`` that ``planner.check_plan`` accepts, with an
    arena no larger than the naive sum of its values and than ``max_arena_bytes``."""
    try:
        plan = MemoryPlan.from_dict(plan_dict)
        _require(plan.alignment > 0 and plan.alignment % 16 == 0, 'memory_plan.alignment',
                 f'{plan.alignment} is not a positive multiple of 16')
        check_plan(graph, plan)
    except PlanFileError:
        raise
    except (Tx2InferError, KeyError, ValueError, TypeError, AttributeError,
            OverflowError) as exc:
        refuse('memory_plan', f'the memory plan of {source} is unsafe: {exc}')
    naive = sum(align(v.nbytes, plan.alignment) for v in graph.values.values())
    limit = min(naive, max_arena_bytes)
    _require(0 <= plan.arena_bytes <= limit, 'memory_plan.arena_bytes',
             f'{plan.arena_bytes} is not within [0, {limit}] (the naive sum of the values, '
             'and the limit)')
    return plan
