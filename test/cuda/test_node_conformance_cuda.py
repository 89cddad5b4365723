"""ONNX node-test conformance of the CUDA backend, within FP16 tolerances, per op.

Every case of ``onnx/backend/test/data/node`` (see ``test/core/test_onnx_node_conformance.py``)
whose op the backend lowers runs as a one-node graph on the GPU. The first input, and every
float input of the elementwise, MatMul and Concat ops, is an activation; the other inputs are
constants (the backend takes shapes, axes, weights and pads as constants). Cases with a
non-float input or output are counted as not applicable: the arena holds FP16 only.
A case passes when ``|got - want| <= 1e-2 * |want| + 5e-3 * max(1, max |want|)``.
``python test/cuda/test_node_conformance_cuda.py OUT.json`` prints the table and saves it.
"""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from tx2_infer_core.ir import Graph, Value

CPU_TEST = Path(__file__).resolve().parents[1] / 'core' / 'test_onnx_node_conformance.py'
ACTIVATION_OPS = {'Add', 'Sub', 'Mul', 'Div', 'Max', 'Min', 'Pow', 'MatMul', 'Concat'}
SKIP_OPS = {'FusedConv'}


def _cpu_module():
    spec = importlib.util.spec_from_file_location('tx2_onnx_node_cases', CPU_TEST)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _value(name, array):
    shape = tuple(int(d) for d in array.shape)
    return Value(name, shape, 'float32', 'NCHW' if len(shape) == 4 else '')


def case_graph(node, proto, feeds, expected):
    """(one-node Graph, activation feeds) or None when the case is not float-only."""
    first = feeds.get(proto.input[0]) if proto.input else None
    if first is None or np.asarray(first).dtype.kind != 'f' or \
            any(np.asarray(a).dtype.kind != 'f' for a in expected.values()):
        return None
    if len(expected) != len([o for o in proto.output if o]):
        return None
    acts, weights, values = {}, {}, {}
    for i, name in enumerate(proto.input):
        if not name:
            continue
        arr = np.asarray(feeds[name])
        if arr.dtype.kind == 'f' and (i == 0 or node.op in ACTIVATION_OPS):
            acts[name] = arr.astype(np.float32)
            values[name] = _value(name, arr)
        else:
            weights[name] = arr
    if not acts:
        return None
    for name, arr in expected.items():
        values[name] = _value(name, arr)
    graph = Graph([node], list(acts), [o for o in proto.output if o], values, weights)
    return graph, acts


def close(got, want) -> bool:
    """FP16 tolerance (see the module doc); shapes must agree, NaN matches NaN."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return False
    if np.isinf(want).any() or np.isinf(got).any():
        return bool(np.array_equal(got[np.isinf(want)], want[np.isinf(want)])) and \
            close(np.where(np.isinf(want), 0, got), np.where(np.isinf(want), 0, want))
    scale = max(1.0, float(np.nanmax(np.abs(want)))) if want.size else 1.0
    nan = np.isnan(want)
    if not np.array_equal(nan, np.isnan(got)):
        return False
    return bool(np.all(np.abs(got - want)[~nan] <= 1e-2 * np.abs(want)[~nan] + 5e-3 * scale))


def run_case(cpu, folder):
    """'pass', 'fail' or 'n/a' for one case folder (every data set must pass)."""
    from tx2_infer_core.backends.cuda_backend import CudaBackend
    model = onnx.load(str(folder / 'model.onnx'))
    proto = model.graph.node[0]
    status = 'n/a'
    for data in sorted(folder.glob('test_data_set_*')):
        try:
            feeds = cpu._load_tensors(data, 'input', model.graph.input)
            expected = cpu._load_tensors(data, 'output', model.graph.output)
        except FileNotFoundError:  # optional or non-tensor inputs
            return 'n/a'
        made = case_graph(cpu.node_from_proto(proto), proto, feeds, expected)
        if made is None:
            return 'n/a'
        graph, acts = made
        backend = CudaBackend(use_graph=False)
        try:
            backend.prepare(graph)
            out = backend.run(acts)
        finally:
            backend.close()
        if not all(close(out[name], want) for name, want in expected.items()):
            return 'fail'
        status = 'pass'
    return status


def conformance(ops=None) -> dict:
    """{op: {'pass': n, 'fail': n, 'n/a': n, 'failed': [case names]}} over lowered ops."""
    from tx2_infer_core.backends.cuda_backend import LOWERINGS
    from tx2_infer_core.cuda.runtime import DeviceContext
    cpu = _cpu_module()
    cases = cpu.collect_cases()
    keeper = DeviceContext(0)  # keeps the primary context alive between the cases
    keeper.drv.Context.pop()
    results = {}
    try:
        for op in sorted(ops or LOWERINGS):
            if op in SKIP_OPS or op not in cases:
                continue
            counts = {'pass': 0, 'fail': 0, 'n/a': 0, 'failed': []}
            for folder in cases[op]:
                try:
                    status = run_case(cpu, folder)
                except Exception:  # noqa: BLE001 - an error is a failed case, counted
                    status = 'fail'
                counts[status] += 1
                if status == 'fail':
                    counts['failed'].append(folder.name)
            results[op] = counts
    finally:
        keeper.close()
    return results


def print_table(results):
    for op, c in sorted(results.items()):
        print(f"{op:<22}{c['pass']:>4}/{c['pass'] + c['fail']:<4} n/a {c['n/a']:<3} "
              f"{' '.join(c['failed'][:6])}")
    passed = sum(c['pass'] for c in results.values())
    total = passed + sum(c['fail'] for c in results.values())
    print(f'total {passed}/{total} float cases over {len(results)} op types')


@pytest.fixture(scope='module')
def results():
    return conformance()


def test_cuda_conformance_has_passes(results):
    print_table(results)
    assert sum(c['pass'] for c in results.values()) > 0
    for op in ('Relu', 'Add', 'Conv', 'MaxPool', 'Softmax'):
        if op in results:
            assert results[op]['pass'] > 0, f'{op}: no ONNX node case passes on the GPU'


if __name__ == '__main__':
    import platform
    res = conformance()
    print_table(res)
    if len(sys.argv) > 1:
        from tx2_infer_core.cuda.runtime import DeviceContext
        ctx = DeviceContext(0)
        info = {'device': ctx.name, 'driver': ctx.drv.get_driver_version(),
                'onnx': onnx.__version__, 'python': platform.python_version()}
        ctx.drv.Context.pop()
        ctx.close()
        Path(sys.argv[1]).write_text(json.dumps({'info': info, 'ops': res}, indent=1))
