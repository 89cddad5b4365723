"""The CUDA lowering contract: a graph becomes kernel launches, a weight image and an FP16
arena plan, without a GPU.

``lower_graph(graph, arch, ...)`` is what ``CudaBackend.prepare`` runs before it allocates
anything, and what benches and tests call to check that a graph lowers (no device needed)::

    lowered = lower_graph(graph, arch=87, conv_path='auto', sm_count=8)
    lowered.launches       # [Launch], one kernel launch each, in graph order
    lowered.plan           # MemoryPlan of the arena (FP16; index values int32)
    lowered.slots          # {activation: Slot}: where each planned value lives
    lowered.weight_image() # the weight buffer's bytes (uint8), as the device gets them

A lowering function takes a ``LoweringContext`` and a node and returns its launches; which
function lowers which op is ``LOWERINGS``, derived from ``ops/traits.py`` (the ``cuda`` family
of each op). What a kernel cannot do raises ``UnsupportedOpError`` naming the node.
"""
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from tx2_infer_core.cuda import (layout, lower_axis, lower_conv, lower_conv_transpose,
                                 lower_int8, lower_logic, lower_movement, lower_nn, lower_norm,
                                 lower_ops, lower_pad, lower_recurrent, lower_resize,
                                 lower_sampling, lower_scatter)
from tx2_infer_core.cuda import lower_index, lower_topk
from tx2_infer_core.cuda.int32_values import Int32Values, int32_values
from tx2_infer_core.cuda.launch import Ref, Slot, row_major
from tx2_infer_core.cuda.lift_1d import lift_1d
from tx2_infer_core.cuda.lower_attention import lower_attention
from tx2_infer_core.cuda.lower_einsum import lower_einsum
from tx2_infer_core.cuda.lower_gather import lower_gather
from tx2_infer_core.cuda.lower_linear_norm import lower_linear_norm
from tx2_infer_core.cuda.pool_epilogue import fuse_pool_epilogue
from tx2_infer_core.cuda.squeeze_excite import fuse_squeeze_excite
from tx2_infer_core.errors import Tx2InferError, UnsupportedOpError
from tx2_infer_core.ops import traits
from tx2_infer_core.passes.rewrite_einsum import without_einsum
from tx2_infer_core.planner import ALIGNMENT, MemoryPlan

DEFAULT_SM_COUNT = 132  # an H100's; the backend passes its device's count
CONV_PATHS = ('auto', 'tc', 'simt', 'simt_fp32')  # simt_fp32: the FP32-FMA SIMT kernels
FAMILIES = {'conv': lower_conv.lower_conv, 'gemm': lower_conv.lower_gemm,
            'conv_transpose': lower_conv_transpose.lower_conv_transpose,
            'batchnorm': lower_conv.lower_batchnorm,
            'matmul': lower_nn.lower_matmul, 'linear_norm': lower_linear_norm,
            'pool': lower_nn.lower_pool,
            'softmax': lower_axis.lower_softmax, 'layernorm': lower_nn.lower_layernorm,
            'reduce': lower_nn.lower_reduce, 'resize': lower_resize.lower_resize,
            'pad': lower_pad.lower_pad, 'unary': lower_ops.lower_unary,
            'copy': lower_ops.lower_unary, 'binary': lower_ops.lower_binary,
            'pointwise': lower_ops.lower_pointwise,
            'transpose': lower_ops.lower_transpose, 'concat': lower_ops.lower_concat,
            'gather': lower_gather, 'topk': lower_topk.lower_topk,
            'gather_elements': lower_index.lower_gather_elements,
            'gather_nd': lower_index.lower_gather_nd,
            'split': lower_ops.lower_split, 'slice': lower_ops.lower_slice,
            'conv_int8': lower_int8.lower_conv_int8, 'quantize': lower_int8.lower_quantize,
            'dequantize': lower_int8.lower_dequantize, 'lstm': lower_recurrent.lower_lstm,
            'rnn': lower_recurrent.lower_rnn, 'gru': lower_recurrent.lower_gru,
            'attention': lower_attention, 'norm': lower_norm.lower_norm,
            'arg': lower_axis.lower_arg, 'scan': lower_axis.lower_scan,
            'logic': lower_logic.lower_logic, 'trilu': lower_logic.lower_trilu,
            'cast': lower_logic.lower_cast,
            'scatter_nd': lower_scatter.lower_scatter_nd,
            'scatter_elements': lower_scatter.lower_scatter_elements,
            'one_hot': lower_scatter.lower_one_hot,
            'expand': lower_movement.lower_expand, 'tile': lower_movement.lower_tile,
            'depth_to_space': lower_movement.lower_depth_to_space,
            'space_to_depth': lower_movement.lower_space_to_depth,
            'cast_like': lower_movement.lower_cast_like,
            'eye_like': lower_movement.lower_eye_like,
            'grid_sample': lower_sampling.lower_grid_sample,
            'affine_grid': lower_sampling.lower_affine_grid,
            'roi_align': lower_sampling.lower_roi_align, 'einsum': lower_einsum}
LOWERINGS = {op: FAMILIES[family] for op, family in traits.cuda_ops().items()}


class LoweringContext:
    """What a lowering function sees: the graph, the target, the slots of the planned values,
    and the weight buffer being built (constants are appended to it as they are lowered)."""

    def __init__(self, graph, arch: int, conv_path: str, sm_count: int, slots: dict,
                 int8_path: str = 'dp4a', int32: Int32Values = None):
        self.graph, self.arch, self.conv_path, self.sm_count = graph, arch, conv_path, sm_count
        self.int8_path = int8_path  # 'dp4a' or 'mma' (lower_int8.resolve_int8_path)
        self.int32 = int32 or Int32Values()  # which integer values are int32 (and why not)
        self.slots = dict(slots)
        self.weight_chunks, self.weight_bytes = [], 0
        self._workspaces = {}
        self._readers = None

    def readers(self, name) -> list:
        """The nodes reading value ``name``."""
        if self._readers is None:
            self._readers = self.graph.consumers()
        return self._readers.get(name, [])

    def slot(self, name) -> Slot:
        """The device slot of an activation or (as row-major FP16) a constant."""
        if name in self.slots:
            return self.slots[name]
        if name in self.graph.weights:
            self.slots[name] = self.const_slot(self.graph.weights[name].astype(np.float16))
            return self.slots[name]
        raise Tx2InferError(f"value '{name}' has no device slot (not planned, not a weight)")

    def const_slot(self, array) -> Slot:
        """A row-major slot in the weight buffer holding ``array``."""
        arr = np.asarray(array)
        return Slot(self.add_weight(arr), tuple(arr.shape), row_major(arr.shape))

    def int_slot(self, node, name) -> Slot:
        """The slot of constant ``name`` as row-major int32 (an operand of ``node`` beside
        int32 values); ``node`` is refused when a value passes int32's range."""
        array = self.const(name)
        if array.size and np.abs(array.astype(np.int64)).max() > np.iinfo(np.int32).max:
            self.unsupported(node, f"constant '{name}' holds values past int32's range")
        arr = np.ascontiguousarray(array, np.int32)
        return Slot(self.add_weight(arr), tuple(arr.shape), row_major(arr.shape), itemsize=4)

    def is_const(self, name) -> bool:
        """True when ``name`` is a constant of the graph."""
        return name in self.graph.weights

    def const(self, name) -> np.ndarray:
        """The value of constant ``name`` (refused when it is an activation)."""
        if name not in self.graph.weights:
            raise Tx2InferError(f"'{name}' must be a constant for the cuda backend")
        return np.asarray(self.graph.weights[name])

    def dtype_of(self, name) -> str:
        """The graph dtype of value ``name``."""
        return self.graph.values[name].dtype

    def add_weight(self, array, dtype=None) -> Ref:
        """Append a host array to the weight buffer; returns its future device address.
        With ``dtype`` the array (a constant's view, any strides: never changed afterwards)
        is kept as it is and stored as ``dtype`` in C order by ``Lowered.weight_image``,
        which casts every such weight straight into place, in parallel: one pass over the
        large conv and linear weights at load, not a cast, a copy and a copy."""
        ref = Ref('weights', self.weight_bytes)
        if dtype is None:
            data = np.ascontiguousarray(array).tobytes()
            self.weight_chunks.append((self.weight_bytes, data))
            nbytes = len(data)
        else:
            self.weight_chunks.append((self.weight_bytes, WeightCast(array, np.dtype(dtype))))
            nbytes = array.size * np.dtype(dtype).itemsize
        self.weight_bytes += -(-max(nbytes, 1) // ALIGNMENT) * ALIGNMENT
        return ref

    def workspace(self, name, nbytes) -> Ref:
        """Workspace ``name``: ``nbytes`` zeroed bytes of the weight buffer, made on first use
        and shared by every launch of this lowering that asks for it (launches run in
        order)."""
        if name not in self._workspaces:
            self._workspaces[name] = self.add_weight(np.zeros(nbytes, np.uint8))
        return self._workspaces[name]

    def conv_workspace(self) -> Ref:
        """The split-K workspace shared by every convolution of this lowering."""
        return self.workspace('conv', lower_conv.WORKSPACE_BYTES)

    def reduce_workspace(self) -> Ref:
        """The split global reductions' ticket counters (zero between launches: the last
        block of each puts its counter back) and FP32 totals (``lower_nn``)."""
        return self.workspace('reduce', lower_nn.REDUCE_WORKSPACE_BYTES)

    def unsupported(self, node, detail):
        """Refuse ``node``: raises ``UnsupportedOpError`` naming it and ``detail``."""
        raise UnsupportedOpError(node.op, node.name, LOWERINGS, detail)


WEIGHT_THREADS = min(8, os.cpu_count() or 1)  # threads writing the weight image


@dataclass(frozen=True)
class WeightCast:
    """A weight stored as ``dtype`` in C order, cast when the weight image is made."""

    array: np.ndarray
    dtype: np.dtype

    def write(self, host, offset) -> None:
        """Cast ``array`` into ``host`` (uint8) at ``offset`` (aligned to the dtype)."""
        size = self.array.size * self.dtype.itemsize
        out = host[offset:offset + size].view(self.dtype).reshape(self.array.shape)
        np.copyto(out, self.array, casting='unsafe')


def _write_chunk(host, offset, data) -> None:
    if isinstance(data, WeightCast):
        data.write(host, offset)
    else:
        host[offset:offset + len(data)] = np.frombuffer(data, np.uint8)


@dataclass
class Lowered:
    """The result of ``lower_graph``: everything the device needs, nothing allocated yet."""

    launches: list
    plan: MemoryPlan
    slots: dict
    weight_chunks: list
    weight_bytes: int
    arch: int
    conv_path: str
    int8_path: str = 'dp4a'

    def weight_image(self) -> np.ndarray:
        """The weight buffer as host bytes (at least one byte); the chunks are written on
        ``WEIGHT_THREADS`` threads (numpy casts and copies without the GIL)."""
        host = np.zeros(max(self.weight_bytes, 1), np.uint8)
        with ThreadPoolExecutor(WEIGHT_THREADS) as pool:
            list(pool.map(lambda chunk: _write_chunk(host, *chunk), self.weight_chunks))
        return host

    @property
    def modules(self) -> set:
        """The kernel modules the launches use."""
        return {k.module for k in self.launches}


def resolve_conv_path(arch: int, conv_path: str = 'auto') -> str:
    """``conv_path`` on ``arch``: 'auto' is 'tc' (tensor cores) from sm_70, else 'simt'."""
    if conv_path not in CONV_PATHS:
        raise Tx2InferError(f"conv_path must be one of {', '.join(CONV_PATHS)}, not "
                            f"'{conv_path}'")
    if conv_path == 'auto':
        return 'tc' if arch >= lower_conv.TC_MIN_ARCH else 'simt'
    return conv_path


def lower_graph(graph, arch: int, conv_path: str = 'auto', sm_count: int = DEFAULT_SM_COUNT,
                place_channels: bool = True, alignment: int = ALIGNMENT,
                int8_path: str = 'auto') -> Lowered:
    """Lower every node of ``graph`` for a GPU of compute capability ``arch`` (e.g. 62, 87,
    90) with ``sm_count`` multiprocessors; no GPU is touched. ``place_channels``: channel
    Concat/Split by placement (False: copies). ``int8_path``: 'auto', 'dp4a' or 'mma' for the
    int8 convolutions (``lower_int8``). Raises ``UnsupportedOpError`` for the first node the
    kernels cannot compute."""
    path = resolve_conv_path(arch, conv_path)
    i8_path = lower_int8.resolve_int8_path(arch, int8_path)
    graph, _ = without_einsum(graph)  # Einsum as MatMul, Transpose, Reshape, Mul, ReduceSum
    graph, _ = lift_1d(graph)  # 1-D convs and pools as 2-D ones with H = 1 (4-D slots added)
    graph, _ = fuse_pool_epilogue(graph, arch, path, sm_count)  # 2x2 MaxPools in conv epilogues
    graph, _ = fuse_squeeze_excite(graph)  # pool + two 1x1 products: one launch
    int32 = int32_values(graph)  # the index values stored int32, not FP16
    plan, slots = layout.plan_arena(graph, alignment, place_channels, int32.values)
    ctx = LoweringContext(graph, arch, path, sm_count, slots, i8_path, int32)
    launches = []
    for node in graph.nodes:
        fn = LOWERINGS.get(node.op)
        if fn is None:
            raise UnsupportedOpError(node.op, node.name, LOWERINGS)
        launches += fn(ctx, node)
    launches = lower_conv.with_act_masks(launches)
    return Lowered(launches, plan, slots, ctx.weight_chunks, ctx.weight_bytes, arch, path,
                   i8_path)
