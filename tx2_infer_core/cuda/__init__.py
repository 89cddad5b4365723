"""CUDA support: kernel compilation with a disk cache, a lazily created context, a pooled
device allocator and CUDA-graph capture. Importing this package never imports pycuda nor
touches a GPU; ``context.open_context()`` does, when asked.
"""
