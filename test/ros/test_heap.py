"""The node's malloc policy (``tx2_infer_ros.heap``), observed through glibc's own counters:
inside ``build_memory_mapped`` a big block is mapped (and unmapped when freed); after it, and
under ``reuse_freed_memory``, the same block comes from the heap."""
import ctypes

import numpy as np
import pytest

from tx2_infer_ros import heap

BIG = 8 << 20  # over BUILD_BLOCK, under FRAME_BLOCK


class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                'arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks '
                'keepcost'.split()]


def mapped_bytes() -> int:
    """Bytes glibc holds in mapped blocks now (``mallinfo2().hblkhd``)."""
    libc = ctypes.CDLL('libc.so.6')
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2().hblkhd


def mapped_by(nbytes) -> int:
    """How much the mapped total grows while one ``nbytes`` array is alive."""
    before = mapped_bytes()
    block = np.ones(nbytes, np.uint8)
    grown = mapped_bytes() - before
    del block
    return grown


@pytest.fixture
def glibc():
    try:
        ctypes.CDLL('libc.so.6').mallinfo2
    except (OSError, AttributeError):
        pytest.skip('not glibc >= 2.33')
    assert heap.reuse_freed_memory()
    yield
    heap.reuse_freed_memory()


def test_frames_reuse_heap_blocks(glibc):
    assert mapped_by(BIG) == 0


def test_build_blocks_are_mapped_and_returned(glibc):
    with heap.build_memory_mapped():
        before = mapped_bytes()
        assert mapped_by(BIG) >= BIG
        assert mapped_bytes() == before      # unmapped when freed: nothing left on the heap
    assert mapped_by(BIG) == 0               # frames reuse heap blocks again


def test_build_policy_restored_after_an_error(glibc):
    with pytest.raises(RuntimeError):
        with heap.build_memory_mapped():
            raise RuntimeError('build failed')
    assert mapped_by(BIG) == 0


def test_reserve_leaves_resident_free_heap(glibc):
    """Reserved blocks stay resident as free heap, and frame-sized blocks taken later fit in
    it: resident memory grows at the reserve, not at the frames."""
    frame = 921_600 + 64
    ctypes.CDLL('libc.so.6').malloc_trim(0)
    rss0 = resident_bytes()
    assert heap.reserve(frame, 12) == 12 * frame
    rss1 = resident_bytes()
    held = [np.ones(frame, np.uint8) for _ in range(10)]
    rss2 = resident_bytes()
    del held
    assert rss1 - rss0 >= 11 * frame
    assert rss2 - rss1 < frame


def resident_bytes() -> int:
    with open('/proc/self/statm') as statm:
        return int(statm.read().split()[1]) * 4096


def test_heap_reserve_grows_with_the_cameras_total(monkeypatch):
    calls = []
    monkeypatch.setattr(heap, 'reserve', lambda n, k: calls.append((n, k)) or n * k)
    book = heap.HeapReserve()
    book.frame('a', 1000, 10)              # 12 frames of a
    book.frame('a', 1000, 10)              # nothing new
    book.frame('a', 500, 10)               # smaller: nothing new
    book.frame('b', 2000, 3)               # + 5 frames of b: 22,000 bytes in all
    assert calls == [(1000, 12), (2000, 11)]
    assert book.reserved == 22_000


def test_reserve_is_capped():
    assert heap.reserve(heap.RESERVE_MAX // 2 + 1, 10) == heap.RESERVE_MAX // 2 + 1
