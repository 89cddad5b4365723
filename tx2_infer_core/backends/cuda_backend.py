"""The CUDA backend: FP16 NHWC activations in one device arena, weights in one device buffer,
pinned host staging, every per-frame launch captured once into a CUDA graph and replayed.

``prepare`` does all allocation (counted by ``PooledAllocator``); ``run`` copies the inputs into
pinned FP32 buffers (a plain copy: the NCHW -> NHWC FP16 conversion is a kernel of the captured
graph, as is the conversion of the outputs back to FP32 in the graph's layout), replays the graph
and returns the outputs: no device allocation and no large host array made per frame beyond the
returned copies (``reuse_outputs=True``: not even those).
"""
import os

import numpy as np

from tx2_infer_core.backends.base import Backend, fill_outputs
from tx2_infer_core.cuda import pdl, pipeline
from tx2_infer_core.cuda.launch import Ref
from tx2_infer_core.cuda.lower_ops import io_launch
from tx2_infer_core.cuda.lower_int8 import INT8_PATHS
from tx2_infer_core.cuda.lowering import CONV_PATHS, lower_graph
from tx2_infer_core.errors import Tx2InferError
from tx2_infer_core.planner import ALIGNMENT

PIPELINE_MODULES = ('preprocess', 'yolo')  # kernels of the GPU frame pipeline


class CudaBackend(Backend):
    """Runs a graph with ``kernels/*.cu`` on one GPU.

    ``conv_path``: 'auto' (tensor cores from sm_70, else SIMT), 'tc', 'simt' (forces the
    half2 SIMT path, as on a Jetson TX2) or 'simt_fp32' (its FP32-FMA kernels).
    ``use_graph``: replay a captured CUDA graph per frame.
    ``place_channels``: channel Concat/Split by placement (False: copies, for comparison).
    ``reuse_outputs``: ``run`` returns the same pinned arrays every call, overwritten by the
    next call and invalid after ``close`` (the caller copies what it keeps); the default
    returns fresh copies (safe). ``int8_path``: the int8 convolutions' kernels, 'auto'
    (integer tensor cores from sm_80, else dp4a), 'dp4a' (the TX2 path, on any GPU) or 'mma'.
    ``pdl``: programmatic dependent launches on sm_90+ (``cuda/pdl.py``; None: when the
    environment variable TX2_INFER_PDL is 1).
    ``context``: a callable ``context(device)`` returning the ``runtime.DeviceContext`` to run
    in (default: the device's primary context; ``cuda/green.py``: an SM slice).
    """

    name = 'cuda'

    def __init__(self, precision='fp16', conv_path='auto', device=0, use_graph=True,
                 place_channels=True, reuse_outputs=False, int8_path='auto', context=None,
                 pdl=None):
        if precision not in ('fp16', 'fp32'):
            raise Tx2InferError(f"cuda backend precision must be fp16 (fp32 requests run in "
                                f"fp16 with fp32 accumulation), not '{precision}'")
        if conv_path not in CONV_PATHS:
            raise Tx2InferError(f"conv_path must be one of {', '.join(CONV_PATHS)}, not "
                                f"'{conv_path}'")
        # What run() computes in, whatever was asked (Backend.precision): fp16, fp32 accumulation.
        self.precision, self.device, self.use_graph = 'fp16', device, use_graph
        self.place_channels, self.reuse_outputs = place_channels, reuse_outputs
        self.requested_path = conv_path
        if int8_path not in INT8_PATHS:
            raise Tx2InferError(f"int8_path must be one of {', '.join(INT8_PATHS)}, not "
                                f"'{int8_path}'")
        self.requested_int8_path = int8_path
        self.make_context = context
        self.use_pdl = os.environ.get('TX2_INFER_PDL') == '1' if pdl is None else bool(pdl)
        self.ctx = self.pool = self.graph_exec = self.frame_pipeline = self.pdl_driver = None

    # -- Backend interface ----------------------------------------------------------------
    def prepare(self, graph, memory_plan=None) -> None:
        """Lower the graph (``cuda/lowering.py``), allocate everything, capture the graph.

        ``memory_plan`` describes the graph's own (FP32) arena; the FP16 NHWC arena is planned
        again from the same graph by ``lower_graph`` (channel Concat inputs and Split outputs
        are NHWC views where every kernel touching them reads and writes strided).
        """
        from tx2_infer_core.cuda.runtime import DeviceContext, PooledAllocator
        self.graph = graph
        self.ctx = (self.make_context or DeviceContext)(self.device)
        try:
            alignment = memory_plan.alignment if memory_plan is not None else ALIGNMENT
            lowered = lower_graph(graph, self.ctx.arch, self.requested_path,
                                  int(self.ctx.sm_count),
                                  self.place_channels, alignment, self.requested_int8_path)
            self.arch, self.conv_path = lowered.arch, lowered.conv_path
            self.int8_path = lowered.int8_path
            self.plan, self.slots, self.launches = lowered.plan, lowered.slots, lowered.launches
            self.pool = PooledAllocator()
            self._allocate(lowered.weight_image())
            self._bind()
            self._capture()
            if pipeline.supports(graph):
                self.frame_pipeline = pipeline.FramePipeline(self)
        finally:
            self.ctx.drv.Context.pop()

    def _allocate(self, weight_image):
        """Two device allocations: the arena (with the I/O staging area after the planned
        activations) and the weights."""
        drv = self.ctx.drv
        io_bytes = self._plan_io()
        arena_end = -(-self.plan.arena_bytes // ALIGNMENT) * ALIGNMENT
        self.arena = self.pool.alloc(max(arena_end + io_bytes, 1))
        self.io = int(self.arena) + arena_end
        self.weights = self.pool.alloc(weight_image.nbytes)
        drv.memcpy_htod(self.weights, weight_image)
        self.stream = drv.Stream()
        self.host_in = {n: self._pinned(n) for n in self.graph.inputs}
        self.host_out = {n: self._pinned(n) for n in self.graph.outputs}  # FP16 arena copies

    def _plan_io(self) -> int:
        """Pinned FP32 host arrays in the graph's shapes, their offsets in the device staging
        area (returns its size) and the conversion launches between it and the arena."""
        drv, io, off = self.ctx.drv, [], 0
        for name in list(self.graph.inputs) + list(self.graph.outputs):
            host = drv.pagelocked_empty(self.slots[name].shape, np.float32)
            io.append((name, host, off))
            off += -(-host.nbytes // ALIGNMENT) * ALIGNMENT
        n_in = len(self.graph.inputs)
        self.stage_in = {name: (host, off) for name, host, off in io[:n_in]}
        self.stage_out = {name: (host, off) for name, host, off in io[n_in:]}
        self.io_launches = (
            [io_launch('to_arena_f16', Ref('io', off), self.slots[name].ref, self.slots[name])
             for name, (_, off) in self.stage_in.items()],
            [io_launch('from_arena_f32', self.slots[name].ref, Ref('io', off), self.slots[name])
             for name, (_, off) in self.stage_out.items()])
        return off

    def _pinned(self, name):
        s = self.slots[name]
        shape = (s.shape[0], s.shape[2], s.shape[3], s.shape[1]) if s.nhwc else s.shape
        return self.ctx.drv.pagelocked_empty(shape, np.float16)

    def _bind(self):
        modules = {k.module for k in self.launches}
        modules |= {k.module for launches in self.io_launches for k in launches}
        if pipeline.supports(self.graph):
            modules |= set(PIPELINE_MODULES)
        self.ctx.preload(modules)  # cold cache: every module compiles at once
        bases = {'arena': int(self.arena), 'weights': int(self.weights), 'io': int(self.io)}
        self.bound = [(self._kernel(k), k.bind(bases), k.grid, k.block) for k in self.launches]
        self.io_bound = [[(self.ctx.function(k.module, k.kernel), k.bind(bases), k.grid,
                           k.block) for k in launches] for launches in self.io_launches]

    def _kernel(self, launch):
        """The callable that launches ``launch``'s kernel: pycuda's, or a programmatic launch
        (``cuda/pdl.py``) where enabled and the kernel waits for its predecessor."""
        if not (self.use_pdl and pdl.wants_pdl(launch.kernel, self.ctx.arch)):
            return self.ctx.function(launch.module, launch.kernel)
        from tx2_infer_core.cuda import compile as cc
        if self.pdl_driver is None:
            self.pdl_driver = pdl.Driver()
        cubin = cc.compile_cached(launch.module, self.ctx.arch)
        return pdl.PdlKernel(self.pdl_driver,
                             self.pdl_driver.function(launch.module, launch.kernel, cubin))

    def _enqueue(self):
        drv, io = self.ctx.drv, int(self.io)
        for host, off in self.stage_in.values():
            drv.memcpy_htod_async(io + off, host, self.stream)
        to_arena, from_arena = self.io_bound
        for fn, rec, grid, block in to_arena + self.bound + from_arena:
            fn(rec, grid=grid, block=block, stream=self.stream)
        for host, off in self.stage_out.values():
            drv.memcpy_dtoh_async(host, io + off, self.stream)

    def _capture(self):
        self._enqueue()  # one eager run: loads modules, surfaces launch errors
        self.stream.synchronize()
        if self.use_graph:
            from tx2_infer_core.cuda.runtime import CudaGraph
            self.graph_exec = CudaGraph()
            self.graph_exec.capture(self.stream, self._enqueue)

    def input_buffers(self) -> dict:
        """The pinned FP32 arrays the device copies each input from: fill them in place and
        feed them back to ``run`` to skip the input copy."""
        return {name: host for name, (host, _) in self.stage_in.items()}

    def run(self, feeds: dict, out=None) -> dict:
        """One inference: FP32 feeds in the graph's layouts (NCHW) in, FP32 outputs in the
        graph's layouts out: into ``out`` when given, else fresh copies, or
        (``reuse_outputs``) the backend's own pinned arrays, overwritten by the next call."""
        with self.ctx:
            for name, (host, _) in self.stage_in.items():
                if feeds[name] is not host:
                    np.copyto(host, feeds[name], casting='unsafe')
            if self.graph_exec is not None:
                self.graph_exec.launch()
            else:
                self._enqueue()
            self.stream.synchronize()
        if out is not None:
            return fill_outputs({name: host for name, (host, _) in self.stage_out.items()},
                                out)
        if self.reuse_outputs:
            return {name: host for name, (host, _) in self.stage_out.items()}
        return {name: host.copy() for name, (host, _) in self.stage_out.items()}

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
            if self.pdl_driver is not None:
                self.pdl_driver.close()
        self.ctx.close()
        self.ctx = self.pool = self.graph_exec = self.frame_pipeline = self.pdl_driver = None
