"""Compile ``kernels/*.cu`` to cubins, with an on-disk cache.

Two compilers: the CUDA toolkit's ``nvcc`` (CUDA 13 targets sm_75 and newer) and NVRTC loaded
through ctypes (the ``nvidia-cuda-nvrtc-cu12`` wheel targets sm_50 to sm_90, Pascal and the
Jetsons included). A cubin is cached under ``~/.cache/tx2_infer/kernels`` keyed by the hash of
the source and of every header in ``kernels/``, the defines, the architecture and the compiler,
so a restart does not recompile. Nothing here touches a GPU.

The kernel sources are found by ``kernel_dir()``: ``$TX2_INFER_KERNEL_DIR`` if set, else the
checkout's top-level ``kernels/``, else ``<prefix>/share/tx2_infer_ros/kernels`` of the prefix
the package is installed in (a wheel, ``pip install --prefix``/``--target``, ``colcon build``).
"""
import ctypes
import glob
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tx2_infer_core import assets

KERNEL_DIR_ENV = 'TX2_INFER_KERNEL_DIR'
SHARE_KERNELS = Path('share', 'tx2_infer_ros', 'kernels')  # setup.py's data_files entry
NVCC_MIN_ARCH = 75  # CUDA 13's nvcc dropped Pascal and Volta


class CompileError(RuntimeError):
    """A kernel failed to compile; the message holds the compiler log."""


def kernel_dir_candidates() -> list:
    """Where the kernels may be, in order: the checkout (``<package root>/../kernels``), then
    ``share/tx2_infer_ros/kernels`` under every folder above the installed package (a prefix
    is ``site-packages/../../..``; ``pip install --target`` puts ``share/`` beside it)."""
    package = Path(__file__).resolve().parents[1]
    return [package.parent / 'kernels'] + [up / SHARE_KERNELS for up in package.parents]


def _has_kernels(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob('*.cu'))


def kernel_dir() -> Path:
    """The folder holding ``kernels/*.cu`` and ``*.cuh``: ``$TX2_INFER_KERNEL_DIR`` if set,
    else the first of ``kernel_dir_candidates()`` that holds ``.cu`` files. Raises
    ``CompileError`` naming every place it looked when there is none."""
    forced = os.environ.get(KERNEL_DIR_ENV)
    if forced:
        if not _has_kernels(Path(forced)):
            raise CompileError(f'${KERNEL_DIR_ENV}={forced} holds no kernel (*.cu) files')
        return Path(forced)
    candidates = kernel_dir_candidates()
    for folder in candidates:
        if _has_kernels(folder):
            return folder
    looked = '\n  '.join(str(c) for c in candidates)
    raise CompileError(f'no CUDA kernel files (*.cu) found; ${KERNEL_DIR_ENV} is not set and '
                       f'none of these holds any:\n  {looked}\nReinstall the package (setup.py '
                       f'installs them to {SHARE_KERNELS}) or set ${KERNEL_DIR_ENV}.')


def kernel_sources() -> list:
    """Every kernel file (``kernel_dir()/*.cu``), sorted."""
    return sorted(kernel_dir().glob('*.cu'))


def cache_key(name: str, arch: int, defines: dict, compiler: str) -> str:
    """The cubin cache key: a hash of the source, every header, the defines, the architecture
    and the compiler (not of the kernels' location)."""
    folder = kernel_dir()
    h = hashlib.sha256()
    for path in [folder / f'{name}.cu', *sorted(folder.glob('*.cuh'))]:
        h.update(path.name.encode() + b'\0' + path.read_bytes())
    h.update(repr(sorted(defines.items())).encode())
    h.update(f'sm_{arch}|{compiler}'.encode())
    return h.hexdigest()[:20]


def _define_flags(defines: dict) -> list:
    return [f'-D{k}' if v is None else f'-D{k}={v}' for k, v in sorted(defines.items())]


def nvcc_compile(name: str, arch: int, defines: dict, source: str = None) -> bytes:
    """Compile ``kernels/<name>.cu`` (or the generated ``source``) with nvcc to a cubin for
    ``sm_<arch>``."""
    nvcc = shutil.which('nvcc')
    if nvcc is None:
        raise CompileError('nvcc is not on PATH')
    folder = kernel_dir()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f'{name}.cubin'
        src = folder / f'{name}.cu'
        if source is not None:
            src = Path(tmp) / f'{name}.cu'
            src.write_text(source)
        cmd = [nvcc, '-cubin', f'-arch=sm_{arch}', '-O3', '-std=c++17', f'-I{folder}',
               *_define_flags(defines), '-o', str(out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise CompileError(f'nvcc failed on {name}.cu for sm_{arch}:\n{proc.stderr}')
        return out.read_bytes()


def _nvidia_dirs(sub: str) -> list:
    """Folders ``nvidia/*/<sub>`` of the CUDA wheels on sys.path (nvrtc, cuda_runtime)."""
    import sys
    found = []
    for root in sys.path:
        found += sorted(glob.glob(os.path.join(root, 'nvidia', '*', sub)))
    return found


def load_nvrtc():
    """The NVRTC library (``ctypes.CDLL``): from the ``nvidia-cuda-nvrtc-cu12`` wheel, else
    the system's. Raises ``CompileError`` if there is none."""
    names = [os.path.join(d, 'libnvrtc.so.12') for d in _nvidia_dirs('lib')]
    names += ['libnvrtc.so.12', 'libnvrtc.so']
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise CompileError('libnvrtc not found: pip install nvidia-cuda-nvrtc-cu12')


def nvrtc_available() -> bool:
    """True when ``load_nvrtc`` finds NVRTC (the sm_62/72/87 compile checks need it)."""
    try:
        load_nvrtc()
        return True
    except CompileError:
        return False


def _include_dirs() -> list:
    dirs = [str(kernel_dir())] + _nvidia_dirs('include')
    home = os.environ.get('CUDA_HOME') or os.environ.get('CUDA_PATH') or '/usr/local/cuda'
    if os.path.isdir(os.path.join(home, 'include')):
        dirs.append(os.path.join(home, 'include'))
    return dirs


def _check(lib, code: int, what: str):
    if code != 0:
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise CompileError(f'{what}: {lib.nvrtcGetErrorString(code).decode()}')


def nvrtc_compile(name: str, arch: int, defines: dict, source: str = None,
                  ptx: bool = False) -> bytes:
    """Compile ``kernels/<name>.cu`` (or the generated ``source``) with NVRTC to a cubin for
    ``sm_<arch>`` (``ptx``: its PTX text instead, to check which instructions it uses)."""
    lib = load_nvrtc()
    prog = ctypes.c_void_p()
    src = source.encode() if source is not None else (kernel_dir() / f'{name}.cu').read_bytes()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), src, f'{name}.cu'.encode(), 0,
                                       None, None), 'nvrtcCreateProgram')
    try:
        opts = [f'--gpu-architecture=sm_{arch}', '-std=c++17', '-default-device']
        opts += [f'-I{d}' for d in _include_dirs()] + _define_flags(defines)
        arr = (ctypes.c_char_p * len(opts))(*[o.encode() for o in opts])
        code = lib.nvrtcCompileProgram(prog, len(opts), arr)
        if code != 0:
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(prog, log)
            raise CompileError(f'NVRTC failed on {name}.cu for sm_{arch}:\n'
                               f'{log.value.decode(errors="replace")}')
        size = ctypes.c_size_t()
        if ptx:
            _check(lib, lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), 'nvrtcGetPTXSize')
            text = ctypes.create_string_buffer(size.value)
            _check(lib, lib.nvrtcGetPTX(prog, text), 'nvrtcGetPTX')
            return text.value
        _check(lib, lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)), 'nvrtcGetCUBINSize')
        cubin = ctypes.create_string_buffer(size.value)
        _check(lib, lib.nvrtcGetCUBIN(prog, cubin), 'nvrtcGetCUBIN')
        return cubin.raw
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def pick_compiler(arch: int) -> str:
    """'nvcc' where it targets ``arch`` and is installed, else 'nvrtc' (override with
    ``$TX2_INFER_COMPILER``)."""
    forced = os.environ.get('TX2_INFER_COMPILER')
    if forced:
        if forced not in ('nvcc', 'nvrtc'):
            raise CompileError(f"TX2_INFER_COMPILER must be 'nvcc' or 'nvrtc', not {forced!r}")
        return forced
    return 'nvcc' if arch >= NVCC_MIN_ARCH and shutil.which('nvcc') else 'nvrtc'


def split_module(module: str) -> tuple:
    """'file@NAME=VALUE@...' (a module built with defines) -> ('file', {NAME: VALUE})."""
    name, *parts = module.split('@')
    return name, dict(p.split('=', 1) if '=' in p else (p, None) for p in parts)


# Generated kernel sources (``cuda/codegen_pointwise.py``) by module name: ``compile_cached``
# and ``compile_all`` compile a registered module like a file of ``kernels/``.
GENERATED = {}


def register_source(name: str, source: str) -> None:
    """Make module ``name`` the generated ``source`` (it may include ``kernels/*.cuh``)."""
    if GENERATED.get(name, source) != source:
        raise CompileError(f'generated module {name} registered with two sources')
    GENERATED[name] = source


def compile_source(name: str, source: str, arch: int, compiler: str = None) -> bytes:
    """The cubin of a generated ``source`` for ``sm_<arch>``, disk-cached like the files: the
    key is a hash of the source, every header of ``kernels/``, the architecture and the
    compiler."""
    compiler = compiler or pick_compiler(arch)
    h = hashlib.sha256(source.encode())
    for path in sorted(kernel_dir().glob('*.cuh')):
        h.update(path.name.encode() + b'\0' + path.read_bytes())
    h.update(f'sm_{arch}|{compiler}'.encode())
    path = assets.cache_dir() / 'kernels' / f'{name}-sm_{arch}-{h.hexdigest()[:20]}.cubin'
    if path.is_file():
        return path.read_bytes()
    fn = nvcc_compile if compiler == 'nvcc' else nvrtc_compile
    cubin = fn(name, arch, {}, source)
    _write_atomic(path, cubin)
    return cubin


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f'.tmp{os.getpid()}')
    tmp.write_bytes(data)
    os.replace(tmp, path)  # atomic: concurrent processes never read half a file


def compile_cached(name: str, arch: int, defines: dict = None, compiler: str = None) -> bytes:
    """The cubin of module ``name`` (``kernels/<file>.cu``, defines after '@', see
    ``split_module``; or a registered generated source) for ``sm_<arch>``, from the disk
    cache if present."""
    if name in GENERATED:
        return compile_source(name, GENERATED[name], arch, compiler)
    name, extra = split_module(name)
    defines = dict(extra, **(defines or {}))
    compiler = compiler or pick_compiler(arch)
    folder = kernel_dir()
    if not (folder / f'{name}.cu').is_file():
        raise CompileError(f'no kernel file {name}.cu in {folder}')
    key = cache_key(name, arch, defines, compiler)
    path = assets.cache_dir() / 'kernels' / f'{name}-sm_{arch}-{key}.cubin'
    if path.is_file():
        return path.read_bytes()
    fn = nvcc_compile if compiler == 'nvcc' else nvrtc_compile
    cubin = fn(name, arch, defines)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f'.tmp{os.getpid()}')
    tmp.write_bytes(cubin)
    os.replace(tmp, path)  # atomic: concurrent processes never read half a file
    return cubin


def compile_workers() -> int:
    """Parallel kernel compiles: $TX2_INFER_COMPILE_WORKERS (e.g. 4 on a Jetson, to keep its
    CPU for the robot), else one per CPU core."""
    value = os.environ.get('TX2_INFER_COMPILE_WORKERS', '')
    if value.isdigit() and int(value) > 0:
        return int(value)
    return os.cpu_count() or 1


def compile_all(names, arch: int, defines: dict = None, compiler: str = None) -> dict:
    """{name: cubin} of several kernel files, compiled side by side: each nvcc is its own
    process and NVRTC calls release the GIL, so a cold build takes about as long as its
    slowest module instead of the sum. Cached cubins are read from disk as before.
    At most ``compile_workers()`` compilers run at once."""
    from concurrent.futures import ThreadPoolExecutor
    names = sorted(set(names))
    if not names:
        return {}
    with ThreadPoolExecutor(min(len(names), compile_workers())) as pool:
        cubins = pool.map(lambda n: compile_cached(n, arch, defines, compiler), names)
        return dict(zip(names, cubins))
