"""ONNX control flow resolved at import: ``If``, ``Loop`` and ``Scan`` rewritten away over the
ONNX protos, before the IR is built, so that the importer, the passes and the backends never
see them.

Shapes in the IR are fixed at build, so only control flow whose course is known at build runs:

- ``If`` whose condition is known (a constant, or computed from constants and input shapes):
  the chosen branch's nodes are inlined, renamed uniquely, and its outputs wired to the If's
  outputs (Identity nodes). ::

      c (known) --If(then, else)--> y      becomes      <nodes of the chosen branch> -> y

- ``Loop`` whose iteration count is known: the trip count ``M`` a constant (or absent) and the
  condition known before the first iteration and after each one (computed from constants, the
  iteration number and loop-carried values that are themselves known). The body is repeated
  until the condition is False or ``M`` is reached; iteration i's carried outputs feed
  iteration i+1; a scan output (an extra body output) is the iterations' values stacked on a
  new axis 0 (Unsqueeze + Concat). Body nodes that read only constants, outer values and
  carried values the body passes through unchanged are emitted once, before the first
  iteration (loop-invariant weights are not copied per iteration).
- ``Scan`` whose sequence length is known (``scan.py``).

Nested control flow is resolved the same way, iteration by iteration. Anything else is
refused by name (``UnsupportedOpError``): a condition or trip count that depends on the input
data, more than ``MAX_UNROLLED_NODES`` nodes in all, a Loop that runs no iteration but has
scan outputs, a Scan over a value of unknown length. Known values are computed with the
reference ops, from small tensors only (``FOLD_ELEMENTS``).
"""
import numpy as np
import onnx
from onnx import helper, numpy_helper

from tx2_infer_core.errors import ModelFormatError, UnsupportedOpError
from tx2_infer_core.ops import run_node
from tx2_infer_core.scan import unroll_scan
from tx2_infer_core.subgraphs import (collect_names, graph_attr, has_graph, invariant_nodes,
                                      ir_node, names_read, rename_free, subgraphs)

MAX_UNROLLED_NODES = 200_000    # nodes emitted by unrolling, over the whole model
FOLD_ELEMENTS = 1 << 16         # the largest input a build-time value is computed from
GROWING_OPS = {'ConstantOfShape', 'Expand', 'Tile', 'Range', 'Pad', 'Resize', 'Upsample',
               'OneHot', 'RandomNormal', 'RandomUniform', 'RandomNormalLike',
               'RandomUniformLike', 'Multinomial', 'Bernoulli'}   # never computed here


def has_control_flow(graph) -> bool:
    """Whether any node of ``graph`` (a GraphProto) has a graph attribute."""
    return any(has_graph(node) for node in graph.node)


def inline_control_flow(model, input_shapes=None) -> onnx.ModelProto:
    """``model`` itself when it has no control flow, else a copy whose main graph has every
    If and Loop resolved (see the module doc). ``input_shapes``: {graph input: static shape},
    so that ``Shape`` of an input is known."""
    if not has_control_flow(model.graph):
        return model
    unroller = Unroller(model.graph, input_shapes or {})
    nodes = unroller.expand(model.graph.node)
    result = onnx.ModelProto()
    result.CopyFrom(model)
    del result.graph.node[:]
    result.graph.node.extend(nodes)
    return result


class Unroller:
    """The state of one model's rewrite: the values known at build, the names taken and the
    number of nodes emitted so far."""

    def __init__(self, graph, input_shapes):
        self.known = {t.name: numpy_helper.to_array(t) for t in graph.initializer
                      if _small(t.dims) and t.data_location != onnx.TensorProto.EXTERNAL}
        self.shapes = {t.name: tuple(t.dims) for t in graph.initializer}   # static shapes
        self.shapes.update((name, tuple(shape)) for name, shape in input_shapes.items())
        self.taken = set()
        collect_names(graph, self.taken)
        self.emitted = 0

    def expand(self, nodes) -> list:
        """``nodes`` (already named for their place in the main graph) with control flow
        resolved; records what becomes known on the way."""
        out = []
        for node in nodes:
            if not node.name and has_graph(node):      # a name for its values and errors
                node = _named(node, self.fresh(node.op_type))
            if node.op_type == 'If' and node.domain in ('', 'ai.onnx'):
                out.extend(self.inline_if(node))
            elif node.op_type == 'Loop' and node.domain in ('', 'ai.onnx'):
                out.extend(self.unroll_loop(node))
            elif node.op_type == 'Scan' and node.domain in ('', 'ai.onnx'):
                out.extend(unroll_scan(self, node))
            else:
                self.fold(node)
                out.append(node)
        return out

    # --- If --------------------------------------------------------------------------------

    def inline_if(self, node) -> list:
        """The chosen branch's nodes, then one Identity per If output."""
        cond = self.known.get(node.input[0])
        if cond is None or cond.size != 1:
            raise UnsupportedOpError('If', node.name, [], 'the condition depends on the input '
                                     'data; an If is inlined only when its condition is known '
                                     'at build time')
        chosen = 'then_branch' if bool(cond.reshape(-1)[0]) else 'else_branch'
        branch = graph_attr(node, chosen)
        _check_arity(node, chosen, len(branch.output) == len(node.output))
        mapping = {}
        out = self.constants(branch, mapping, node.name)
        out += self.expand(self.renamed(branch.node, mapping, node.name))
        outputs = [mapping.get(o.name, o.name) for o in branch.output]
        return out + self.wire(node, node.output, outputs)

    # --- Loop ------------------------------------------------------------------------------

    def unroll_loop(self, node) -> list:
        """Hoisted invariant nodes, the iterations, then the Loop's outputs wired."""
        body = graph_attr(node, 'body')
        _check_arity(node, 'body', len(body.input) == max(2, len(node.input)) and
                     len(body.output) >= len(body.input) - 1)
        trips, cond = self.loop_bounds(node)
        iter_in, cond_in = body.input[0].name, body.input[1].name
        carried_in = [i.name for i in body.input[2:]]
        cond_out = body.output[0].name
        carried_out = [o.name for o in body.output[1:1 + len(carried_in)]]
        scan_out = [o.name for o in body.output[1 + len(carried_in):]]
        mapping = {name: outer for name, out, outer in zip(carried_in, carried_out,
                                                           node.input[2:]) if name == out}
        out = self.constants(body, mapping, node.name)
        invariant = invariant_nodes(body, set(mapping))
        out += self.expand(self.renamed([body.node[k] for k in invariant], mapping, node.name))
        variant = [n for k, n in enumerate(body.node) if k not in invariant]
        self.charge(node, len(invariant), 0)
        read = names_read(body)
        carried, scans, i = list(node.input[2:]), [[] for _ in scan_out], 0
        while cond and (trips is None or i < trips):
            prefix = f'{node.name}/{i}'
            names = dict(mapping)
            names.update(zip(carried_in, carried))
            if iter_in in read:
                names[iter_in] = self.constant(np.array(i, np.int64), prefix, out)
            if cond_in in read:
                names[cond_in] = self.constant(np.array(True), prefix, out)
            out += self.expand(self.renamed(variant, names, prefix))
            carried = [names.get(o, o) for o in carried_out]
            for k, name in enumerate(scan_out):
                scans[k].append(names.get(name, name))
            i += 1
            self.charge(node, max(1, len(variant)), i)
            if trips is None or i < trips:
                cond = self.loop_condition(node, names.get(cond_out, cond_out), i)
        out += self.wire(node, node.output[:len(carried)], carried)
        return out + self.stack(node, node.output[len(carried):], scans)

    def loop_bounds(self, node) -> tuple:
        """(trip count or None, initial condition) of a Loop, both known at build (the
        condition need not be when M is 0)."""
        trips = cond = None
        m_input, cond_input = (list(node.input) + ['', ''])[:2]
        if m_input:
            trips = self.known.get(m_input)
            if trips is None or trips.size != 1:
                raise UnsupportedOpError('Loop', node.name, [], 'the trip count M depends on '
                                         'the input data; a Loop is unrolled at build time '
                                         'only when its iteration count is known')
            trips = int(trips.reshape(-1)[0])
        if cond_input and trips != 0:
            cond = self.loop_condition(node, cond_input, 0)
        return trips, cond is not False

    def loop_condition(self, node, name, iteration) -> bool:
        """The known condition ``name`` of a Loop after ``iteration`` iterations."""
        cond = self.known.get(name)
        if cond is None or cond.size != 1:
            when = 'initial condition' if iteration == 0 else \
                f'condition after iteration {iteration - 1}'
            raise UnsupportedOpError('Loop', node.name, [], f"the {when} ('{name}') depends "
                                     'on the input data; a Loop is unrolled at build time '
                                     'only when its iteration count is known')
        return bool(cond.reshape(-1)[0])

    def stack(self, node, outputs, scans, axes=None) -> list:
        """Unsqueeze + Concat of each scan output's per-iteration values on a new axis (0, or
        its entry of ``axes``)."""
        if not any(outputs):
            return []
        if not scans[0]:
            raise UnsupportedOpError(node.op_type, node.name, [], 'it runs no iteration and '
                                     'has scan outputs, whose shape would be unknown')
        out = []
        for name, values, axis in zip(outputs, scans, axes or [0] * len(outputs)):
            if not name:
                continue
            index = self.constant(np.array([axis], np.int64), name, out)
            parts = [self.fresh(f'{v}/stacked') for v in values]
            out += [helper.make_node('Unsqueeze', [v, index], [p], self.fresh(p))
                    for v, p in zip(values, parts)]
            out.append(helper.make_node('Concat', parts, [name], self.fresh(name), axis=axis))
        return out

    # --- shared pieces ---------------------------------------------------------------------

    def charge(self, node, count, iteration):
        """Count ``count`` emitted nodes; refuse ``node`` past ``MAX_UNROLLED_NODES``."""
        self.emitted += count
        if self.emitted > MAX_UNROLLED_NODES:
            raise UnsupportedOpError(node.op_type, node.name, [], (
                f'unrolling needs more than MAX_UNROLLED_NODES={MAX_UNROLLED_NODES} nodes '
                f'(at iteration {iteration})'))

    def wire(self, node, outputs, sources) -> list:
        """One Identity per named output of ``node``, from the value that becomes it."""
        return [helper.make_node('Identity', [src], [name], self.fresh(f'{name}/wire'))
                for name, src in zip(outputs, sources) if name]

    def constants(self, graph, mapping, prefix) -> list:
        """A subgraph's initializers as renamed Constant nodes (``mapping`` records names)."""
        out = []
        for tensor in graph.initializer:
            name = self.fresh(f'{prefix}/{tensor.name}')
            mapping[tensor.name] = name
            out.append(helper.make_node('Constant', [], [name], name, value=tensor))
            if _small(tensor.dims) and tensor.data_location != onnx.TensorProto.EXTERNAL:
                self.known[name] = numpy_helper.to_array(tensor)
        return out

    def constant(self, array, prefix, out) -> str:
        """Append a Constant node holding ``array`` to ``out``; returns its output name."""
        name = self.fresh(f'{prefix}/const')
        out.append(helper.make_node('Constant', [], [name], name,
                                    value=numpy_helper.from_array(array)))
        self.known[name] = array
        return name

    def renamed(self, nodes, mapping, prefix) -> list:
        """Copies of ``nodes`` reading and writing through ``mapping``; each output gets a new
        name under ``prefix`` (recorded in ``mapping``), as does each node; the outer names a
        nested subgraph reads are renamed through ``mapping`` too."""
        copies = []
        for node in nodes:
            for name in node.output:
                if name:
                    mapping[name] = self.fresh(f'{prefix}/{name}')
            copy = helper.make_node(
                node.op_type, [mapping.get(i, i) for i in node.input],
                [mapping.get(o, o) for o in node.output],
                self.fresh(f'{prefix}/{node.name or node.op_type}'), domain=node.domain)
            copy.attribute.extend(node.attribute)
            for graph in subgraphs(copy):
                rename_free(graph, mapping)
            copies.append(copy)
        return copies

    def fresh(self, base) -> str:
        """``base``, or ``base_k`` for the first k that no value or node of the model uses."""
        name, k = base, 0
        while name in self.taken:
            k += 1
            name = f'{base}_{k}'
        self.taken.add(name)
        return name

    def fold(self, node):
        """Record ``node``'s outputs as known when its inputs are small known values (or, for
        Shape, of known shape)."""
        if node.op_type == 'Shape' and node.input[0] in self.shapes:
            args = [np.broadcast_to(np.uint8(0), self.shapes[node.input[0]])]
        else:
            args = [self.known.get(i) if i else None for i in node.input]
            if any(a is None for a, i in zip(args, node.input) if i) or \
                    any(a is not None and a.size > FOLD_ELEMENTS for a in args):
                return
        computable = None if node.op_type in GROWING_OPS else ir_node(node, FOLD_ELEMENTS)
        if computable is None:
            return
        try:
            with np.errstate(all='ignore'):
                results = run_node(computable, args)
        except Exception:  # noqa: BLE001 - any failure: the value is not known at build
            return
        for name, array in zip(node.output, results):
            if name:
                self.known[name] = np.asarray(array)
                self.shapes[name] = np.shape(array)


def _named(node, name) -> onnx.NodeProto:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    copy.name = name
    return copy


def _check_arity(node, attr, fits):
    """``ModelFormatError`` unless the subgraph ``attr`` of ``node`` ``fits`` its inputs and
    outputs."""
    if not fits:
        raise ModelFormatError(f"{node.op_type} node '{node.name}': its graph '{attr}' does "
                               "not match the node's inputs and outputs")


def _small(dims) -> bool:
    return int(np.prod(dims, dtype=np.int64)) <= FOLD_ELEMENTS
