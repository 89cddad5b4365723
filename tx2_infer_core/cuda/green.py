"""A slice of the GPU's SMs (a CUDA green context) that pycuda work runs in: the TX2 path
measured on a TX2-sized part of a big GPU (``bench/bench_tx2_slice.py``).

    with green_context(8) as ctx:            # a SliceContext, current in the block
        ctx.sm_count                         # the SMs it got (8 on an H200: its smallest)
        fn = ctx.function('probe', 'sm_ids')  # pycuda modules, memory, streams, launches...

    green = GreenContext(8)                  # or one slice for several engines:
    backend = CudaBackend(conv_path='simt', context=functools.partial(SliceContext, green))

How (CUDA 12.4+ driver, cuda-bindings): ``GreenContext`` splits the device's SM resource
(``cuDeviceGetDevResource``, ``cuDevSmResourceSplitByCount``: one group of at least the
requested count, rounded up to what the GPU allows), makes a descriptor
(``cuDevResourceGenerateDesc``) and a green context with its own default stream
(``cuGreenCtxCreate``), and its ``CUcontext`` (``cuCtxFromGreenCtx``). That context shares the
primary context's memory; kernels launched while it is current (on streams made while it is
current) run only on its SMs.

pycuda keeps its own context stack and leaves only its top context on the driver's stack: its
``push`` pops the driver's top (if its own stack is not empty) and pushes its context, its
``pop`` pops the driver's top and pushes its new top, and every pycuda object records pycuda's
current context. ``SliceContext`` (a ``runtime.DeviceContext``) therefore keeps the primary
context on pycuda's stack, so pycuda's bookkeeping is unchanged, and after each pycuda push
swaps the driver's top for the slice (``cuCtxPopCurrent``, ``cuCtxPushCurrent``). pycuda's own
pops (``CudaBackend.prepare``'s, ``__exit__``'s) then pop the slice; where one makes the
primary context current again (an outer block), ``__exit__`` swaps the slice back in.
Everything pycuda does while a SliceContext is entered (module loads, allocations, streams,
launches, graphs) goes to the slice. Do not enter another pycuda context of the device inside
it.

Nothing here creates a context at import time; pycuda and cuda-bindings are imported lazily.
"""
from contextlib import contextmanager

import numpy as np

from tx2_infer_core.cuda.runtime import DeviceContext, checked, driver_api
from tx2_infer_core.errors import Tx2InferError


class GreenContext:
    """A green context of at least ``sm_count`` SMs of CUDA device ``device``; creating it
    makes nothing current. ``sm_count`` is what it got, ``device_sm_count`` what the device
    has; ``context`` is its ``CUcontext``. ``close()`` destroys it."""

    def __init__(self, sm_count: int, device: int = 0):
        cu = self.cu = driver_api()
        checked(cu.cuInit(0), 'cuInit')
        dev = checked(cu.cuDeviceGet(device), 'cuDeviceGet')
        whole = checked(cu.cuDeviceGetDevResource(
            dev, cu.CUdevResourceType.CU_DEV_RESOURCE_TYPE_SM), 'cuDeviceGetDevResource')
        self.device_sm_count = int(whole.sm.smCount)
        groups = checked(cu.cuDevSmResourceSplitByCount(1, whole, 0, int(sm_count)),
                         'cuDevSmResourceSplitByCount')
        self.sm_count = int(groups[0].sm.smCount) if groups else 0
        if self.sm_count < sm_count:
            raise Tx2InferError(f'device {device} ({self.device_sm_count} SMs) gave a slice of '
                                f'{self.sm_count} SMs, fewer than the {sm_count} asked for')
        desc = checked(cu.cuDevResourceGenerateDesc([groups[0]], 1),
                       'cuDevResourceGenerateDesc')
        flags = cu.CUgreenCtxCreate_flags.CU_GREEN_CTX_DEFAULT_STREAM
        self.green = checked(cu.cuGreenCtxCreate(desc, dev, flags), 'cuGreenCtxCreate')
        self.context = checked(cu.cuCtxFromGreenCtx(self.green), 'cuCtxFromGreenCtx')

    def close(self) -> None:
        """Destroy the green context (nothing made in it may be used afterwards)."""
        if self.green is not None:
            checked(self.cu.cuGreenCtxDestroy(self.green), 'cuGreenCtxDestroy')
        self.green = self.context = None


class SliceContext(DeviceContext):
    """A ``DeviceContext`` whose work runs on the SMs of ``green`` (a ``GreenContext``);
    current after construction, as a DeviceContext is. ``sm_count`` is the slice's."""

    def __init__(self, green: GreenContext, device: int = 0):
        super().__init__(device)
        self.green, self.sm_count = green, green.sm_count
        self._primary = int(checked(green.cu.cuCtxGetCurrent(), 'cuCtxGetCurrent'))
        self._swap_in()

    def _swap_in(self) -> None:
        """Replace the primary context pycuda left on top of the driver's stack by the
        slice."""
        checked(self.green.cu.cuCtxPopCurrent(), 'cuCtxPopCurrent')
        checked(self.green.cu.cuCtxPushCurrent(self.green.context), 'cuCtxPushCurrent')

    def __enter__(self):
        self.ctx.push()
        self._swap_in()
        return self

    def __exit__(self, *exc):
        self.drv.Context.pop()
        # pycuda made its new top current again: the primary context of an outer block in the
        # slice (entered, or this context's construction), which gets the slice back
        if self.drv.Context.get_current() is not None:
            current = checked(self.green.cu.cuCtxGetCurrent(), 'cuCtxGetCurrent')
            if int(current) == self._primary:
                self._swap_in()

    def close(self):
        """Unload the kernel modules in the slice they were loaded in, then release the
        primary context (the caller has popped this context)."""
        with self:
            self._modules.clear()
        super().close()


@contextmanager
def green_context(sm_count: int, device: int = 0):
    """A ``SliceContext`` on a new green context of at least ``sm_count`` SMs, current inside
    the block; both are released at its end."""
    green = GreenContext(sm_count, device)
    try:
        ctx = SliceContext(green, device)
        try:
            yield ctx
        finally:
            ctx.drv.Context.pop()
            ctx.close()
    finally:
        green.close()


def distinct_sms(ctx, ctas: int, spin: int = 20000) -> int:
    """How many different SMs ``ctas`` CTAs of ``kernels/probe.cu`` ``sm_ids`` ran on, launched
    in ``ctx`` (a current DeviceContext): at most its ``sm_count`` in a slice."""
    drv = ctx.drv
    out = drv.mem_alloc(4 * ctas)
    try:
        probe = ctx.function('probe', 'sm_ids')
        probe(out, np.int64(spin), grid=(ctas, 1, 1), block=(128, 1, 1))
        ids = np.empty(ctas, np.uint32)
        drv.memcpy_dtoh(ids, out)
    finally:
        out.free()
    return int(np.unique(ids).size)


def sm_clock_hz(ctx, cycles: int = 20_000_000) -> float:
    """The SM clock (Hz) while ``kernels/probe.cu`` ``sm_clock`` busy-waits ``cycles`` cycles
    in ``ctx`` (a current DeviceContext): cycles counted against the nanosecond timer."""
    drv = ctx.drv
    out = drv.mem_alloc(16)
    try:
        probe = ctx.function('probe', 'sm_clock')
        probe(out, np.int64(cycles), grid=(1, 1, 1), block=(1, 1, 1))
        counts = np.empty(2, np.uint64)
        drv.memcpy_dtoh(counts, out)
    finally:
        out.free()
    return float(counts[0]) / max(float(counts[1]), 1.0) * 1e9
