"""Load launch/yolo.launch.py without ``launch``/``launch_ros`` (not installable here): small
fakes that record what each action, event handler and substitution was made with are put in
``sys.modules`` while the file loads and runs."""
import importlib.util
import sys
import types
from pathlib import Path

LAUNCH_FILE = Path(__file__).resolve().parents[2] / 'launch' / 'yolo.launch.py'
SHARE = '/fake/share/tx2_infer_ros'


class Fake:
    """Any launch object: keeps its constructor's arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(Fake):
    def perform(self, context):
        return context.launch_configurations[self.args[0]]


class Context:
    """The launch context: argument values and the launch's environment."""

    def __init__(self, launch_configurations, environment):
        self.launch_configurations = launch_configurations
        self.environment = environment


def _classes(*names):
    return {name: type(name, (Fake,), {}) for name in names}


MODULES = {
    'launch': _classes('LaunchDescription'),
    'launch.actions': _classes('DeclareLaunchArgument', 'EmitEvent', 'OpaqueFunction',
                               'RegisterEventHandler'),
    'launch.events': {'matches_action': lambda action: ('matches', action)},
    'launch.substitutions': {'LaunchConfiguration': LaunchConfiguration},
    'launch_ros': {},
    'launch_ros.actions': _classes('LifecycleNode'),
    'launch_ros.event_handlers': _classes('OnStateTransition'),
    'launch_ros.events': {},
    'launch_ros.events.lifecycle': _classes('ChangeState'),
    'launch_ros.parameter_descriptions': _classes('ParameterValue'),
    'ament_index_python': {},
    'ament_index_python.packages': {'get_package_share_directory': lambda pkg: SHARE},
}


def load(monkeypatch):
    """The launch file as a module, with the fakes in ``sys.modules`` (monkeypatch undoes)."""
    for name, attrs in MODULES.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    spec = importlib.util.spec_from_file_location('yolo_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(module, environment=None, **arguments) -> list:
    """Run the launch description as ``ros2 launch`` would, up to its actions: argument
    defaults overridden by ``arguments``, then every OpaqueFunction called -> all actions."""
    entities = module.generate_launch_description().args[0]
    values = {a.args[0]: a.kwargs['default_value'] for a in entities
              if type(a).__name__ == 'DeclareLaunchArgument'}
    values.update(arguments)
    context = Context(values, dict(environment or {}))
    actions = []
    for entity in entities:
        if type(entity).__name__ == 'OpaqueFunction':
            actions += entity.kwargs['function'](context)
        else:
            actions.append(entity)
    return actions


def of_type(actions, name) -> list:
    """The actions whose (fake) class is ``name``."""
    return [a for a in actions if type(a).__name__ == name]
