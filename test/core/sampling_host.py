"""``kernels/sampling.cu`` itself, built for the host: the lowered launches of GridSample,
AffineGrid and RoiAlign run over an FP16 arena and weight buffer without a GPU (test helper).

The kernel source is compiled with g++ as it stands (``_Float16`` for ``half``; one "thread"
walks the grid-stride loop over every output), with ``tx2_decode_pixel`` taken from
``common.cuh``; a 16-byte access that is not 16-byte aligned aborts, as it faults on a GPU.
``run(graph, feeds)`` lowers ``graph`` for sm_90, runs these ops' launches through that binary
and every other node by its numpy op; the arena starts as NaN.
"""
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from launch_emulator import slot_index
from unary_cases import device_function

from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.ops import run_node

KERNELS = Path(__file__).resolve().parents[2] / 'kernels'
OPS = ('GridSample', 'AffineGrid', 'RoiAlign')
ENTRIES = ('grid_sample', 'grid_sample_v8', 'affine_grid', 'roi_align', 'roi_align_v8')
POINTERS = {'GridParams': ('x', 'grid', 'y'), 'AffineParams': ('theta', 'y'),
            'RoiParams': ('x', 'rois', 'index', 'y')}
STRUCT = {'grid_sample': 'GridParams', 'grid_sample_v8': 'GridParams',
          'affine_grid': 'AffineParams', 'roi_align': 'RoiParams', 'roi_align_v8': 'RoiParams'}

PRELUDE = r'''
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#define __device__
#define __global__
#define __forceinline__ inline
#define TX2_INF INFINITY
typedef _Float16 half;
using std::max;
using std::min;
struct Dim3 { unsigned x, y, z; };
static const Dim3 blockIdx = {0, 0, 0}, threadIdx = {0, 0, 0}, blockDim = {1, 1, 1},
                  gridDim = {1, 1, 1};
static void aligned16(const void *p) {
    if ((uintptr_t)p % 16) std::abort();  // a misaligned 16-byte access faults on a GPU
}
struct uint4 {  // a 16-byte access: aborts unless aligned
    unsigned x, y, z, w;
    uint4() {}
    uint4(const uint4 &o) { aligned16(&o); std::memcpy(this, &o, 16); }
    uint4 &operator=(const uint4 &o) { aligned16(this); std::memcpy(this, &o, 16); return *this; }
};
inline float __half2float(half h) { return (float)h; }
inline half __float2half(float f) { return (half)f; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
'''

MAIN = r'''
template <class P> static void fix(P &p, char *buf);
{fixes}
template <class P> static void launch(void (*kernel)(P), const char *rec, int size, char *buf) {{
    P p;
    std::memset(&p, 0, sizeof p);
    std::memcpy(&p, rec, std::min<size_t>(size, sizeof p));
    fix(p, buf);
    kernel(p);
}}
int main() {{
    int entry, size;
    long long nbytes;
    if (std::fread(&entry, 4, 1, stdin) != 1 || std::fread(&size, 4, 1, stdin) != 1) return 2;
    char rec[512];
    if (std::fread(rec, 1, size, stdin) != (size_t)size) return 2;
    if (std::fread(&nbytes, 8, 1, stdin) != 1) return 2;
    char *buf = (char *)std::aligned_alloc(256, (nbytes + 255) / 256 * 256);
    if (std::fread(buf, 1, nbytes, stdin) != (size_t)nbytes) return 2;
    switch (entry) {{
    case 0: launch(grid_sample, rec, size, buf); break;
    case 1: launch(grid_sample_v8, rec, size, buf); break;
    case 2: launch(affine_grid, rec, size, buf); break;
    case 3: launch(roi_align, rec, size, buf); break;
    case 4: launch(roi_align_v8, rec, size, buf); break;
    default: return 3;
    }}
    std::fwrite(buf, 1, nbytes, stdout);
    return 0;
}}
'''


def _fix(struct, names) -> str:
    body = ' '.join(f'p.{n} = (decltype(p.{n}))(buf + (uintptr_t)p.{n});' for n in names)
    return f'template <> void fix(struct {struct} &p, char *buf) {{ {body} }}'


def host_source(kernel_text=None) -> str:
    """The C++ program: the prelude, ``sampling.cu`` (or ``kernel_text``) and a main that
    runs one launch record over a buffer read from stdin."""
    text = kernel_text or (KERNELS / 'sampling.cu').read_text()
    common = (KERNELS / 'common.cuh').read_text()
    text = text.replace('#include "common.cuh"', device_function(common, 'tx2_decode_pixel'))
    fixes = '\n'.join(_fix(s, names) for s, names in POINTERS.items())
    return PRELUDE + text + MAIN.format(fixes=fixes)


def build(compiler, folder=None, kernel_text=None) -> Path:
    """Compile the host program into ``folder`` (a new temporary one by default)."""
    folder = Path(folder or tempfile.mkdtemp(prefix='tx2_sampling_'))
    (folder / 'sampling.cpp').write_text(host_source(kernel_text))
    subprocess.run([compiler, '-O1', '-ffp-contract=off', '-fno-strict-aliasing', '-o',
                    str(folder / 'sampling'), str(folder / 'sampling.cpp')], check=True,
                   capture_output=True)
    return folder / 'sampling'


def run_launch(binary, buf: np.ndarray, launch, bases) -> np.ndarray:
    """``buf`` (uint8) after ``launch`` ran over it; ``bases`` {'arena', 'weights': byte
    offset of each in ``buf``}."""
    rec = np.asarray(launch.bind(bases)).tobytes()
    header = np.array([ENTRIES.index(launch.kernel), len(rec)], np.int32).tobytes()
    data = header + rec + np.array([buf.size], np.int64).tobytes() + buf.tobytes()
    out = subprocess.run([str(binary)], input=data, capture_output=True)
    assert out.returncode == 0, (launch.kernel, out.returncode, out.stdout[:40])
    return np.frombuffer(out.stdout, np.uint8).copy()


def run(binary, graph, feeds, arch=90) -> tuple:
    """(outputs of ``graph``, Lowered): OPS by their launches on the host, the rest by numpy."""
    lowered = lower_graph(graph, arch=arch)
    weights = lowered.weight_image()
    w0 = -(-lowered.plan.arena_bytes // 256) * 256
    buf = np.zeros(w0 + weights.size, np.uint8)
    buf[:w0].view(np.float16)[:] = np.nan
    buf[w0:] = weights
    bases = {'arena': 0, 'weights': w0}

    def read(name):
        slot = lowered.slots[name]
        return buf[:w0].view(np.float16)[slot_index(slot)].astype(np.float32).reshape(slot.shape)

    def write(name, value):
        buf[:w0].view(np.float16)[slot_index(lowered.slots[name])] = np.asarray(
            value, np.float32).reshape(-1)

    for name, x in feeds.items():
        write(name, x)
    for node in graph.nodes:
        if node.op in OPS:
            for launch in (k for k in lowered.launches if k.node == node.name):
                buf = run_launch(binary, buf, launch, bases)
            continue
        args = [read(n) if n in lowered.slots else graph.weights.get(n) if n else None
                for n in node.inputs]
        for name, value in zip(node.outputs, run_node(node, args)):
            write(name, value)
    return {n: read(n) for n in graph.outputs}, lowered
