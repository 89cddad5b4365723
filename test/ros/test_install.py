"""The package installed the way users install it, never into the checkout:

- wheel: ``pip wheel --no-deps .`` then ``pip install --no-deps --prefix <scratch>`` of it;
- colcon: ``colcon build`` into a scratch build and install base (what ``ros2 run`` and
  ``ros2 launch`` use; the only one of the two that a ROS workspace sees).

Both build from a copy of the package's sources. Each install must hold the ament index entry,
package.xml, the launch and config files, the console scripts, and kernels that NVRTC compiles
for sm_62/72/87 FROM THE INSTALLED LOCATION, in a process that sees only the installed
site-packages (not the checkout) and starts with a cold cubin cache.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tx2_infer_core.cuda import compile as cc

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = 'tx2_infer_ros'
# What setup.py reads; test/ is left out (colcon would also build test/vision_msgs).
SOURCES = ('setup.py', 'setup.cfg', 'package.xml', 'resource', 'launch', 'config', 'kernels',
           'tx2_infer_core', 'tx2_infer_ros')
SCRIPTS = ('tx2-infer', 'detector_node', 'image_publisher', 'detection_printer')
NVRTC_ARCHS = (62, 72, 87)
VENV_PATH = f'{Path(sys.executable).parent}{os.pathsep}{os.environ.get("PATH", "")}'
COLCON = shutil.which('colcon', path=VENV_PATH)

# Run in a process that imports tx2_infer_core from PYTHONPATH (the install) only; prints what
# it found and compiles every kernel for every Jetson architecture with NVRTC.
COMPILE_SCRIPT = '''
import json, sys
import tx2_infer_core
from tx2_infer_core.cuda import compile as cc
names = [p.stem for p in cc.kernel_sources()]
bad = [f'{n}@sm_{a}' for a in map(int, sys.argv[1:])
       for n, cubin in cc.compile_all(names, a, compiler='nvrtc').items()
       if cubin[:4] != b'\\x7fELF']
print(json.dumps({'core': tx2_infer_core.__file__, 'kernel_dir': str(cc.kernel_dir()),
                  'names': names, 'not_elf': bad}))
'''


def _run(cmd, **kwargs):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    what = ' '.join(str(c) for c in cmd)[:200]
    assert proc.returncode == 0, f'{what} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}'
    return proc


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in (cc.KERNEL_DIR_ENV, 'PYTHONPATH')}
    return dict(env, PIP_DISABLE_PIP_VERSION_CHECK='1', **extra)


def _checkout_listing():
    """What a build in the checkout would leave there (build/, install/, log/, *.egg-info)."""
    litter = ('build', 'install', 'log', 'dist')
    return sorted(p.name for p in ROOT.iterdir()
                  if p.name in litter or p.name.endswith('.egg-info'))


@pytest.fixture(scope='module')
def checkout_before():
    """Build litter already in the checkout before any build of this module."""
    return _checkout_listing()


@pytest.fixture(scope='module')
def source_copy(tmp_path_factory, checkout_before):
    """The package's sources copied out of the checkout, so no build writes into it."""
    src = tmp_path_factory.mktemp('src') / PACKAGE
    src.mkdir()
    ignore = shutil.ignore_patterns('__pycache__', '*.egg-info', '*.pyc')
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    return src


def _installed(prefix: Path, scripts: Path) -> dict:
    inits = sorted(prefix.rglob('tx2_infer_core/__init__.py'))
    assert len(inits) == 1, f'tx2_infer_core installed {len(inits)} times under {prefix}'
    return {'prefix': prefix, 'site': inits[0].parents[1], 'scripts': scripts}


def _wheel_install(src: Path, tmp: Path) -> dict:
    # --no-build-isolation: build with this venv's setuptools, no download; --ignore-installed:
    # without it pip uninstalls the venv's own (editable) tx2_infer_ros before installing.
    wheels = tmp / 'wheels'
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
          '--no-index', '-w', wheels, src], cwd=tmp, env=_env())
    wheel, = wheels.glob(f'{PACKAGE}-*.whl')
    prefix = tmp / 'prefix'
    _run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--no-index',
          '--ignore-installed', '--prefix', prefix, wheel], cwd=tmp, env=_env())
    return _installed(prefix, prefix / 'bin')


def _colcon_install(src: Path, tmp: Path) -> dict:
    if COLCON is None:
        pytest.skip('colcon is not installed (make test installs colcon-core and colcon-ros)')
    venv = sys.prefix
    env = _env(VIRTUAL_ENV=venv, AMENT_PREFIX_PATH=venv, PATH=VENV_PATH)
    _run([COLCON, '--log-base', tmp / 'log', 'build', '--base-paths', src,
          '--build-base', tmp / 'build', '--install-base', tmp / 'install'], cwd=tmp, env=env)
    prefix = tmp / 'install' / PACKAGE
    return _installed(prefix, prefix / 'lib' / PACKAGE)


@pytest.fixture(scope='module', params=['wheel', 'colcon'])
def install(request, source_copy, tmp_path_factory):
    """{prefix, site (its site-packages), scripts (its console scripts folder)}."""
    tmp = tmp_path_factory.mktemp(request.param)
    build = _wheel_install if request.param == 'wheel' else _colcon_install
    return build(source_copy, tmp)


def test_ament_index_and_share_files(install):
    prefix = install['prefix']
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / PACKAGE).is_file()
    share = prefix / 'share' / PACKAGE
    assert (share / 'package.xml').read_bytes() == (ROOT / 'package.xml').read_bytes()
    for folder, pattern in (('launch', '*.py'), ('config', '*'), ('kernels', '*.cu*')):
        expected = sorted(p.name for p in (ROOT / folder).glob(pattern) if p.is_file())
        assert expected, f'nothing in {folder}/ to compare with'
        installed = sorted(p.name for p in (share / folder).glob(pattern) if p.is_file())
        assert installed == expected, folder


def test_console_scripts(install, tmp_path):
    for name in SCRIPTS:
        script = install['scripts'] / name
        assert script.is_file() and os.access(script, os.X_OK), f'no console script {script}'
    proc = _run([install['scripts'] / 'tx2-infer', '--help'], cwd=tmp_path,
                env=_env(PYTHONPATH=str(install['site'])))
    assert 'inspect' in proc.stdout


@pytest.mark.skipif(not cc.nvrtc_available(), reason='nvidia-cuda-nvrtc-cu12 not installed')
def test_every_kernel_compiles_from_the_installed_location(install, tmp_path):
    env = _env(PYTHONPATH=str(install['site']), TX2_INFER_CACHE=str(tmp_path / 'cache'))
    proc = _run([sys.executable, '-c', COMPILE_SCRIPT, *NVRTC_ARCHS], cwd=tmp_path, env=env)
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    prefix = install['prefix'].resolve()
    assert Path(found['core']).resolve().is_relative_to(prefix), found['core']
    assert Path(found['kernel_dir']).resolve().is_relative_to(prefix), found['kernel_dir']
    assert found['names'] == sorted(p.stem for p in (ROOT / 'kernels').glob('*.cu'))
    assert found['not_elf'] == []
    cubins = list((tmp_path / 'cache' / 'kernels').glob('*.cubin'))
    assert len(cubins) == len(found['names']) * len(NVRTC_ARCHS)  # all compiled, none cached


def test_builds_leave_the_checkout_untouched(install, checkout_before):
    assert _checkout_listing() == checkout_before
