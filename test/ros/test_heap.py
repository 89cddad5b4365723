"""The node's malloc policy (``tx2_infer_ros.heap``), observed through glibc's own counters:
a frame-sized block is mapped (and unmapped when freed), a smaller one comes from the heap;
inside ``build_memory_mapped`` blocks over ``BUILD_BLOCK`` are mapped too."""
import ctypes

import numpy as np
import pytest

from tx2_infer_ros import heap

FRAME = 921_600 + 64                          # a 640x480 bgr8 image message
MIDDLE = (heap.BUILD_BLOCK + heap.FRAME_BLOCK) // 2  # over BUILD_BLOCK, under FRAME_BLOCK


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


def test_frames_are_mapped_and_returned(glibc):
    before = mapped_bytes()
    assert mapped_by(FRAME) >= FRAME
    assert mapped_bytes() == before       # unmapped when freed: resident memory drops again


def test_smaller_blocks_reuse_the_heap(glibc):
    assert mapped_by(MIDDLE) == 0


def test_build_maps_smaller_blocks_too(glibc):
    with heap.build_memory_mapped():
        before = mapped_bytes()
        assert mapped_by(MIDDLE) >= MIDDLE
        assert mapped_bytes() == before
    assert mapped_by(MIDDLE) == 0         # the frame policy again


def test_build_policy_restored_after_an_error(glibc):
    with pytest.raises(RuntimeError):
        with heap.build_memory_mapped():
            raise RuntimeError('build failed')
    assert mapped_by(MIDDLE) == 0
