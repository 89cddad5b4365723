"""The package's import structure, read from the source with ``ast``: no import circle (counting
imports inside functions too, which hide one from Python but not from a reader), no private
name used across modules, and the core library free of ROS and of pycuda at import time."""
import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ('tx2_infer_core', 'tx2_infer_ros')


def module_files() -> dict:
    """{dotted module name: path} of every module of PACKAGES."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob('*.py')):
            parts = list(path.relative_to(ROOT).with_suffix('').parts)
            if parts[-1] == '__init__':
                parts.pop()
            found['.'.join(parts)] = path
    return found


MODULES = module_files()


def _base(module, path, node) -> str:
    """The module an ``ImportFrom`` reads from, with relative imports resolved."""
    if not node.level:
        return node.module
    package = module.split('.') if path.name == '__init__.py' else module.split('.')[:-1]
    package = package[:len(package) - (node.level - 1)]
    return '.'.join(package + ([node.module] if node.module else []))


def imports_of(module, path):
    """(imported modules of ours, {local name: module of ours}, [(private name, module)])."""
    targets, bound, private = set(), {}, []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    targets.add(alias.name)
                    bound[alias.asname or alias.name.split('.')[0]] = (
                        alias.name if alias.asname else alias.name.split('.')[0])
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, path, node)
            if base not in MODULES:
                continue
            for alias in node.names:
                full = f'{base}.{alias.name}'
                if full in MODULES:              # a submodule
                    targets.add(full)
                    bound[alias.asname or alias.name] = full
                else:
                    targets.add(base)
                    if alias.name.startswith('_') and not alias.name.startswith('__'):
                        private.append((alias.name, base))
    return targets - {module}, bound, private


def _dotted(node):
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    return [node.id] + names[::-1] if isinstance(node, ast.Name) else None


def private_attributes(path, bound) -> list:
    """``mod._name`` uses in ``path`` where ``mod`` is one of our modules imported there."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith('_') or \
                node.attr.startswith('__'):
            continue
        names = _dotted(node.value)
        if names and names[0] in bound:
            target = '.'.join([bound[names[0]]] + names[1:])
            if target in MODULES:
                found.append((node.attr, target))
    return found


def import_graph() -> dict:
    return {m: imports_of(m, p)[0] for m, p in MODULES.items()}


def find_cycle(graph):
    """One import circle as [m1, m2, ..., m1], or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 'open':
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = 'done'
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_checker_sees_every_module_and_hidden_imports():
    assert len(MODULES) > 40 and 'tx2_infer_core.detector' in MODULES
    graph = import_graph()
    assert 'tx2_infer_core.detect' in graph['tx2_infer_core.detector']
    assert 'tx2_infer_core.heads' in graph['tx2_infer_core.detect']      # relative import
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set()}) is None


def test_a_function_local_import_counts(tmp_path, monkeypatch):
    """The circle issue 8 found (detect <-> cuda.pipeline) hid in a function-local import."""
    src = tmp_path / 'detect.py'
    src.write_text('def detect_image():\n    from tx2_infer_core.cuda.pipeline import x\n')
    monkeypatch.setitem(MODULES, 'tx2_infer_core.detect', src)
    graph = import_graph()
    assert find_cycle(graph) == ['tx2_infer_core.cuda.pipeline', 'tx2_infer_core.detect',
                                 'tx2_infer_core.cuda.pipeline']


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, 'import circle: ' + ' -> '.join(cycle)


def test_no_private_name_used_across_modules():
    uses = []
    for module, path in MODULES.items():
        _, bound, private = imports_of(module, path)
        uses += [f'{module}: {name} of {owner}' for name, owner in
                 private + private_attributes(path, bound) if owner != module]
    assert not uses, 'private names used across modules:\n' + '\n'.join(sorted(set(uses)))


def test_private_name_checker_finds_both_forms(tmp_path, monkeypatch):
    src = tmp_path / 'lower_x.py'
    src.write_text('from .lower_ops import _pads\nfrom tx2_infer_core.cuda import runtime\n'
                   'def f():\n    return runtime._driver_api()\n')
    _, bound, private = imports_of('tx2_infer_core.cuda.lower_x', src)
    assert private == [('_pads', 'tx2_infer_core.cuda.lower_ops')]
    assert private_attributes(src, bound) == [('_driver_api', 'tx2_infer_core.cuda.runtime')]


def test_the_core_library_imports_neither_rclpy_nor_pycuda():
    """In a fresh interpreter: ``import tx2_infer_core`` and then every core module."""
    core = [m for m in MODULES if m.startswith('tx2_infer_core')]
    code = ('import importlib, sys\nimport tx2_infer_core\n'
            'first = sorted(m for m in sys.modules if m.split(".")[0] in ("rclpy", "pycuda"))\n'
            f'for name in {core!r}:\n    importlib.import_module(name)\n'
            'print(first, sorted({m.split(".")[0] for m in sys.modules} & {"rclpy", "pycuda"}))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[] []', result.stdout
