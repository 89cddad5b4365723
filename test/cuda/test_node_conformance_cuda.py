"""ONNX node-test conformance of the CUDA backend, within FP16 tolerances, per op.

Every case of ``onnx/backend/test/data/node`` (see ``test/core/test_onnx_node_conformance.py``)
whose op the backend lowers (an ONNX op with a ``cuda`` lowering in ``ops/traits.py``) runs
as a one-node graph on the GPU. The first input, and every float input of the binary, MatMul
and Concat ops, is an activation; the other inputs are constants (the backend takes shapes,
axes, weights and pads as constants). Cases with a non-float input or output are counted as
not applicable: the arena holds FP16 only.
A case passes when ``|got - want| <= 1e-2 * |want| + 5e-3 * max(1, max |want|)``.

Each case ends as one of:
- ``pass``;
- ``refused``: ``prepare`` raised ``UnsupportedOpError`` naming the op, the node and the
  attribute value it does not implement (never a wrong answer);
- ``fp16``: the inputs are not representable in FP16 (the ONNX reference itself, run on the
  inputs rounded to FP16, misses the expected output) and the GPU matches that reference on
  the rounded inputs: the arena's precision, not a kernel, decides (e.g. softmax of 10000..3);
  or an expected output is past FP16's range (ReduceProd of 1..12 is 4.8e8) and the GPU holds
  the infinity of its sign there, every other value matching;
- ``fail``: a wrong answer or an error. The test fails on any.
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
from tx2_infer_core.ops import traits

CPU_TEST = Path(__file__).resolve().parents[1] / 'core' / 'test_onnx_node_conformance.py'
# ops whose float inputs are all activations (the others take constants after the first)
ACTIVATION_OPS = set(traits.codes(traits.BINARY)) | {'MatMul', 'Concat'}
CUDA_OPS = sorted(set(traits.cuda_ops()) & set(traits.onnx_ops()))
FP16_MAX = 65504.0


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
    if np.isinf(got[~np.isinf(want)]).any():
        return False
    if np.isinf(want).any():
        return bool(np.array_equal(got[np.isinf(want)], want[np.isinf(want)])) and \
            close(np.where(np.isinf(want), 0, got), np.where(np.isinf(want), 0, want))
    scale = max(1.0, float(np.nanmax(np.abs(want)))) if want.size else 1.0
    nan = np.isnan(want)
    if not np.array_equal(nan, np.isnan(got)):
        return False
    return bool(np.all(np.abs(got - want)[~nan] <= 1e-2 * np.abs(want)[~nan] + 5e-3 * scale))


def _past_fp16_range(expected, out) -> bool:
    """True when every output matches but where the expected value is past FP16's range
    (65504), and there the GPU holds the infinity of its sign (the FP16 arena saturates)."""
    for name, want in expected.items():
        want, got = np.asarray(want, np.float64), np.asarray(out[name], np.float64)
        if got.shape != want.shape:
            return False
        big = np.abs(want) > FP16_MAX
        if not np.array_equal(got[big], np.copysign(np.inf, want[big])) or \
                not close(np.where(big, 0, got), np.where(big, 0, want)):
            return False
    return any((np.abs(np.asarray(w, np.float64)) > FP16_MAX).any() for w in expected.values())


def _fp16_limited(folder, feeds, expected, out) -> bool:
    """True when rounding the float inputs to FP16 alone changes the ONNX reference's answer
    beyond the tolerance, and ``out`` matches the reference on those rounded inputs; or when
    an expected value is past FP16's range and the GPU saturates it (``_past_fp16_range``)."""
    if _past_fp16_range(expected, out):
        return True
    from onnx.reference import ReferenceEvaluator
    rounded = {k: v.astype(np.float16).astype(v.dtype) if v.dtype.kind == 'f' else v
               for k, v in ((k, np.asarray(v)) for k, v in feeds.items())}
    try:
        with np.errstate(all='ignore'):
            ref = ReferenceEvaluator(str(folder / 'model.onnx')).run(None, rounded)
    except Exception:  # noqa: BLE001 - no reference answer: not provably an FP16 limit
        return False
    ref = dict(zip(expected, ref))
    return (not all(close(ref[n], want) for n, want in expected.items())
            and all(close(out[n], ref[n]) for n in expected))


def run_case(cpu, folder):
    """(status, detail): status 'pass', 'fail', 'refused', 'fp16' or 'n/a' for one case
    folder (every data set must pass); detail is the refusal message."""
    from tx2_infer_core.backends.cuda_backend import CudaBackend
    from tx2_infer_core.errors import UnsupportedOpError
    model = onnx.load(str(folder / 'model.onnx'))
    proto = model.graph.node[0]
    status = 'n/a'
    for data in sorted(folder.glob('test_data_set_*')):
        try:
            feeds = cpu.load_tensors(data, 'input', model.graph.input)
            expected = cpu.load_tensors(data, 'output', model.graph.output)
        except FileNotFoundError:  # optional or non-tensor inputs
            return 'n/a', ''
        made = case_graph(cpu.node_from_proto(proto), proto, feeds, expected)
        if made is None:
            return 'n/a', ''
        graph, acts = made
        backend = CudaBackend(use_graph=False)
        try:
            backend.prepare(graph)
            out = backend.run(acts)
        except UnsupportedOpError as err:
            return 'refused', str(err).split('; supported:')[0]
        finally:
            backend.close()
        if not all(close(out[name], want) for name, want in expected.items()):
            if not _fp16_limited(folder, feeds, expected, out):
                return 'fail', ''
            status = 'fp16'
        elif status != 'fp16':
            status = 'pass'
    return status, ''


def conformance(ops=None, progress=False) -> dict:
    """{op: {'pass', 'refused', 'fp16', 'fail', 'n/a': counts, 'failed': [case names],
    'refused_cases': {case: message}, 'fp16_cases': [case names]}} over lowered ops."""
    from tx2_infer_core.cuda.runtime import DeviceContext
    cpu = _cpu_module()
    cases = cpu.collect_cases()
    keeper = DeviceContext(0)  # keeps the primary context alive between the cases
    keeper.drv.Context.pop()
    results = {}
    try:
        for op in sorted(ops or CUDA_OPS):
            if op not in cases:
                continue
            counts = {'pass': 0, 'refused': 0, 'fp16': 0, 'fail': 0, 'n/a': 0, 'failed': [],
                      'refused_cases': {}, 'fp16_cases': []}
            for folder in cases[op]:
                try:
                    status, detail = run_case(cpu, folder)
                except Exception as err:  # noqa: BLE001 - an error is a failed case, counted
                    status, detail = 'fail', f'{type(err).__name__}: {err}'
                counts[status] += 1
                if status == 'fail':
                    counts['failed'].append(folder.name + (f' ({detail})' if detail else ''))
                elif status == 'refused':
                    counts['refused_cases'][folder.name] = detail
                elif status == 'fp16':
                    counts['fp16_cases'].append(folder.name)
            results[op] = counts
            if progress:  # a partial log still says something if the run is cut short
                print(op, {k: counts[k] for k in ('pass', 'refused', 'fp16', 'fail')},
                      flush=True)
    finally:
        keeper.close()
    return results


def print_table(results):
    """One line per op: pass / refused / fp16 / fail, then the cases that are not passes."""
    print(f"{'op':<22}{'pass':>5}{'refused':>8}{'fp16':>5}{'fail':>5}{'n/a':>5}")
    for op, c in sorted(results.items()):
        print(f"{op:<22}{c['pass']:>5}{c['refused']:>8}{c['fp16']:>5}{c['fail']:>5}"
              f"{c['n/a']:>5}")
        for name in c['failed']:
            print(f'    FAIL {name}')
        for name, why in c['refused_cases'].items():
            print(f'    refused {name}: {why}')
        for name in c['fp16_cases']:
            print(f'    fp16 {name}: inputs not representable in FP16')
    total = {k: sum(c[k] for c in results.values()) for k in ('pass', 'refused', 'fp16', 'fail')}
    print(f"total over {len(results)} op types: {total['pass']} passed, {total['refused']} "
          f"refused, {total['fp16']} fp16-limited, {total['fail']} failed "
          f"(of {sum(total.values())} float cases)")


@pytest.fixture(scope='module')
def results():
    return conformance()


def test_cuda_conformance_has_passes(results):
    print_table(results)
    assert sum(c['pass'] for c in results.values()) > 0
    for op in ('Relu', 'Add', 'Conv', 'MaxPool', 'Softmax'):
        if op in results:
            assert results[op]['pass'] > 0, f'{op}: no ONNX node case passes on the GPU'


def wrong_answers(results) -> dict:
    """{op: failed case names} of the ops with a wrong answer or an error."""
    return {op: c['failed'] for op, c in results.items() if c['fail']}


def test_cuda_conformance_no_wrong_answers(results):
    """The acceptance: every case passes or is refused at prepare time, never wrong."""
    assert not wrong_answers(results), f'wrong answers or errors: {wrong_answers(results)}'


if __name__ == '__main__':
    import platform
    res = conformance(progress=True)
    print_table(res)
    if len(sys.argv) > 1:
        from tx2_infer_core.cuda.runtime import DeviceContext
        ctx = DeviceContext(0)
        info = {'device': ctx.name, 'driver': ctx.drv.get_driver_version(),
                'onnx': onnx.__version__, 'python': platform.python_version()}
        ctx.drv.Context.pop()
        ctx.close()
        Path(sys.argv[1]).write_text(json.dumps({'info': info, 'ops': res}, indent=1))
    sys.exit(1 if wrong_answers(res) else 0)
