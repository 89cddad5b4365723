"""Darknet ``.cfg`` parser: ``[section]`` headers and ``key=value`` lines, with line numbers.

``parse_cfg(path)`` returns the ``[net]`` section and the list of layer sections. A ``Section``
reads its options with typed getters whose errors name the file, line, section and key; what the
sections mean is ``darknet.py``'s business.
"""
import math
from pathlib import Path

from tx2_infer_core.errors import ModelFormatError


def _finite(text) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f'{text} is not finite')
    return value


def _list(convert):
    """A converter of a non-empty comma-separated list of ``convert`` values."""
    def parse(text):
        items = [convert(t) for t in text.split(',') if t.strip()]
        if not items:
            raise ValueError('empty list')
        return items
    return parse


class Section:
    """One ``[kind]`` section of a cfg: options with the line each came from."""

    def __init__(self, kind, path, line):
        self.kind, self.path, self.line = kind, path, line
        self.options, self.lines = {}, {}
        self.index = None

    def __str__(self):
        where = f'layer {self.index} ' if self.index is not None else ''
        return f'{where}[{self.kind}] at {self.path}:{self.line}'

    def error(self, key, problem):
        """A ModelFormatError naming the file, line, section and key."""
        line = self.lines.get(key, self.line)
        what = f", key '{key}'" if key else ''
        return ModelFormatError(f'{self.path}:{line}: {problem} (in {self}{what})')

    def _get(self, key, default, convert, kind):
        if key not in self.options:
            if default is None:
                raise self.error(None, f"missing key '{key}'")
            return default
        try:
            return convert(self.options[key])
        except ValueError:
            raise self.error(key, f"bad value '{self.options[key]}' for '{key}' "
                                  f'(expected {kind})') from None

    def int(self, key, default=None):
        return self._get(key, default, int, 'an integer')

    def float(self, key, default=None):
        return self._get(key, default, _finite, 'a finite number')

    def str(self, key, default=None):
        return self._get(key, default, str, 'text')

    def ints(self, key):
        """A non-empty comma-separated list of integers (required)."""
        return self._get(key, None, _list(int), 'comma-separated integers')

    def floats(self, key):
        """A non-empty comma-separated list of finite numbers (required)."""
        return self._get(key, None, _list(_finite), 'comma-separated finite numbers')


def parse_cfg(path):
    """Parse a Darknet cfg into its [net] section and the list of layer sections."""
    path = Path(path)
    if not path.is_file():
        raise ModelFormatError(f'Darknet cfg file not found: {path}')
    sections = []
    for number, raw in enumerate(path.read_text(errors='replace').splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in '#;':
            continue
        if line.startswith('[') and line.endswith(']'):
            sections.append(Section(line[1:-1].strip().lower(), path, number))
        elif '=' in line and sections:
            key, value = (t.strip() for t in line.split('=', 1))
            sections[-1].options[key], sections[-1].lines[key] = value, number
        else:
            raise ModelFormatError(f"{path}:{number}: expected '[section]' or 'key=value' "
                                   f"after a section, got '{line}'")
    if not sections or sections[0].kind not in ('net', 'network'):
        raise ModelFormatError(f'{path}: the first section must be [net]')
    return sections[0], sections[1:]
