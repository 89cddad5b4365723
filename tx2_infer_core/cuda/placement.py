"""Channel placement in the NHWC arena: Concat inputs written in place, Split outputs as views.

An NHWC channel slice of a tensor is a strided view: the pixel stride is the whole tensor's
channel count and the view starts at a channel offset. Every image kernel takes both
(``x_pix``/``x_off``, ``y_pix``/``y_off``) and the elementwise kernels take any strides, so

- each output of a channel Split becomes a view of the Split's input (no copy), and
- each input of a channel Concat becomes a view of the Concat's output: its producer writes
  straight into its slice (no copy). An input that is already a view (a Split output) moves
  its whole root into the Concat, when the root's views fill the root at matching slices:

      cv1 ──▶ Split ──┬── a ─────────────────────┐
                      └── b ──▶ m0 ──▶ m1 ───────┼─▶ Concat[a, b, m0, m1] ──▶ cv2
                                                  (YOLOv8's C2f: cv1, a, b, m0, m1 are views)

A view is made only where the producer writes strided outputs and every consumer of every value
sharing its storage reads strided inputs (``STRIDED_OPS``); a convolution reading it must keep
its 16-byte loads (channel offset and pixel stride multiples of 8). Graph inputs and outputs
are never views. Where placement declines, the Concat/Split lowering copies as before.
"""
from tx2_infer_core.ops import traits

CONV_OPS = traits.names(cuda='conv')
STRIDED_OPS = frozenset(name for name in traits.names(strided=True) if traits.TRAITS[name].cuda)
VECTOR = 8  # halves per 16-byte load


def resolve(views: dict, name: str) -> tuple:
    """(root value, first channel inside it) of ``name``."""
    off = 0
    while name in views:
        name, start = views[name]
        off += start
    return name, off


class _Placer:
    """The state of one pass over the graph (see ``channel_views``)."""

    def __init__(self, graph, nhwc):
        self.graph, self.nhwc, self.views = graph, nhwc, {}
        self.fixed = set(graph.inputs) | set(graph.outputs)
        self.producers, self.consumers = graph.producers(), graph.consumers()

    def channels(self, name) -> int:
        return int(self.graph.values[name].shape[1])

    def channel_op(self, node) -> bool:
        """A Concat/Split over the channels of NHWC tensors of one N, H, W."""
        if node.op not in ('Concat', 'Split') or int(node.attrs.get('axis', 0)) not in (1, -3):
            return False
        names = [n for n in node.outputs if n] + [node.inputs[0]]
        if node.op == 'Concat':
            names += node.inputs
        if '' in names or not all(n in self.nhwc for n in names):
            return False
        dims = {(s[0],) + tuple(s[2:]) for s in (self.graph.values[n].shape for n in names)}
        return len(dims) == 1

    def reads_ok(self, name, pix, off) -> bool:
        """Every consumer of ``name`` reads it as a view with this pixel stride and offset."""
        for node in self.consumers.get(name, []):
            if node.op not in STRIDED_OPS:
                return False
            if node.op in CONV_OPS and node.inputs[0] == name:
                cg = self.graph.weights[node.inputs[1]].shape[1] \
                    if node.inputs[1] in self.graph.weights else 0
                if cg % VECTOR == 0 and (pix % VECTOR or off % VECTOR):
                    return False
        return True

    def tree(self, root) -> list:
        """(value, channel offset) of ``root`` and of every view resolving to it."""
        out = [(root, 0)]
        for name in self.views:
            r, off = resolve(self.views, name)
            if r == root:
                out.append((name, off))
        return out

    def split(self, node):
        x_root, x_off = resolve(self.views, node.inputs[0])
        start = 0
        for y in node.outputs:
            if y and y not in self.fixed and \
                    self.reads_ok(y, self.channels(x_root), x_off + start):
                self.views[y] = (node.inputs[0], start)
            start += self.channels(y) if y else 0

    def concat(self, node):
        z, groups, start = node.outputs[0], {}, 0
        for name in node.inputs:
            root, off = resolve(self.views, name)
            groups.setdefault(root, []).append((name, off, start))
            start += self.channels(name)
        for root, members in groups.items():
            if self.can_place(root, members, z):
                self.views[root] = (z, members[0][2] - members[0][1])

    def can_place(self, root, members, z) -> bool:
        """``root`` may become a view of ``z``: its views in this Concat fill it exactly, at
        one base channel, and every value sharing its storage stays readable."""
        producer = self.producers.get(root)
        if root in self.fixed or producer is None or producer.op not in STRIDED_OPS:
            return False
        if len({s - o for _, o, s in members}) != 1 or len({n for n, _, _ in members}) != \
                len(members):
            return False
        spans = sorted((o, self.channels(n)) for n, o, _ in members)
        pos = 0
        for off, c in spans:
            if off != pos:
                return False
            pos += c
        if pos != self.channels(root):
            return False
        base = members[0][2] - members[0][1]
        return all(self.reads_ok(n, self.channels(z), base + off) for n, off in self.tree(root))


def channel_views(graph, nhwc: set) -> dict:
    """{value: (parent value, first channel)} of the NHWC values stored inside another (see the
    module doc); ``nhwc`` is ``layout.nhwc_values(graph)``."""
    placer = _Placer(graph, nhwc)
    for node in graph.nodes:
        if not placer.channel_op(node):
            continue
        if node.op == 'Split':
            placer.split(node)
        else:
            placer.concat(node)
    return placer.views
