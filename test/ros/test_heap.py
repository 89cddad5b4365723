"""The node's malloc policy (``tx2_infer_ros.heap``), observed through glibc's own counters in
a fresh process (a long-lived heap may hold a free block that fits, and malloc maps a block
only when none does): a frame-sized block comes from the heap (a mapped frame cost ~0.25 ms of
page faults), a block over ``FRAME_BLOCK`` is mapped and unmapped when freed; inside
``build_memory_mapped`` blocks over ``BUILD_BLOCK`` are mapped too, and after it (also after an
error) the frame policy holds again; ``$TX2_INFER_FRAME_BLOCK`` sets the threshold."""
import ctypes
import json
import os
import subprocess
import sys

import pytest

from tx2_infer_ros import heap

FRAME = 921_600 + 64                    # a 640x480 bgr8 image message
HUGE = heap.FRAME_BLOCK + (1 << 20)     # over the frame threshold

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

frame, huge = int(sys.argv[1]), int(sys.argv[2])
out = {"policy": heap.reuse_freed_memory(), "frame": mapped_by(frame), "huge": mapped_by(huge)}
with heap.build_memory_mapped():
    out["build_frame"] = mapped_by(frame)
out["after_build_frame"] = mapped_by(frame)
try:
    with heap.build_memory_mapped():
        raise RuntimeError("build failed")
except RuntimeError:
    pass
out["after_error_frame"] = mapped_by(frame)
print(json.dumps(out))
'''


def run_probe(**env):
    try:
        ctypes.CDLL('libc.so.6').mallinfo2
    except (OSError, AttributeError):
        pytest.skip('not glibc >= 2.33')
    done = subprocess.run([sys.executable, '-c', PROBE, str(FRAME), str(HUGE)],
                          capture_output=True, text=True, timeout=60, check=True,
                          env=dict(os.environ, **env))
    return json.loads(done.stdout)


@pytest.fixture(scope='module')
def probe():
    return run_probe()


def test_frames_reuse_the_heap(probe):
    assert probe['policy']
    assert probe['frame'] == [0, 0]


def test_blocks_over_the_frame_threshold_are_mapped_and_returned(probe):
    grown, left = probe['huge']
    assert grown >= HUGE and left == 0


def test_build_maps_frame_sized_blocks(probe):
    grown, left = probe['build_frame']
    assert grown >= FRAME and left == 0
    assert probe['after_build_frame'] == [0, 0]


def test_build_policy_restored_after_an_error(probe):
    assert probe['after_error_frame'] == [0, 0]


def test_the_environment_sets_the_frame_threshold():
    got = run_probe(**{heap.FRAME_BLOCK_ENV: str(256 << 10)})
    grown, left = got['frame']
    assert grown >= FRAME and left == 0


@pytest.mark.parametrize('value, want', [('', heap.FRAME_BLOCK), ('junk', heap.FRAME_BLOCK),
                                         ('1', heap.BUILD_BLOCK), (str(1 << 40), heap.MAX_BLOCK),
                                         (str(1 << 20), 1 << 20)])
def test_frame_block_reads_and_clamps_the_environment(value, want):
    assert heap.frame_block({heap.FRAME_BLOCK_ENV: value}) == want
