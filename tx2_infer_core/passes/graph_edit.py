"""Small graph-editing helpers shared by the passes (matching facts and one-shot rewrites).

A pass collects its matches first, then calls :func:`rewrite_nodes` once; these helpers never
store scratch state on the IR.
"""
import numpy as np

# ONNX TensorProto data type -> numpy dtype name (the ones a Cast may name).
ONNX_DTYPES = {1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32',
               7: 'int64', 9: 'bool', 10: 'float16', 11: 'float64', 12: 'uint32',
               13: 'uint64'}

FLOAT_DTYPES = ('float32', 'float16')


def sole_consumer(graph, consumers, name):
    """The one node reading ``name``, or None (several readers, none, or a graph output)."""
    readers = consumers.get(name, [])
    if name in graph.outputs or len(readers) != 1:
        return None
    return readers[0]


def constant(graph, name):
    """The constant array named ``name``, or None for activations and omitted inputs."""
    return graph.weights.get(name) if name else None


def dtype_of(graph, name):
    """The dtype name of a value or constant, or None when unknown."""
    if name in graph.weights:
        return np.asarray(graph.weights[name]).dtype.name
    value = graph.values.get(name)
    return value.dtype if value else None


def shape_of(graph, name):
    """The static shape of a value or constant, or None when unknown."""
    if name in graph.weights:
        return tuple(np.shape(graph.weights[name]))
    value = graph.values.get(name)
    return tuple(value.shape) if value is not None and value.shape is not None else None


def unique_name(graph, base):
    """A name not yet used by any value, weight or graph input/output."""
    name, k = base, 0
    while name in graph.values or name in graph.weights or name in graph.outputs or \
            name in graph.inputs:
        k += 1
        name = f'{base}_{k}'
    return name


def add_weight(graph, base, array):
    """Store ``array`` as a new constant and return its name."""
    name = unique_name(graph, base)
    graph.weights[name] = array
    return name


def rename_value(graph, old, new):
    """Make every producer and reader of ``old`` use ``new`` (graph outputs included)."""
    for node in graph.nodes:
        node.inputs = [new if i == old else i for i in node.inputs]
        node.outputs = [new if o == old else o for o in node.outputs]
    graph.outputs = [new if o == old else o for o in graph.outputs]
    if old in graph.values:
        value = graph.values.pop(old)
        if new not in graph.values:
            value.name = new
            graph.values[new] = value


def can_alias(graph, dst, src):
    """Whether readers of ``dst`` may read ``src`` instead (see :func:`alias`)."""
    if dst not in graph.outputs:
        return True
    # ``src`` gets renamed to the output name, so it must be a plain node output.
    return not (src in graph.inputs or src in graph.weights or src in graph.outputs)


def alias(graph, dst, src):
    """Remove the value ``dst`` by making its readers read ``src``, keeping output names stable.

    When ``dst`` is a graph output, ``src``'s producer is renamed to write ``dst`` instead.
    Call :func:`can_alias` first. The node that produced ``dst`` must be removed by the caller.
    """
    if dst in graph.outputs:
        graph.values.pop(dst, None)
        rename_value(graph, src, dst)
        return
    for node in graph.nodes:
        node.inputs = [src if i == dst else i for i in node.inputs]
    graph.values.pop(dst, None)


def redirect(graph, sources):
    """Remove the values ``sources`` names: their readers read ``sources[name]`` instead
    (followed through chains), in one sweep. None of them may be a graph output; the nodes
    that produced them must be removed by the caller."""
    sources = dict(sources)

    def final(name):
        chain = []
        while name in sources:
            chain.append(name)
            name = sources[name]
        sources.update(dict.fromkeys(chain, name))      # each chain is walked once
        return name

    if not sources:
        return
    for node in graph.nodes:
        node.inputs = [final(i) for i in node.inputs]
    for name in sources:
        graph.values.pop(name, None)


def rewrite_nodes(graph, replace=None, remove=()):
    """Rebuild the node list once: ``replace`` maps id(node) -> new nodes put in its place,
    ``remove`` holds id(node) of nodes to drop. Returns the number of nodes touched."""
    replace = replace or {}
    remove = set(remove)
    nodes = []
    for node in graph.nodes:
        if id(node) in replace:
            nodes.extend(replace[id(node)])
        elif id(node) not in remove:
            nodes.append(node)
    graph.nodes = nodes
    return len(replace) + len(remove)


def drop_stale_values(graph):
    """Forget value entries that no node, input or output mentions any more."""
    live = set(graph.inputs) | set(graph.outputs)
    for node in graph.nodes:
        live.update(node.inputs)
        live.update(node.outputs)
    for name in [n for n in graph.values if n not in live]:
        del graph.values[name]
