"""Programmatic dependent launch (PDL, sm_90+): a kernel launched with the driver's
programmatic-stream-serialization attribute may be scheduled while the kernel before it is still
finishing, so its launch latency hides behind that kernel's tail. Such a kernel must call
``tx2_grid_wait()`` (``kernels/common.cuh``) before it reads or writes anything the kernels
before it touch; ``PDL_KERNELS`` names the kernels that do. Captured into a CUDA graph, the
launches become programmatic edges.

pycuda has no launch with attributes, so these launches go through the driver (ctypes,
``cuLaunchKernelEx``) with the same packed parameter record pycuda would pass. Imports nothing
at import time.
"""
import ctypes

MIN_ARCH = 90
# The kernels whose first device-memory access follows tx2_grid_wait().
PDL_KERNELS = ('conv_mma_', 'conv_splitk_reduce')
PROGRAMMATIC_STREAM_SERIALIZATION = 6  # CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
PARAM_BUFFER_POINTER, PARAM_BUFFER_SIZE, PARAM_END = 1, 2, 0  # CU_LAUNCH_PARAM_*


class LaunchAttribute(ctypes.Structure):
    """CUlaunchAttribute: an id, padding, a 64-byte value union."""
    _fields_ = [('id', ctypes.c_int), ('pad', ctypes.c_char * 4), ('value', ctypes.c_int * 16)]


class LaunchConfig(ctypes.Structure):
    """CUlaunchConfig."""
    _fields_ = [('grid', ctypes.c_uint * 3), ('block', ctypes.c_uint * 3),
                ('shared_bytes', ctypes.c_uint), ('stream', ctypes.c_void_p),
                ('attrs', ctypes.POINTER(LaunchAttribute)), ('num_attrs', ctypes.c_uint)]


def wants_pdl(kernel: str, arch: int) -> bool:
    """True when ``kernel`` is launched programmatically on ``sm_<arch>``."""
    return arch >= MIN_ARCH and kernel.startswith(PDL_KERNELS)


class Driver:
    """The driver calls PDL launches need, on modules loaded from our cubins (in the context
    current when a module is first asked for)."""

    def __init__(self):
        self.lib = ctypes.CDLL('libcuda.so.1')
        self._modules, self._functions = {}, {}

    def _check(self, result, what):
        if result != 0:
            raise RuntimeError(f'{what} failed: CUresult {result}')

    def function(self, module: str, kernel: str, cubin: bytes):
        """The CUfunction handle of ``kernel`` in ``module`` (loaded from ``cubin`` once)."""
        key = (module, kernel)
        if key not in self._functions:
            if module not in self._modules:
                handle = ctypes.c_void_p()
                self._check(self.lib.cuModuleLoadData(ctypes.byref(handle), cubin),
                            f'cuModuleLoadData({module})')
                self._modules[module] = handle
            func = ctypes.c_void_p()
            self._check(self.lib.cuModuleGetFunction(ctypes.byref(func), self._modules[module],
                                                     kernel.encode()),
                        f'cuModuleGetFunction({kernel})')
            self._functions[key] = func
        return self._functions[key]

    def close(self):
        """Unload the modules (the context must be current)."""
        for handle in self._modules.values():
            self.lib.cuModuleUnload(handle)
        self._modules.clear()
        self._functions.clear()


class PdlKernel:
    """Called like a pycuda kernel, ``kernel(record, grid=, block=, stream=)``, it launches
    with the programmatic-serialization attribute."""

    def __init__(self, driver: Driver, function):
        self.driver, self.function = driver, function

    def __call__(self, record, grid, block, stream):
        payload = record.tobytes()
        data = ctypes.create_string_buffer(payload, len(payload))  # no trailing NUL
        size = ctypes.c_size_t(len(payload))
        extra = (ctypes.c_void_p * 5)(PARAM_BUFFER_POINTER, ctypes.addressof(data),
                                      PARAM_BUFFER_SIZE, ctypes.addressof(size), PARAM_END)
        attr = LaunchAttribute(id=PROGRAMMATIC_STREAM_SERIALIZATION)
        attr.value[0] = 1
        config = LaunchConfig(grid=(ctypes.c_uint * 3)(*grid),
                              block=(ctypes.c_uint * 3)(*block), shared_bytes=0,
                              stream=ctypes.c_void_p(int(stream.handle)),
                              attrs=ctypes.pointer(attr), num_attrs=1)
        result = self.driver.lib.cuLaunchKernelEx(ctypes.byref(config), self.function, None,
                                                  extra)
        self.driver._check(result, 'cuLaunchKernelEx')
