"""The device side: context, kernel modules, a counting pooled allocator and CUDA graphs.

Everything imports pycuda lazily, inside the functions, so importing this module is free.
"""
import threading

from tx2_infer_core.cuda import compile as cc
from tx2_infer_core.planner import ALIGNMENT


class EarlyContext:
    """``device``'s primary context made in a thread while the caller does CPU work (a plan
    load reads, checks and lowers its file meanwhile: making a context takes a good part of a
    boot's load). The thread retains the context and holds it until ``release()`` (call it once
    a DeviceContext has retained the context too, or when the load fails); it then releases it
    itself: pycuda releases a context in the thread that retained it. Without pycuda or the
    GPU the thread just ends, and DeviceContext reports the problem."""

    def __init__(self, device: int = 0):
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._hold, args=(device,),
                                        name='tx2-cuda-context', daemon=True)
        self._thread.start()

    def _hold(self, device):
        try:
            import pycuda.driver as drv
            drv.init()
            ctx = drv.Device(device).retain_primary_context()
        except Exception:  # noqa: BLE001 (no pycuda, no such GPU: DeviceContext says why)
            return
        self._release.wait()
        ctx.detach()

    def release(self) -> None:
        """Let the thread release its hold (the context lives on while others retain it)."""
        self._release.set()
        self._thread.join()


class DeviceContext:
    """The device's primary context, pushed while in use. ``close()`` releases it.
    ``sm_count``: the multiprocessors its work may use (``cuda/green.py``: fewer)."""

    def __init__(self, device: int = 0):
        import pycuda.driver as drv
        drv.init()
        if drv.Device.count() <= device:
            raise RuntimeError(f'CUDA device {device} not found ({drv.Device.count()} present)')
        self.drv = drv
        self.device = drv.Device(device)
        self.ctx = self.device.retain_primary_context()
        self.ctx.push()
        major, minor = self.device.compute_capability()
        self.arch = major * 10 + minor
        self.name = self.device.name()
        self.sm_count = self.device.get_attribute(drv.device_attribute.MULTIPROCESSOR_COUNT)
        self._modules = {}

    def __enter__(self):
        self.ctx.push()
        return self

    def __exit__(self, *exc):
        self.drv.Context.pop()

    def function(self, module: str, kernel: str):
        """Kernel ``kernel`` of ``kernels/<module>.cu``, compiled (disk-cached) for this GPU."""
        if module not in self._modules:
            self._modules[module] = self.drv.module_from_buffer(cc.compile_cached(module,
                                                                                  self.arch))
        return self._modules[module].get_function(kernel)

    def preload(self, modules) -> None:
        """Compile the kernel modules not loaded yet, in parallel (``compile_all``), and load
        them."""
        todo = [m for m in set(modules) if m not in self._modules]
        for name, cubin in cc.compile_all(todo, self.arch).items():
            self._modules[name] = self.drv.module_from_buffer(cubin)

    def close(self):
        """Release the primary context (the caller has popped it)."""
        self._modules.clear()
        self.ctx.detach()


class PooledAllocator:
    """Device memory by ``ALIGNMENT``-rounded size; freed blocks are reused, never returned early.

    ``device_allocations`` counts the real ``cuMemAlloc`` calls: a steady frame loop must
    leave it unchanged.
    """

    def __init__(self):
        import pycuda.driver as drv
        self.drv = drv
        self.device_allocations = 0
        self.device_bytes = 0
        self._free = {}
        self._live = []

    def alloc(self, nbytes: int):
        """A device allocation of at least ``nbytes`` (a pycuda DeviceAllocation)."""
        size = max(ALIGNMENT, -(-int(nbytes) // ALIGNMENT) * ALIGNMENT)
        spare = self._free.get(size)
        if spare:
            block = spare.pop()
        else:
            block = self.drv.mem_alloc(size)
            self.device_allocations += 1
            self.device_bytes += size
        self._live.append((size, block))
        return block

    def free(self, block) -> None:
        """Give ``block`` back to the pool for reuse."""
        for i, (size, live) in enumerate(self._live):
            if live is block:
                del self._live[i]
                self._free.setdefault(size, []).append(block)
                return
        raise ValueError('block was not allocated by this pool')

    def release(self) -> None:
        """Free every block (live or pooled) back to the driver."""
        for _, block in self._live:
            block.free()
        for blocks in self._free.values():
            for block in blocks:
                block.free()
        self._live, self._free = [], {}


def driver_api():
    """The CUDA driver API module of cuda-python (``cuda.bindings.driver``)."""
    try:
        from cuda.bindings import driver
    except ImportError:  # cuda-python before 12.6
        from cuda import cuda as driver
    return driver


def checked(result, what):
    """The value of a cuda-python driver call's ``(error, value)`` result; raises
    ``RuntimeError`` naming ``what`` when the call failed."""
    err = result[0] if isinstance(result, tuple) else result
    if int(err) != 0:
        raise RuntimeError(f'{what} failed: CUDA error {int(err)} ({err})')
    return result[1] if isinstance(result, tuple) and len(result) > 1 else None


class CudaGraph:
    """Launches on a pycuda stream, captured once with cuda-bindings and replayed.

    ``capture(stream, fn)`` records everything ``fn()`` enqueues on ``stream``;
    ``launch()`` replays it on the same stream.
    """

    def __init__(self):
        self.cu = driver_api()
        self.graph = self.exec = self.stream = None

    def capture(self, stream, fn) -> None:
        """Record ``fn()``'s work on ``stream`` into an instantiated graph."""
        cu = self.cu
        self.stream = cu.CUstream(stream.handle)
        mode = cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
        checked(cu.cuStreamBeginCapture(self.stream, mode), 'cuStreamBeginCapture')
        try:
            fn()
        finally:
            self.graph = checked(cu.cuStreamEndCapture(self.stream), 'cuStreamEndCapture')
        self.exec = checked(cu.cuGraphInstantiate(self.graph, 0), 'cuGraphInstantiate')

    def launch(self) -> None:
        """Enqueue one replay of the captured work."""
        checked(self.cu.cuGraphLaunch(self.exec, self.stream), 'cuGraphLaunch')

    def close(self) -> None:
        """Destroy the executable graph and the graph."""
        if self.exec is not None:
            self.cu.cuGraphExecDestroy(self.exec)
        if self.graph is not None:
            self.cu.cuGraphDestroy(self.graph)
        self.graph = self.exec = None
