"""The ONNX node cases as the GPU conformance test builds them, for the tests that check a
CUDA lowering without a GPU: ``GPU`` is ``test/cuda/test_node_conformance_cuda.py`` (its
``case_graph``, ``close`` and ``ACTIVATION_OPS``), ``data_sets`` the graphs of one case."""
import importlib.util
from pathlib import Path

import onnx

import test_onnx_node_conformance as cpu

GPU_TEST = Path(__file__).resolve().parents[1] / 'cuda' / 'test_node_conformance_cuda.py'


def _gpu_conformance():
    """The GPU conformance test, loaded by path (both test folders have a conftest)."""
    spec = importlib.util.spec_from_file_location('tx2_cuda_node_cases', GPU_TEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GPU = _gpu_conformance()


def data_sets(folder, build=None):
    """Each test data set of the node case ``folder``: (graph, activation feeds, expected
    outputs), the graph and feeds as ``build(node, proto, feeds, expected)`` makes them
    (default ``GPU.case_graph``; None, None where it makes none: not a float case)."""
    model = onnx.load(str(folder / 'model.onnx'))
    proto = model.graph.node[0]
    for data in sorted(folder.glob('test_data_set_*')):
        inputs = cpu.load_tensors(data, 'input', model.graph.input)
        expected = cpu.load_tensors(data, 'output', model.graph.output)
        made = (build or GPU.case_graph)(cpu.node_from_proto(proto), proto, inputs, expected)
        graph, acts = made or (None, None)
        yield graph, acts, expected
