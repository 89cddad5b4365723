"""How the node's process uses glibc malloc (no-ops where mallopt is not available).

Frames reuse freed heap blocks (``reuse_freed_memory``): a frame's big arrays then cost no
munmap and no fresh page faults. An engine build is different: its big temporaries (weights
being folded, the ONNX model, the builder's scratch) are freed once, and kept on the heap they
leave tens of MiB of free heap behind that later frames wander into page by page, so resident
memory rose in steps for the first 21 minutes of a 60-minute soak (``build_memory_mapped``).
"""
import contextlib
import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
FRAME_BLOCK = 32 << 20   # the largest block glibc keeps on the heap when asked (its maximum)
BUILD_BLOCK = 128 << 10  # glibc's own default: bigger blocks are mapped, unmapped when freed


def _mallopt(*settings, trim=False) -> bool:
    """mallopt each (option, value); ``trim``: first give free heap pages back to the OS."""
    try:
        libc = ctypes.CDLL('libc.so.6')
        if trim:
            libc.malloc_trim(0)
        return all(libc.mallopt(option, int(value)) for option, value in settings)
    except (OSError, AttributeError):
        return False


def reuse_freed_memory(max_block=FRAME_BLOCK, arenas=2) -> bool:
    """Keep freed blocks up to ``max_block`` bytes on the heap for reuse, and at most
    ``arenas`` malloc arenas (threads then share their peaks instead of each arena growing to
    its own). Call before threads start. False where mallopt is not available (not glibc)."""
    return _mallopt((M_MMAP_THRESHOLD, max_block), (M_TRIM_THRESHOLD, 4 * max_block),
                    (M_ARENA_MAX, arenas))


@contextlib.contextmanager
def build_memory_mapped(max_block=FRAME_BLOCK):
    """Inside: blocks over ``BUILD_BLOCK`` are mapped and go back to the OS when freed (the
    free heap is trimmed first, or malloc would carve them from it); after: the heap is
    trimmed again and frames reuse freed blocks up to ``max_block``."""
    _mallopt((M_MMAP_THRESHOLD, BUILD_BLOCK), trim=True)
    try:
        yield
    finally:
        _mallopt((M_MMAP_THRESHOLD, max_block), (M_TRIM_THRESHOLD, 4 * max_block), trim=True)
