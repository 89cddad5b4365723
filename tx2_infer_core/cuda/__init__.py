"""CUDA support: kernel compilation with a disk cache, a lazily created context, a pooled
device allocator and CUDA-graph capture. Importing this package never imports pycuda nor
touches a GPU; ``runtime.open_context()`` does, when asked.
"""


def available() -> bool:
    """True when pycuda imports and a CUDA device answers (no context is created or kept)."""
    try:
        import pycuda.driver as drv
        drv.init()
        return drv.Device.count() > 0
    except Exception:  # ImportError, or a driver error on a machine without a GPU
        return False
