"""FP16 range inputs from files: a folder of images or an .npz of feeds (the CLI's
``--range-inputs``, the node's ``range_images``), for ``Engine.build(..., range_feeds=)``.

- A folder: every image file in it (``int8.frames.IMAGE_SUFFIXES``), sorted by name, each
  preprocessed as the Detector feeds the model (``detect.preprocess``: letterbox or stretch,
  colour order, mean and scale of the model's input format); a batch-N input takes them N at a
  time, the last batch padded with its last image (``detect.stack_batch``).
- An .npz: one array per model input, named after it, in its shape and dtype (one run), or
  with one more leading axis (that many runs, the same count for every input).

``RangeInputs.digest()`` hashes the files' names and bytes (and the input format override):
the plan cache key's part, so new images mean a new plan.
"""
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from tx2_infer_core.errors import InputError


def image_files(folder) -> list:
    """``int8.frames.image_files`` (imported when used: that module loads OpenCV)."""
    from tx2_infer_core.int8.frames import image_files as listed
    return listed(folder)


def source_error(path) -> str:
    """'' when ``path`` is a folder holding images or an .npz file, else the reason."""
    path = Path(path)
    if path.is_dir():
        try:
            files = image_files(path)
        except OSError as exc:
            return f"range inputs folder '{path}': {exc.strerror}"
        return '' if files else f"range inputs folder '{path}' holds no images"
    if not path.exists():
        return f"range inputs '{path}' do not exist (a folder of images or an .npz file)"
    if path.suffix.lower() != '.npz' or not path.is_file():
        return f"range inputs '{path}' are neither a folder of images nor an .npz file"
    return ''


def image_feeds(files, graph, input_format=None) -> list:
    """[{input: tensor}] of image ``files`` preprocessed for ``graph``'s one image input."""
    from tx2_infer_core import detect
    from tx2_infer_core.image_header import read_image
    if len(graph.inputs) != 1:
        raise InputError(f'range images feed one image input; the model takes {graph.inputs}: '
                         'give an .npz of its feeds')
    spec = graph.values[graph.inputs[0]]
    fmt = dict(graph.meta.get('input_format') or {}, **(input_format or {}))
    fmt = detect.resolve_input_format(fmt, spec.shape)
    single = (1,) + tuple(spec.shape[1:])
    tensors = []
    for path in files:
        image = read_image(path)
        try:
            tensor = detect.preprocess(image, single, fmt)[0]
        except InputError as exc:
            raise InputError(f"range images for the model's input '{spec.name}' "
                             f'{tuple(spec.shape)}: {exc}; give an .npz of its feeds') from None
        tensors.append(tensor.astype(spec.dtype, copy=False))
    batch = spec.shape[0]
    return [{spec.name: detect.stack_batch(tensors[k:k + batch], batch)}
            for k in range(0, len(tensors), batch)]


def _load_npz(path) -> dict:
    if not zipfile.is_zipfile(path):
        raise InputError(f"range inputs '{path}' are not an .npz file (numpy.savez: a zip)")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"range inputs '{path}' do not read as an .npz of arrays: {exc}") \
            from None


def npz_feeds(path, graph) -> list:
    """[{input: array}] of an .npz named after ``graph``'s inputs (module doc)."""
    arrays = _load_npz(path)
    if sorted(arrays) != sorted(graph.inputs):
        raise InputError(f"range inputs '{path}' hold arrays {sorted(arrays)}; the model's "
                         f'inputs are {graph.inputs}')
    runs = set()
    for name in graph.inputs:
        spec, array = graph.values[name], arrays[name]
        shape = tuple(spec.shape)
        one = array.shape == shape
        many = array.ndim == len(shape) + 1 and array.shape[1:] == shape and len(array)
        if array.dtype != np.dtype(spec.dtype) or not (one or many):
            raise InputError(f"range inputs '{path}': '{name}' is {array.dtype} "
                             f'{array.shape}; the model takes {spec.dtype} {shape} (or N runs '
                             f'of it: (N,) + {shape})')
        runs.add(None if one else len(array))
    if len(runs) > 1:
        raise InputError(f"range inputs '{path}': the arrays hold different numbers of runs "
                         f'{sorted(runs, key=str)}')
    count = runs.pop()
    if count is None:
        return [arrays]
    return [{name: array[k] for name, array in arrays.items()} for k in range(count)]


class RangeInputs:
    """FP16 range inputs in files: ``path`` a folder of images or an .npz of feeds;
    ``input_format`` (a dict, optional) overrides the model's for the images."""

    def __init__(self, path, input_format=None):
        self.path = Path(path)
        self.input_format = dict(input_format or {})

    def check(self) -> None:
        """Raise ``InputError`` naming the problem when the files cannot be range inputs."""
        reason = source_error(self.path)
        if reason:
            raise InputError(reason)

    def digest(self) -> str:
        """sha256 over the files' names and bytes and the input format override."""
        self.check()
        files = image_files(self.path) if self.path.is_dir() else [self.path]
        digest = hashlib.sha256(b'range-inputs-v1')
        digest.update(json.dumps(self.input_format, sort_keys=True).encode())
        for file in files:
            digest.update(f'{file.name}|{file.stat().st_size}|'.encode())
            digest.update(file.read_bytes())
        return digest.hexdigest()[:24]

    def feeds(self, graph) -> list:
        """The feeds dicts of ``graph`` (built, its input format known)."""
        self.check()
        if self.path.is_dir():
            return image_feeds(image_files(self.path), graph, self.input_format)
        return npz_feeds(self.path, graph)


def range_source(range_feeds):
    """``range_feeds`` as ``Engine.build`` takes them: a path becomes a checked
    ``RangeInputs``; a feeds dict or list (or None) is returned as it is."""
    if isinstance(range_feeds, (str, Path)):
        range_feeds = RangeInputs(range_feeds)
    if isinstance(range_feeds, RangeInputs):
        range_feeds.check()
    return range_feeds


def feeds_of(range_feeds, graph):
    """The feeds dict(s) of ``range_feeds`` (``range_source``'s) for ``graph``."""
    if isinstance(range_feeds, RangeInputs):
        return range_feeds.feeds(graph)
    return range_feeds
