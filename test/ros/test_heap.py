"""The node's malloc policy (``tx2_infer_ros.heap``), observed through glibc's own counters in
a fresh process (a long-lived heap may hold a free block that fits, and malloc maps a block
only when none does): a frame-sized block is mapped and unmapped when freed, a smaller one
comes from the heap; inside ``build_memory_mapped`` blocks over ``BUILD_BLOCK`` are mapped
too, and after it (also after an error) the frame policy holds again."""
import ctypes
import json
import subprocess
import sys

import pytest

from tx2_infer_ros import heap

FRAME = 921_600 + 64                                  # a 640x480 bgr8 image message
MIDDLE = (heap.BUILD_BLOCK + heap.FRAME_BLOCK) // 2   # over BUILD_BLOCK, under FRAME_BLOCK

PROBE = '''
import ctypes, json, sys
import numpy as np
from tx2_infer_ros import heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks "
                "keepcost".split()]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2

def mapped_by(nbytes):
    before = libc.mallinfo2().hblkhd
    block = np.ones(nbytes, np.uint8)
    grown = libc.mallinfo2().hblkhd - before
    del block
    return grown, libc.mallinfo2().hblkhd - before

frame, middle = int(sys.argv[1]), int(sys.argv[2])
out = {"policy": heap.reuse_freed_memory(), "frame": mapped_by(frame),
       "middle": mapped_by(middle)}
with heap.build_memory_mapped():
    out["build_middle"] = mapped_by(middle)
out["after_build_middle"] = mapped_by(middle)
try:
    with heap.build_memory_mapped():
        raise RuntimeError("build failed")
except RuntimeError:
    pass
out["after_error_middle"] = mapped_by(middle)
print(json.dumps(out))
'''


@pytest.fixture(scope='module')
def probe():
    try:
        ctypes.CDLL('libc.so.6').mallinfo2
    except (OSError, AttributeError):
        pytest.skip('not glibc >= 2.33')
    done = subprocess.run([sys.executable, '-c', PROBE, str(FRAME), str(MIDDLE)],
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_frames_are_mapped_and_returned(probe):
    assert probe['policy']
    grown, left = probe['frame']
    assert grown >= FRAME and left == 0


def test_smaller_blocks_reuse_the_heap(probe):
    assert probe['middle'] == [0, 0]


def test_build_maps_smaller_blocks_too(probe):
    grown, left = probe['build_middle']
    assert grown >= MIDDLE and left == 0
    assert probe['after_build_middle'] == [0, 0]


def test_build_policy_restored_after_an_error(probe):
    assert probe['after_error_middle'] == [0, 0]
