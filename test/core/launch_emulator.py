"""A host emulation of the copy, scatter and reduction launches (``kernels/elementwise.cu``
``unary`` with op 0 and ``unary_vec8`` copies, ``kernels/scatter.cu``, ``kernels/pool.cu``
``global_reduce``; the row kernels and ``pool2d`` in ``rows_emulator.py``, TopK and the gathers
in ``index_emulator.py``) over the FP16 arena and weight buffer of a lowered graph, for the Pad,
reduction, normalisation, axis-op, index-op and scatter lowering tests.

Each launch reads and writes exactly the elements its record names (View records walked as
``tx2_view_offset`` does), so a wrong offset, stride or count changes the result.
"""
import index_emulator
import numpy as np
import rows_emulator
from rows_emulator import int32_at, put_int32

from tx2_infer_core.cuda import params
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.ops import run_node

REDUCE = {code: op for op, code in params.REDUCE_OPS.items()}


def view_offsets(view, count):
    """Element offsets of logical indices 0..count-1 of a View record."""
    i, off = np.arange(count), np.full(count, int(view['offset']))
    for d in range(int(view['ndim']) - 1, -1, -1):
        n = int(view['shape'][d])
        off += (i % n) * int(view['stride'][d])
        i //= n
    return off


def _at(memory, ref):
    """(buffer, first element) of a Ref."""
    return memory[ref.base], ref.offset // 2


def _copy(memory, f):
    assert f['op'] == 0 and int(f['act']['kind']) == 0, 'a copy'
    (src, s0), (dst, d0) = _at(memory, f['x']), _at(memory, f['y'])
    n = int(f['n'])
    dst[d0 + view_offsets(f['yv'], n)] = src[s0 + view_offsets(f['xv'], n)]


def _copy_i32(memory, f):
    """``copy_i32``: int32 elements (two halves each, ``rows_emulator.put_int32``)."""
    (src, s0), (dst, d0) = _at(memory, f['x']), _at(memory, f['y'])
    n = int(f['n'])
    put_int32(dst, d0, view_offsets(f['yv'], n), src[int32_at(s0, view_offsets(f['xv'], n))])


def _io(memory, launch):
    """The graph output conversions ``from_arena_f32`` / ``from_arena_i32`` (row-major slots:
    C = 1) into the FP32 staging buffer ``memory['io']``."""
    f = launch.fields
    assert int(f['C']) == 1, 'a row-major output'
    (src, s0), n = _at(memory, f['x']), int(f['n'])
    at = int32_at(s0, np.arange(n)) if launch.kernel == 'from_arena_i32' else s0 + np.arange(n)
    start = f['y'].offset // 4
    memory['io'][start:start + n] = src[at]


def _log_sum_exp(x):
    peak = np.max(x, axis=1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0)
    return (np.log(np.sum(np.exp(x - peak), axis=1, keepdims=True)) + peak)[:, 0]


REDUCTIONS = {  # of [N, HW, C] over the pixels, as global_reduce computes each op
    'ReduceMean': lambda x: np.mean(x, axis=1), 'ReduceSum': lambda x: np.sum(x, axis=1),
    'ReduceMax': lambda x: np.max(x, axis=1), 'ReduceMin': lambda x: np.min(x, axis=1),
    'ReduceProd': lambda x: np.prod(x, axis=1), 'ReduceL1': lambda x: np.abs(x).sum(axis=1),
    'ReduceL2': lambda x: np.sqrt((x * x).sum(axis=1)),
    'ReduceSumSquare': lambda x: (x * x).sum(axis=1),
    'ReduceLogSum': lambda x: np.log(np.sum(x, axis=1)), 'ReduceLogSumExp': _log_sum_exp}


def _reduce(memory, f):
    (src, s0), (dst, d0) = _at(memory, f['x']), _at(memory, f['y'])
    n, hw, c = int(f['N']), int(f['HW']), int(f['C'])
    idx = ((np.arange(n)[:, None, None] * hw + np.arange(hw)[None, :, None]) * int(f['x_pix'])
           + int(f['x_off']) + np.arange(c)[None, None, :])
    out = REDUCTIONS[REDUCE[int(f['op'])]](src[s0 + idx].astype(np.float32))
    dst[d0 + (np.arange(n)[:, None] * int(f['y_pix']) + int(f['y_off'])
              + np.arange(c)[None, :])] = out


SCATTER_COMBINE = {0: lambda acc, v: v, 1: np.add, 2: np.multiply, 3: np.maximum,
                   4: np.minimum}  # kernels/scatter.cu SCATTER_<NAME>


def _scatter(memory, f):
    """``scatter``: table entry m combines its updates, in order, into y[dst[m]] (int32 tables
    read from the weight image)."""
    def table(ref, count):
        return np.frombuffer(memory['weight_bytes'], np.int32, count, ref.offset)
    count = int(f['count'])
    dst, first = table(f['dst'], count), table(f['first'], count + 1)
    src = table(f['src'], int(first[-1]))
    (u, u0), (y, y0) = _at(memory, f['u']), _at(memory, f['y'])
    offsets = view_offsets(f['uv'], int(np.prod(f['uv']['shape'][:int(f['uv']['ndim'])])))
    combine = SCATTER_COMBINE[int(f['op'])]
    for m in range(count):
        acc = y[y0 + dst[m]]
        for k in range(first[m], first[m + 1]):
            acc = combine(acc, u[u0 + offsets[src[k]]])
        y[y0 + dst[m]] = acc


def run_launch(memory, launch):
    """Execute one launch on ``memory`` {'arena', 'weights': float32 element arrays}."""
    f = launch.fields
    if launch.kernel == 'unary':
        _copy(memory, f)
    elif launch.kernel == 'copy_i32':
        _copy_i32(memory, f)
    elif launch.kernel in ('from_arena_f32', 'from_arena_i32'):
        _io(memory, launch)
    elif launch.kernel == 'unary_vec8':
        assert f['op'] == 0 and int(f['act']['kind']) == 0, 'a copy'
        (src, s0), (dst, d0) = _at(memory, f['x']), _at(memory, f['y'])
        dst[d0:d0 + 8 * int(f['n8'])] = src[s0:s0 + 8 * int(f['n8'])]
    elif launch.kernel == 'scatter':
        _scatter(memory, f)
    elif launch.kernel == 'global_reduce':
        _reduce(memory, f)
    elif launch.kernel in rows_emulator.KERNELS:
        rows_emulator.KERNELS[launch.kernel](memory, f)
    elif launch.kernel in index_emulator.KERNELS:
        index_emulator.KERNELS[launch.kernel](memory, f)
    else:
        raise AssertionError(f'no emulation of {launch.kernel}')


def slot_index(slot) -> np.ndarray:
    """Offsets of a slot's logical elements in row-major order, in halves of the emulated
    arena (an int32 element: its first half, ``rows_emulator.int32_at``)."""
    halves = slot.itemsize // 2
    base = slot.ref.offset // 2 + halves * slot.channel_off
    if not slot.shape:
        return np.array([base])
    idx = np.indices(slot.shape).reshape(len(slot.shape), -1)
    return base + halves * sum(int(s) * idx[d] for d, s in enumerate(slot.strides))


def write_slot(memory, slot, value):
    """Store ``value`` in ``slot`` of the emulated arena (an int32 slot truncates, as
    ``put_int32``)."""
    at, flat = slot_index(slot), np.asarray(value, np.float64).reshape(-1)
    if slot.int32:
        put_int32(memory['arena'], 0, at // 2, flat)
    else:
        memory['arena'][at] = flat


def arena_memory(lowered) -> dict:
    """The emulated device memory of ``lowered``: the arena as float32 elements, all NaN (an
    element never written shows), the weight buffer as float32 elements and as bytes."""
    image = lowered.weight_image()
    return {'arena': np.full(lowered.plan.arena_bytes // 2 + 8, np.nan, np.float32),
            'weights': np.append(image, np.zeros(len(image) % 2, np.uint8))
            .view(np.float16).astype(np.float32), 'weight_bytes': image.tobytes()}


def emulate(graph, ops, feeds, arch=90) -> tuple:
    """(outputs, launches) of ``graph`` lowered for ``arch`` and run on the host: the nodes of
    ``ops`` by their emulated launches, the others by the numpy ops written through their
    output slots; the arena starts as NaN (an element never written shows)."""
    lowered = lower_graph(graph, arch=arch)
    memory = arena_memory(lowered)

    def read(name):
        slot = lowered.slots[name]
        return memory['arena'][slot_index(slot)].reshape(slot.shape)

    def write(name, value):
        write_slot(memory, lowered.slots[name], value)

    for name, x in feeds.items():
        write(name, x)
    for node in graph.nodes:
        if node.op in ops:
            for launch in (k for k in lowered.launches if k.node == node.name):
                run_launch(memory, launch)
            continue
        args = [read(n) if n in lowered.slots else graph.weights.get(n) if n else None
                for n in node.inputs]
        for name, value in zip(node.outputs, run_node(node, args)):
            write(name, value)
    return {n: read(n) for n in graph.outputs}, lowered.launches
