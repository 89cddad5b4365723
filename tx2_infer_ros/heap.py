"""How the node's process uses glibc malloc (no-ops where mallopt is not available).

Frames reuse freed heap blocks (``reuse_freed_memory``): a frame's big arrays then cost no
munmap and no fresh page faults. An engine build is different: its big temporaries (weights
being folded, the ONNX model, the builder's scratch) are freed once, and kept on the heap they
leave tens of MiB of free heap behind that later frames wander into page by page, so resident
memory rose in steps for the first 21 minutes of a 60-minute soak (``build_memory_mapped``).
Even then it rose, in steps of one frame: the middleware keeps a buffer per queued message
and grows its pool whenever its queue is longer than ever before (a hiccup, minutes in), and
never shrinks it. ``HeapReserve`` makes that memory resident at the first frame instead, so
the pool grows into it and the process stays flat.
"""
import contextlib
import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
RESERVE_MAX = 96 << 20   # under the trim threshold (4 x FRAME_BLOCK): kept, not trimmed
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


def reuse_freed_memory(max_block=FRAME_BLOCK, arenas=1) -> bool:
    """Keep freed blocks up to ``max_block`` bytes on the heap for reuse, and at most
    ``arenas`` malloc arenas (one: the middleware's threads, the executor and the worker share
    one heap, and so ``HeapReserve``). Call before threads start. False where mallopt is not
    available (not glibc)."""
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


def reserve(nbytes, blocks) -> int:
    """Make ``blocks`` heap blocks of ``nbytes`` resident, then free them for reuse (at most
    ``RESERVE_MAX`` bytes in all); returns the bytes reserved."""
    import numpy as np
    count = min(int(blocks), RESERVE_MAX // max(int(nbytes), 1))
    held = [np.ones(int(nbytes), np.uint8) for _ in range(count)]
    del held
    return count * int(nbytes)


class HeapReserve:
    """The heap the cameras' queued frames can take: per camera ``depth + SPARE`` frames of
    the largest size it sent (the middleware's queue, the message being taken, the frame in
    the worker), reserved again whenever that total grows."""

    SPARE = 2

    def __init__(self):
        self.wanted, self.reserved = {}, 0

    def frame(self, camera, nbytes, depth) -> None:
        """Note a received frame of ``nbytes`` on ``camera`` (its queue holds ``depth``)."""
        need = int(nbytes) * (int(depth) + self.SPARE)
        if need <= self.wanted.get(camera, 0):
            return
        self.wanted[camera] = need
        total = sum(self.wanted.values())
        if total > self.reserved:
            self.reserved = max(self.reserved, reserve(nbytes, -(-total // int(nbytes))))
