"""The CUDA lowering run over an emulated FP16 arena, without a GPU (test helper).

``emulate(graph, feeds, launched)`` lowers ``graph`` for sm_90 and walks its nodes: a node
whose op is in ``launched`` runs its real launches (the copy kernels ``unary``/``unary_vec8``
and the ``gather`` kernel, emulated here element by element as the kernels index: row-major
over a View's shape; the batched ``matmul`` kernel through its operands' strides; a copy of a
constant reads the FP16 weight image), any other node runs the numpy op on its input slots and
writes its result through its output slot. A slot at the wrong place, a wrong view or stride,
or a copy skipped that was needed changes the outputs (the arena starts as NaN).
"""
import numpy as np

from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.ops import run_node

HALF = 2


def _strided(arena, element, shape, strides):
    return np.lib.stride_tricks.as_strided(arena[int(element):], tuple(int(n) for n in shape),
                                           tuple(arena.itemsize * int(s) for s in strides))


def slot_array(arena, slot):
    """The elements of ``slot`` in the emulated arena (a writable strided view)."""
    return _strided(arena, slot.ref.offset // HALF + slot.channel_off, slot.shape, slot.strides)


def view_offsets(rec, n) -> np.ndarray:
    """Element offsets of logical elements 0..n-1 of View record ``rec`` (tx2_view_offset)."""
    nd = int(rec['ndim'])
    coords = np.unravel_index(np.arange(n), tuple(int(d) for d in rec['shape'][:nd]))
    return int(rec['offset']) + sum(c * int(s) for c, s in zip(coords, rec['stride'][:nd]))


def _operand(arena, weights, ref, offset, shape, strides):
    """A strided operand of a kernel: in the arena, or (FP16) in the weight image."""
    if ref.base == 'weights':
        table = np.frombuffer(weights, np.float16, offset=ref.offset).astype(np.float64)
        return _strided(table, offset, shape, strides)
    return _strided(arena, ref.offset // HALF + offset, shape, strides)


def run_matmul(arena, weights, f):
    """The batched ``matmul`` kernel (kernels/gemm.cu): Y[b1, b2] = A[b1, b2] @ B[b1, b2], each
    operand read through its element strides, Y contiguous [B1, B2, M, N]."""
    assert float(f['alpha']) == 1.0 and int(f['act']['kind']) == 0 and f['bias'].base == 'null'
    m, n, k, b2 = (int(f[key]) for key in ('M', 'N', 'K', 'B2'))
    y = f['y'].offset // HALF
    for b in range(int(f['B1']) * b2):
        i1, i2 = divmod(b, b2)
        a = _operand(arena, weights, f['a'], i1 * int(f['a_b1']) + i2 * int(f['a_b2']),
                     (m, k), (int(f['a_m']), int(f['a_k'])))
        w = _operand(arena, weights, f['b'], i1 * int(f['b_b1']) + i2 * int(f['b_b2']),
                     (k, n), (int(f['b_k']), int(f['b_n'])))
        arena[y + b * m * n:y + (b + 1) * m * n] = (a @ w).ravel()


def run_launch(arena, weights, launch):
    """Execute one ``unary`` (op 0: a copy), ``unary_vec8``, ``gather`` or ``matmul``
    launch."""
    f = launch.fields
    if launch.kernel == 'matmul':
        run_matmul(arena, weights, f)
        return
    x, y = f['x'].offset // HALF, f['y'].offset // HALF
    source = arena if f['x'].base != 'weights' else \
        np.frombuffer(weights, np.float16).astype(np.float64)  # a copy of a constant
    if launch.kernel == 'unary_vec8':
        assert f['op'] == 0 and int(f['act']['kind']) == 0, launch
        n = 8 * int(f['n8'])
        arena[y:y + n] = source[x:x + n].copy()
        return
    n = int(f['n'])
    src = x + view_offsets(f['xv'], n)
    if launch.kernel == 'gather':
        table = np.frombuffer(weights, np.int32, int(f['count']), f['idx'].offset)
        src = src + table[(np.arange(n) // int(f['inner'])) % int(f['count'])] * int(f['step'])
    else:
        assert launch.kernel == 'unary' and f['op'] == 0, launch
        assert int(f['act']['kind']) == 0, launch
    arena[y + view_offsets(f['yv'], n)] = source[src].copy()


def emulate(graph, feeds, launched) -> tuple:
    """(outputs of ``graph`` over the emulated arena, the Lowered) for ops ``launched``."""
    lowered = lower_graph(graph, arch=90, sm_count=132)
    weights = lowered.weight_image().tobytes()
    arena = np.full(lowered.plan.arena_bytes // HALF + 64, np.nan, np.float64)
    for name, x in feeds.items():
        slot_array(arena, lowered.slots[name])[...] = x
    for node in graph.nodes:
        if node.op in launched:
            for launch in (k for k in lowered.launches if k.node == node.name):
                run_launch(arena, weights, launch)
            continue
        args = [np.array(slot_array(arena, lowered.slots[n]), np.float32)
                if n in lowered.slots else graph.weights.get(n) if n else None
                for n in node.inputs]
        for name, value in zip(node.outputs, run_node(node, args)):
            if name:
                slot_array(arena, lowered.slots[name])[...] = value
    outputs = {n: np.array(slot_array(arena, lowered.slots[n])) for n in graph.outputs}
    return outputs, lowered


def reference(graph, feeds) -> dict:
    """The outputs of ``graph`` by the numpy ops."""
    env = dict(feeds)
    for node in graph.nodes:
        args = [env[n] if n in env else graph.weights.get(n) if n else None
                for n in node.inputs]
        env.update(zip(node.outputs, run_node(node, args)))
    return {n: env[n] for n in graph.outputs}
