"""Environment for ROS processes that the demo, tests and benchmarks start.

On a full ROS 2 install ``vision_msgs`` comes from the distro and nothing here is needed. On a
machine with the PyPI ROS wheels, ``make ros-msgs`` builds a wire-compatible vision_msgs into
``~/.cache/tx2_infer/ros_ws/install`` (or ``$TX2_INFER_ROS_WS``); its libraries must be on
``LD_LIBRARY_PATH`` before Python starts, so child processes get it from ``child_env``.
No rclpy here.
"""
import os
import sys
import tempfile
from pathlib import Path

from tx2_infer_core.assets import cache_dir

FASTDDS_PROFILE = 'fastdds_large_images.xml'
PROFILE_VARIABLE = 'FASTDDS_DEFAULT_PROFILES_FILE'
QOS_FROM_XML = 'RMW_FASTRTPS_USE_QOS_FROM_XML'


def workspace_install() -> Path:
    """Install folder of the dev workspace holding the test-only vision_msgs."""
    ws = os.environ.get('TX2_INFER_ROS_WS')
    return Path(ws) / 'install' if ws else cache_dir() / 'ros_ws' / 'install'


def vision_msgs_prefix():
    """Prefix of the dev-workspace vision_msgs, or None when it is not built."""
    prefix = workspace_install() / 'vision_msgs'
    return prefix if (prefix / 'lib').is_dir() else None


def config_file(name) -> Path:
    """A file of this package's config/ (installed share folder, else the source tree)."""
    try:
        from ament_index_python.packages import get_package_share_directory
        path = Path(get_package_share_directory('tx2_infer_ros')) / 'config' / name
        if path.is_file():
            return path
    except (ImportError, LookupError, ValueError, OSError):
        pass
    return Path(__file__).resolve().parents[1] / 'config' / name


def _prepend(env, key, *paths):
    parts = [str(p) for p in paths] + [p for p in env.get(key, '').split(os.pathsep) if p]
    env[key] = os.pathsep.join(dict.fromkeys(parts))


def is_package_profile(path) -> bool:
    """True for one of this package's Fast DDS profiles (config/fastdds_*.xml)."""
    path = Path(path)
    return path.name.startswith('fastdds_') and path.resolve() == \
        config_file(path.name).resolve()


def use_dds_profile(env, profile='default') -> None:
    """Put ``env`` on a Fast DDS profile: 'default' keeps the user's profile, else ours; a
    file name of config/ picks that one; None leaves Fast DDS defaults. With a profile of this
    package, rmw is told to take the readers' memory policy from it (the XML says why)."""
    if profile is None:
        env.pop(PROFILE_VARIABLE, None)
        env.pop(QOS_FROM_XML, None)
        return
    if profile != 'default' or not env.get(PROFILE_VARIABLE):
        env[PROFILE_VARIABLE] = str(config_file(FASTDDS_PROFILE if profile == 'default'
                                                else profile))
    if is_package_profile(env[PROFILE_VARIABLE]):
        env.setdefault(QOS_FROM_XML, '1')


def child_env(domain_id=None, log_dir=None, base=None, dds_profile='default') -> dict:
    """Env for a ROS child process: loopback-only discovery, a Fast DDS profile
    (``use_dds_profile``), a domain id, a log folder and (when built) the dev-workspace
    vision_msgs."""
    env = dict(os.environ if base is None else base)
    env.pop('_ROS_WHEELS_BOOTSTRAP_COMPLETE', None)  # let the venv recompute its lib path
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['PYTHONUNBUFFERED'] = '1'
    if domain_id is not None:
        env['ROS_DOMAIN_ID'] = str(domain_id)
    env['ROS_LOG_DIR'] = str(log_dir or env.get('ROS_LOG_DIR') or
                             Path(tempfile.gettempdir()) / 'tx2_infer_ros_log')
    use_dds_profile(env, dds_profile)
    env.setdefault('AMENT_PREFIX_PATH', sys.prefix)
    prefix = vision_msgs_prefix()
    if prefix is not None:
        site = prefix / 'lib' / f'python{sys.version_info[0]}.{sys.version_info[1]}' / \
            'site-packages'
        _prepend(env, 'PYTHONPATH', site)
        _prepend(env, 'LD_LIBRARY_PATH', prefix / 'lib')
        _prepend(env, 'AMENT_PREFIX_PATH', prefix)
    return env


def apply_to_this_process(env) -> None:
    """Set the ``ROS_*`` and ``FASTDDS_*`` variables of ``env`` (a ``child_env``) in THIS
    process, for rclpy contexts it creates next; the library paths only work for children."""
    os.environ.update({k: v for k, v in env.items() if k.startswith(('ROS_', 'FASTDDS_'))})


def preload_vision_msgs() -> bool:
    """Make the dev-workspace vision_msgs importable in THIS (already started) process.

    For test processes only: loads its libraries by path (so the Python extension finds them
    without ``LD_LIBRARY_PATH``) and extends ``sys.path``. True if vision_msgs is importable.
    """
    try:
        import vision_msgs.msg  # noqa: F401
        return True
    except ImportError:
        pass
    prefix = vision_msgs_prefix()
    if prefix is None:
        return False
    import ctypes
    for kind in ('generator_c', 'typesupport_c', 'typesupport_introspection_c',
                 'typesupport_fastrtps_c', 'generator_py', 'typesupport_cpp',
                 'typesupport_introspection_cpp', 'typesupport_fastrtps_cpp'):
        ctypes.CDLL(str(prefix / 'lib' / f'libvision_msgs__rosidl_{kind}.so'),
                    mode=ctypes.RTLD_GLOBAL)
    env = child_env(base={})
    sys.path.insert(0, env['PYTHONPATH'].split(os.pathsep)[0])
    _prepend(os.environ, 'AMENT_PREFIX_PATH', prefix, sys.prefix)
    import vision_msgs.msg  # noqa: F401,F811
    return True
