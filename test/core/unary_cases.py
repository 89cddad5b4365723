"""The generated unary ops (``ops/traits.py`` ``generated``): their input ranges, attributes,
and a host build of their generated C code, for the lowering and the GPU tests.

``host_program(programs)`` compiles the ``pw_f`` body ``cuda/codegen_pointwise.py`` writes for
each one-input program with the host C++ compiler (the device-only names defined as their
host twins) and returns a function running all of them over a float32 vector: the C
expressions are checked against the numpy ops without a GPU.
"""
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from tx2_infer_core.cuda import codegen_pointwise as cg, compile as cc
from tx2_infer_core.ops import traits

GENERATED = [t.name for t in traits.TRAITS.values()
             if t.kind == traits.UNARY and t.cuda == 'pointwise']
# input ranges inside each op's domain (default (-4, 4)); Tan away from its poles
RANGES = {'Asin': (-0.95, 0.95), 'Acos': (-0.95, 0.95), 'Atanh': (-0.95, 0.95),
          'Acosh': (1.05, 6.0), 'Tan': (-1.3, 1.3)}
# attributes other than the defaults (a dropped attribute shows), and negative ones
ATTRS = {'Elu': {'alpha': 0.7}, 'Selu': {'alpha': 1.5, 'gamma': 0.9}, 'Celu': {'alpha': 0.6},
         'ThresholdedRelu': {'alpha': 0.4}, 'Shrink': {'bias': 0.25, 'lambd': 0.75},
         'Swish': {'alpha': 1.3}}
NEGATIVE_ATTRS = {'Elu': {'alpha': -0.5}, 'Celu': {'alpha': -0.8},
                  'ThresholdedRelu': {'alpha': -0.5}, 'Shrink': {'bias': -0.3, 'lambd': -0.2},
                  'Swish': {'alpha': -1.0}}


def probe(op, n=1001) -> np.ndarray:
    """float32 inputs of ``op``: a grid over its range with every half integer in it (Round's
    ties, Floor's and Sign's edges), its thresholds, zero, infinities and NaN."""
    lo, hi = RANGES.get(op, (-4.0, 4.0))
    marks = [0.0, -0.0, 0.25, -0.25, 0.4, -0.4, 0.75, -0.75, 0.2, -0.2]
    halves = np.arange(np.ceil(2 * lo), np.floor(2 * hi) + 1) / 2
    x = np.concatenate([np.linspace(lo, hi, n), halves, [m for m in marks if lo <= m <= hi],
                        [np.nan, np.inf, -np.inf]])
    return x.astype(np.float32)


PRELUDE = '''#include <math.h>
#include <stdio.h>
#include <string.h>
#define __device__
#define __forceinline__ inline
#define TX2_INF INFINITY
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline float tx2_sigmoid(float v) { return 1.f / (1.f + expf(-v)); }
'''
MAIN = '''int main(void) {{
    float x;
    while (fread(&x, sizeof(float), 1, stdin) == 1) {{
        const float y[] = {{{calls}}};
        fwrite(y, sizeof(float), {count}, stdout);
    }}
    return 0;
}}
'''


def device_compilers() -> list:
    """[(arch, compiler)] this machine can build CUDA sources for: NVRTC sm_62/72/87, nvcc
    sm_90."""
    targets = []
    try:
        cc.load_nvrtc()
        targets += [(arch, 'nvrtc') for arch in (62, 72, 87)]
    except cc.CompileError:
        pass
    return targets + ([(90, 'nvcc')] if shutil.which('nvcc') else [])


def host_compiler():
    """The host C++ compiler, or None."""
    return shutil.which('g++') or shutil.which('c++') or shutil.which('clang++')


def device_function(source, name) -> str:
    """The text of ``__device__ __forceinline__`` function ``name`` in kernel ``source``."""
    return re.search(r'__device__ __forceinline__ \w+ ' + name + r'\(.*?\n}\n', source,
                     re.S)[0]


def build_host(folder, name, source, *flags) -> Path:
    """``source`` compiled for the host as ``folder/name`` (-O1, ``flags`` first)."""
    folder = Path(folder)
    (folder / f'{name}.cpp').write_text(source)
    subprocess.run([host_compiler(), '-O1', *flags, '-o', str(folder / name),
                    str(folder / f'{name}.cpp'), '-lm'], check=True, capture_output=True)
    return folder / name


def host_program(programs, folder):
    """A function ``run(x) -> [len(programs), len(x)] float32`` computing each one-input
    ``programs`` step list as the generated kernel's ``pw_f`` does, compiled for the host
    (source and binary in ``folder``)."""
    bodies = [cg.program_body(steps, 1).replace('pw_f', f'pw_{k}')
              for k, steps in enumerate(programs)]
    calls = ', '.join(f'pw_{k}(x)' for k in range(len(programs)))
    source = PRELUDE + '\n'.join(bodies) + MAIN.format(calls=calls, count=len(programs))
    exe = build_host(folder, 'pw', source)

    def run(x):
        x = np.ascontiguousarray(x, np.float32)
        out = subprocess.run([str(exe)], input=x.tobytes(), check=True,
                             capture_output=True).stdout
        return np.frombuffer(out, np.float32).reshape(len(x), len(programs)).T
    return run
