"""The CUDA backend: FP16 NHWC activations in one device arena, weights in one device buffer,
pinned host staging, every per-frame launch captured once into a CUDA graph and replayed.

``prepare`` does all allocation (counted by ``PooledAllocator``); ``run`` copies the inputs into
pinned memory, launches the graph and converts the outputs: no device allocation per frame.
"""
import numpy as np

from tx2_infer_core.backends.base import Backend
from tx2_infer_core.cuda import (layout, lower_conv, lower_nn, lower_ops, lower_pad,
                                 lower_resize, pipeline)
from tx2_infer_core.cuda.launch import Ref, Slot, row_major
from tx2_infer_core.errors import Tx2InferError, UnsupportedOpError

WEIGHT_ALIGN = 256
PIPELINE_MODULES = ('preprocess', 'yolo')  # kernels of the GPU frame pipeline


def _lowerings():
    table = {'Conv': lower_conv.lower_conv, 'FusedConv': lower_conv.lower_conv,
             'Gemm': lower_conv.lower_gemm, 'MatMul': lower_nn.lower_matmul,
             'Transpose': lower_ops.lower_transpose, 'Concat': lower_ops.lower_concat,
             'Split': lower_ops.lower_split, 'Slice': lower_ops.lower_slice,
             'Pad': lower_pad.lower_pad, 'Softmax': lower_nn.lower_softmax,
             'LogSoftmax': lower_nn.lower_softmax, 'LayerNormalization': lower_nn.lower_layernorm,
             'Resize': lower_resize.lower_resize, 'Upsample': lower_resize.lower_resize,
             'ReduceMean': lower_nn.lower_reduce_mean}
    for op in ('MaxPool', 'AveragePool', 'GlobalAveragePool', 'GlobalMaxPool'):
        table[op] = lower_nn.lower_pool
    for op in lower_ops.COPY_OPS + lower_ops.ACT_OPS + tuple(lower_ops.params.UNARY):
        table[op] = lower_ops.lower_unary
    for op in lower_ops.params.BINARY:
        table[op] = lower_ops.lower_binary
    return table


LOWERINGS = _lowerings()


class CudaBackend(Backend):
    """Runs a graph with ``kernels/*.cu`` on one GPU.

    ``conv_path``: 'auto' (tensor cores from sm_70, else SIMT), 'tc' or 'simt' (forces the
    half2 SIMT path, as on a Jetson TX2). ``use_graph``: replay a captured CUDA graph per frame.
    ``place_channels``: channel Concat/Split by placement (False: copies, for comparison).
    """

    name = 'cuda'

    def __init__(self, precision='fp16', conv_path='auto', device=0, use_graph=True,
                 place_channels=True):
        if precision not in ('fp16', 'fp32'):
            raise Tx2InferError(f"cuda backend precision must be fp16 (fp32 requests run in "
                                f"fp16 with fp32 accumulation), not '{precision}'")
        if conv_path not in ('auto', 'tc', 'simt'):
            raise Tx2InferError(f"conv_path must be 'auto', 'tc' or 'simt', not '{conv_path}'")
        self.precision, self.device, self.use_graph = precision, device, use_graph
        self.place_channels = place_channels
        self.requested_path = conv_path
        self.ctx = self.pool = self.graph_exec = self.frame_pipeline = None

    # -- the lowering context used by tx2_infer_core.cuda.lower_* --------------------------
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

    def is_const(self, name) -> bool:
        return name in self.graph.weights

    def const(self, name) -> np.ndarray:
        if name not in self.graph.weights:
            raise Tx2InferError(f"'{name}' must be a constant for the cuda backend")
        return np.asarray(self.graph.weights[name])

    def dtype_of(self, name) -> str:
        return self.graph.values[name].dtype

    def add_weight(self, array) -> Ref:
        """Append a host array to the weight buffer; returns its future device address."""
        data = np.ascontiguousarray(array).tobytes()
        ref = Ref('weights', self._weight_bytes)
        self._weight_chunks.append((self._weight_bytes, data))
        self._weight_bytes += -(-max(len(data), 1) // WEIGHT_ALIGN) * WEIGHT_ALIGN
        return ref

    def unsupported(self, node, detail):
        raise UnsupportedOpError(node.op, node.name, LOWERINGS, detail)

    # -- Backend interface ----------------------------------------------------------------
    def prepare(self, graph, memory_plan=None) -> None:
        """Plan the FP16 arena, convert weights, allocate everything, capture the graph.

        ``memory_plan`` describes the graph's own (FP32) arena; the FP16 NHWC arena is planned
        again from the same graph (``layout.plan_arena``: channel Concat inputs and Split
        outputs are NHWC views where every kernel touching them reads and writes strided).
        """
        from tx2_infer_core.cuda.runtime import DeviceContext, PooledAllocator
        self.graph = graph
        self.ctx = DeviceContext(self.device)
        try:
            self.arch = self.ctx.arch
            self.conv_path = ('tc' if self.arch >= lower_conv.TC_MIN_ARCH else 'simt') \
                if self.requested_path == 'auto' else self.requested_path
            alignment = memory_plan.alignment if memory_plan is not None else 256
            self.plan, self.slots = layout.plan_arena(graph, alignment, self.place_channels)
            self._weight_chunks, self._weight_bytes = [], 0
            self.launches = self._lower(graph)
            self.pool = PooledAllocator()
            self._allocate()
            self._bind()
            self._capture()
            if pipeline.supports(graph):
                self.frame_pipeline = pipeline.FramePipeline(self)
        finally:
            self.ctx.drv.Context.pop()

    def _lower(self, graph):
        launches = []
        for node in graph.nodes:
            fn = LOWERINGS.get(node.op)
            if fn is None:
                raise UnsupportedOpError(node.op, node.name, LOWERINGS)
            launches += fn(self, node)
        return launches

    def _allocate(self):
        drv = self.ctx.drv
        self.arena = self.pool.alloc(max(self.plan.arena_bytes, 1))
        self.weights = self.pool.alloc(max(self._weight_bytes, 1))
        host = np.zeros(max(self._weight_bytes, 1), np.uint8)
        for off, data in self._weight_chunks:
            host[off:off + len(data)] = np.frombuffer(data, np.uint8)
        drv.memcpy_htod(self.weights, host)
        self._weight_chunks = []
        self.stream = drv.Stream()
        self.host_in = {n: self._pinned(n) for n in self.graph.inputs}
        self.host_out = {n: self._pinned(n) for n in self.graph.outputs}

    def _pinned(self, name):
        s = self.slots[name]
        shape = (s.shape[0], s.shape[2], s.shape[3], s.shape[1]) if s.nhwc else s.shape
        return self.ctx.drv.pagelocked_empty(shape, np.float16)

    def _bind(self):
        modules = {k.module for k in self.launches}
        if pipeline.supports(self.graph):
            modules |= set(PIPELINE_MODULES)
        self.ctx.preload(modules)  # cold cache: every module compiles at once
        bases = {'arena': int(self.arena), 'weights': int(self.weights)}
        self.bound = [(self.ctx.function(k.module, k.kernel), k.bind(bases), k.grid, k.block)
                      for k in self.launches]

    def _enqueue(self):
        drv, base = self.ctx.drv, int(self.arena)
        for name, host in self.host_in.items():
            drv.memcpy_htod_async(base + self.slots[name].ref.offset, host, self.stream)
        for fn, rec, grid, block in self.bound:
            fn(rec, grid=grid, block=block, stream=self.stream)
        for name, host in self.host_out.items():
            drv.memcpy_dtoh_async(host, base + self.slots[name].ref.offset, self.stream)

    def _capture(self):
        self._enqueue()  # one eager run: loads modules, surfaces launch errors
        self.stream.synchronize()
        if self.use_graph:
            from tx2_infer_core.cuda.runtime import CudaGraph
            self.graph_exec = CudaGraph()
            self.graph_exec.capture(self.stream, self._enqueue)

    def run(self, feeds: dict) -> dict:
        """One inference: FP32 NCHW feeds in, FP32 outputs (graph layouts) out."""
        with self.ctx:
            for name, host in self.host_in.items():
                x = np.asarray(feeds[name])
                np.copyto(host, x.transpose(0, 2, 3, 1) if self.slots[name].nhwc else x,
                          casting='unsafe')
            if self.graph_exec is not None:
                self.graph_exec.launch()
            else:
                self._enqueue()
            self.stream.synchronize()
        out = {}
        for name, host in self.host_out.items():
            arr = host.transpose(0, 3, 1, 2) if self.slots[name].nhwc else host
            out[name] = arr.astype(np.float32)
        return out

    @property
    def device_allocations(self) -> int:
        """Real device allocations made so far (constant after ``prepare``)."""
        return self.pool.device_allocations if self.pool else 0

    def close(self) -> None:
        """Free the graph, the device buffers and the context."""
        if self.ctx is None:
            return
        with self.ctx:
            if self.graph_exec is not None:
                self.graph_exec.close()
            if self.frame_pipeline is not None:
                self.frame_pipeline.close_graphs()
            if self.pool is not None:
                self.pool.release()
        self.ctx.close()
        self.ctx = self.pool = self.graph_exec = self.frame_pipeline = None
