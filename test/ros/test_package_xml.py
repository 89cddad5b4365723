"""package.xml lists every runtime dependency of the code (tx2_infer_core, tx2_infer_ros, the
launch file) under a rosdep key, so `rosdep install` on a robot installs them; keys are from a
checked list (an unknown key makes rosdep fail); what has no key is in the README's pip line."""
import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# import name -> rosdep key (checked against rosdistro's rosdep/*.yaml and the ROS packages)
ROSDEP = {'rclpy': 'rclpy', 'ament_index_python': 'ament_index_python',
          'lifecycle_msgs': 'lifecycle_msgs', 'rcl_interfaces': 'rcl_interfaces',
          'sensor_msgs': 'sensor_msgs', 'vision_msgs': 'vision_msgs',
          'diagnostic_msgs': 'diagnostic_msgs', 'launch': 'launch', 'launch_ros': 'launch_ros',
          'numpy': 'python3-numpy', 'cv2': 'python3-opencv', 'tqdm': 'python3-tqdm',
          'std_msgs': 'std_msgs', 'builtin_interfaces': 'builtin_interfaces',
          'geometry_msgs': 'geometry_msgs'}
MESSAGES_OF_MESSAGES = {'std_msgs', 'builtin_interfaces'}  # Header, Time
PIP_ONLY = {'onnx', 'threadpoolctl'}  # no rosdep key
# backend cpu (ort), backend cuda; the INT8 report's plot
OPTIONAL = {'onnxruntime', 'pycuda', 'cuda', 'matplotlib'}


def third_party_imports() -> dict:
    """Top-level module -> a file importing it, over the installed code."""
    files = [*ROOT.glob('tx2_infer_core/**/*.py'), *ROOT.glob('tx2_infer_ros/*.py'),
             ROOT / 'launch' / 'yolo.launch.py']
    found = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split('.')[0]
                if top not in sys.stdlib_module_names and not top.startswith('tx2_infer'):
                    found.setdefault(top, path.relative_to(ROOT))
    return found


def exec_depends() -> set:
    return {e.text for e in ET.parse(ROOT / 'package.xml').getroot().iter('exec_depend')}


def test_every_import_has_a_known_home():
    unknown = {m: f for m, f in third_party_imports().items()
               if m not in set(ROSDEP) | PIP_ONLY | OPTIONAL}
    assert not unknown, f'imports with no rosdep key or pip note: {unknown}'


def test_package_xml_lists_the_rosdep_keys_and_only_known_ones():
    needed = {ROSDEP[m] for m in third_party_imports() if m in ROSDEP} | MESSAGES_OF_MESSAGES
    depends = exec_depends()
    assert needed <= depends, f'missing exec_depend: {sorted(needed - depends)}'
    assert depends <= set(ROSDEP.values()) | MESSAGES_OF_MESSAGES, \
        f'not a checked rosdep key: {sorted(depends - set(ROSDEP.values()))}'


def test_readme_pip_installs_what_has_no_rosdep_key():
    readme = (ROOT / 'README.md').read_text()
    jetson = readme[readme.index('## Jetson'):]
    pip_line = next(line for line in jetson.splitlines() if re.search(r'pip3? install', line))
    assert all(name in pip_line for name in PIP_ONLY), pip_line
