"""GPU tests: skipped with a reason where pycuda or a CUDA device is missing."""
import numpy as np
import pytest

from tx2_infer_core import cuda
from tx2_infer_core.ir import Graph, Node, Value


def pytest_collection_modifyitems(config, items):
    if cuda.available():
        return
    skip = pytest.mark.skip(reason='needs pycuda and a CUDA GPU (none found)')
    for item in items:
        if '/test/cuda/' in str(item.fspath):
            item.add_marker(skip)


def one_node_graph(op, inputs, out_shape, weights=None, attrs=None, extra_inputs=()):
    """A graph of one node: ``inputs`` {name: shape} activations, ``weights`` constants."""
    weights = dict(weights or {})
    values = {n: Value(n, tuple(s), 'float32', 'NCHW' if len(s) == 4 else '')
              for n, s in inputs.items()}
    values['y'] = Value('y', tuple(out_shape), 'float32', 'NCHW' if len(out_shape) == 4 else '')
    names = list(inputs) + list(weights) + list(extra_inputs)
    node = Node(op, 'n0', names, ['y'], dict(attrs or {}))
    return Graph([node], list(inputs), ['y'], values, weights)


def fp16_round(x):
    """float32 values exactly representable in fp16 (what the GPU sees)."""
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def rel_err(out, ref):
    out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
    assert np.isfinite(out).all(), 'non-finite output'
    return float(np.linalg.norm(out - ref) / max(np.linalg.norm(ref), 1e-12))
