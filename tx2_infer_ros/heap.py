"""How the node's process uses glibc malloc (no-ops where mallopt is not available).

- Blocks over ``FRAME_BLOCK`` (a 640x480 image is 900 KiB) are mapped and unmapped when
  freed, at a fixed threshold (glibc's own rises to 32 MiB after the first big free, and from
  then on keeps every frame's peak on the heap); smaller blocks are reused; one malloc arena.
- An engine build maps its big temporaries and trims the heap before and after
  (``build_memory_mapped``): freed once, they left ~100 MB of free heap that later frames
  wandered into page by page (soak RSS at 10 s: 399 -> 299 MiB).
What still grows is the middleware's: rmw_fastrtps keeps one buffer per message ever queued
at once in a reader's history (PREALLOCATED_WITH_REALLOC) and grows the pool by an image
whenever the queue is longer than ever before (a hiccup, minutes in), up to the queue's depth
(60-minute soak at qos_depth 10: 0.43 MiB/min). Fast DDS's DYNAMIC_RESERVE policy (buffers
freed with their message: an XML profile and RMW_FASTRTPS_USE_QOS_FROM_XML=1) kept a 20-minute
soak flat, but with it the reliability switch of test/ros/test_qos.py failed, so it is not
used (bench/results/soak_node_*_cpu.json).
"""
import contextlib
import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
FRAME_BLOCK = 256 << 10  # larger blocks (frames) are mapped: unmapped when freed
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


def _frame_policy(max_block):
    """The mallopt settings of frames: blocks up to ``max_block`` stay on the heap."""
    return (M_MMAP_THRESHOLD, max_block), (M_TRIM_THRESHOLD, 4 * max_block)


def reuse_freed_memory(max_block=FRAME_BLOCK, arenas=1) -> bool:
    """Keep freed blocks up to ``max_block`` bytes on the heap for reuse (a fixed threshold:
    glibc's own rises to 32 MiB after the first big free, and then keeps every frame's peak),
    and at most ``arenas`` malloc arenas (one heap shared by the middleware's threads, the
    executor and the worker). Call before threads start. False where mallopt is not available
    (not glibc)."""
    return _mallopt(*_frame_policy(max_block), (M_ARENA_MAX, arenas))


@contextlib.contextmanager
def build_memory_mapped(max_block=FRAME_BLOCK):
    """Inside: blocks over ``BUILD_BLOCK`` are mapped and go back to the OS when freed (the
    free heap is trimmed first, or malloc would carve them from it); after: the heap is
    trimmed again and frames reuse freed blocks up to ``max_block``."""
    _mallopt((M_MMAP_THRESHOLD, BUILD_BLOCK), trim=True)
    try:
        yield
    finally:
        _mallopt(*_frame_policy(max_block), trim=True)
