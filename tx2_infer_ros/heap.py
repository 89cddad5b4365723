"""How the node's process uses glibc malloc (no-ops where mallopt is not available).

- Blocks up to ``FRAME_BLOCK`` (32 MiB, glibc's largest threshold: a 4K bgr8 frame is 24 MiB)
  stay on the heap when freed and are reused by the next frame; bigger ones are mapped. A
  threshold of 256 KiB (every frame mapped and unmapped) kept memory flat too, but each
  900 KiB block then cost ~0.25 ms of page faults, several a frame: node overhead 6.3-6.8 ms
  against 4.3-4.8 ms on the 2-core CPU machine, same run (bench_node_overhead.py).
  ``$TX2_INFER_FRAME_BLOCK`` (bytes) sets another threshold.
- One malloc arena, so the middleware's threads, the executor and the worker share one heap.
- An engine build maps its big temporaries and trims the heap before and after
  (``build_memory_mapped``): freed once, they left ~100 MB of free heap that later frames
  wandered into page by page (soak RSS at 10 s: 399 -> 299 MiB).
The middleware's reader pool is bounded by the Fast DDS profile (DYNAMIC_REUSABLE, see
config/fastdds_large_images.xml); soaks: bench/results/soak_node_*_cpu.json.
"""
import contextlib
import ctypes
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
BUILD_BLOCK = 128 << 10  # glibc's own default: bigger blocks are mapped, unmapped when freed
MAX_BLOCK = 32 << 20     # glibc's largest mmap threshold on 64-bit
FRAME_BLOCK = MAX_BLOCK  # frames up to this size reuse freed heap blocks
FRAME_BLOCK_ENV = 'TX2_INFER_FRAME_BLOCK'


def frame_block(env=None) -> int:
    """Bytes above which the node maps a block: ``$TX2_INFER_FRAME_BLOCK`` (an integer, at
    most ``MAX_BLOCK``) or ``FRAME_BLOCK``; a bad value is ignored."""
    value = (os.environ if env is None else env).get(FRAME_BLOCK_ENV, '').strip()
    try:
        return min(max(int(value), BUILD_BLOCK), MAX_BLOCK) if value else FRAME_BLOCK
    except ValueError:
        return FRAME_BLOCK


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


def reuse_freed_memory(max_block=None, arenas=1) -> bool:
    """Keep freed blocks up to ``max_block`` bytes on the heap for reuse (a fixed threshold:
    glibc's own starts at 128 KiB and moves with the blocks freed),
    and at most ``arenas`` malloc arenas (one heap shared by the middleware's threads, the
    executor and the worker). Call before threads start. False where mallopt is not available
    (not glibc). ``max_block`` None: ``frame_block()``."""
    return _mallopt(*_frame_policy(max_block or frame_block()), (M_ARENA_MAX, arenas))


@contextlib.contextmanager
def build_memory_mapped(max_block=None):
    """Inside: blocks over ``BUILD_BLOCK`` are mapped and go back to the OS when freed (the
    free heap is trimmed first, or malloc would carve them from it); after: the heap is
    trimmed again and frames reuse freed blocks up to ``max_block``."""
    _mallopt((M_MMAP_THRESHOLD, BUILD_BLOCK), trim=True)
    try:
        yield
    finally:
        _mallopt(*_frame_policy(max_block or frame_block()), trim=True)
