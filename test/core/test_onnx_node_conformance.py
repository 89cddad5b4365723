"""ONNX node-test conformance of the reference ops, with per-op pass counts and a baseline.

Every single-node case of ``onnx/backend/test/data/node/`` whose op we support is run through
``ops.run_node``. Wheels that ship without that folder get it regenerated once from
``onnx.backend.test.case.node`` (same models and data) into ``~/.cache/tx2_infer``.
A test per op fails when its pass count drops below ``onnx_node_baseline.json``; the table of
pass counts is printed in the terminal summary. Update the baseline with
``python test/core/test_onnx_node_conformance.py --update``.
"""
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tx2_infer_core.ops import run_node, supported_ops

try:
    from tx2_infer_core.onnx_import import node_from_proto
except ImportError:  # pragma: no cover - before the importer existed
    node_from_proto = None

BASELINE = Path(__file__).with_name('onnx_node_baseline.json')
CACHE = Path(os.environ.get('TX2_INFER_CACHE', Path.home() / '.cache' / 'tx2_infer'))
INTERNAL_OPS = {'FusedConv'}
RESULTS = {}


def _write_case(case, folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'model.onnx').write_bytes(case.model.SerializeToString())
    for i, (inputs, outputs) in enumerate(case.data_sets):
        data = folder / f'test_data_set_{i}'
        data.mkdir(exist_ok=True)
        for kind, arrays, protos in (('input', inputs, case.model.graph.input),
                                     ('output', outputs, case.model.graph.output)):
            for j, (array, proto) in enumerate(zip(arrays, protos)):
                if not proto.type.HasField('tensor_type'):
                    continue  # sequences and optionals: no op of ours takes them
                if not isinstance(array, onnx.TensorProto):
                    array = numpy_helper.from_array(np.asarray(array), proto.name)
                (data / f'{kind}_{j}.pb').write_bytes(array.SerializeToString())


def node_data_dir() -> Path:
    """The folder of ONNX node tests: the wheel's, or one regenerated into the cache."""
    shipped = Path(onnx.__file__).parent / 'backend' / 'test' / 'data' / 'node'
    if shipped.is_dir():
        return shipped
    target = CACHE / f'onnx_node_{onnx.__version__}_v2'
    if (target / 'COMPLETE').exists():
        return target
    from onnx.backend.test.case import node as node_cases
    with np.errstate(all='ignore'):
        cases = node_cases.collect_testcases()
    scratch = target.with_name(f'{target.name}.tmp{os.getpid()}')
    for case in cases:
        if len(case.model.graph.node) == 1 and not case.model.functions:
            _write_case(case, scratch / case.name)
    (scratch / 'COMPLETE').write_text(onnx.__version__)
    try:
        scratch.rename(target)  # atomic: a concurrent run sees all of it or none
    except OSError:
        shutil.rmtree(scratch)  # another run finished first
    return target


def collect_cases():
    """Map op type -> list of case folders whose model is one default-domain node."""
    cases = {}
    for folder in sorted(node_data_dir().glob('test_*')):
        model = onnx.load(str(folder / 'model.onnx'))
        nodes = model.graph.node
        if len(nodes) != 1 or model.functions or nodes[0].domain not in ('', 'ai.onnx'):
            continue
        cases.setdefault(nodes[0].op_type, []).append(folder)
    return cases


def load_tensors(folder, kind, protos):
    arrays = {}
    for j, proto in enumerate(protos):
        path = folder / f'{kind}_{j}.pb'
        if not path.exists():
            raise FileNotFoundError(path)
        tensor = onnx.TensorProto()
        tensor.ParseFromString(path.read_bytes())
        arrays[proto.name] = numpy_helper.to_array(tensor)
    return arrays


def _matches(got, want):
    got = np.asarray(got)
    if got.dtype != want.dtype or got.shape != want.shape:
        return False
    if want.dtype.kind in 'fc':
        return bool(np.allclose(got, want, rtol=1e-4, atol=1e-5, equal_nan=True))
    return bool(np.array_equal(got, want))


def run_case(folder) -> bool:
    """True when every data set of the case gives the expected outputs."""
    model = onnx.load(str(folder / 'model.onnx'))
    graph, proto = model.graph, model.graph.node[0]
    node = node_from_proto(proto)
    for data in sorted(folder.glob('test_data_set_*')):
        feeds = load_tensors(data, 'input', graph.input)
        expected = load_tensors(data, 'output', graph.output)
        with np.errstate(all='ignore'):
            outputs = run_node(node, [feeds[name] if name else None for name in proto.input])
        got = dict(zip(proto.output, outputs))
        if not all(_matches(got.get(name), want) for name, want in expected.items()):
            return False
    return True


def pass_count(folders):
    """(passed, total, failed case names) for a list of case folders."""
    failed = []
    for folder in folders:
        try:
            ok = run_case(folder)
        except Exception:  # noqa: BLE001 - any error is a failed case, counted not raised
            ok = False
        if not ok:
            failed.append(folder.name)
    return len(folders) - len(failed), len(folders), failed


@pytest.fixture(scope='module')
def node_cases(request):
    """The case index, and a terminal-summary table of the results of this module."""
    request.config.pluginmanager.register(_SummaryPlugin(), 'tx2_onnx_node_summary')
    return collect_cases()


class _SummaryPlugin:
    def pytest_terminal_summary(self, terminalreporter):
        if not RESULTS:
            return
        write = terminalreporter.write_line
        terminalreporter.section('ONNX node conformance (pass / total per op)')
        baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
        cells = [f'{op:<22}{p:>4}/{t:<4}{"  +" if p > baseline.get(op, 0) else "   "}'
                 for op, (p, t, _) in sorted(RESULTS.items())]
        for i in range(0, len(cells), 3):
            write('  '.join(cells[i:i + 3]))
        passed = sum(p for p, _, _ in RESULTS.values())
        write(f'total: {passed}/{sum(t for _, t, _ in RESULTS.values())} cases '
              f'over {len(RESULTS)} op types (+ = above baseline)')


@pytest.mark.parametrize('op', [op for op in supported_ops() if op not in INTERNAL_OPS])
def test_op_conformance(op, node_cases):
    """Pass count of ``op`` over its ONNX node tests never drops below the baseline."""
    if node_from_proto is None:
        pytest.skip('tx2_infer_core.onnx_import.node_from_proto not available')
    passed, total, failed = pass_count(node_cases.get(op, []))
    RESULTS[op] = (passed, total, failed)
    floor = json.loads(BASELINE.read_text()).get(op, 0) if BASELINE.exists() else 0
    assert passed >= floor, f'{op}: {passed}/{total} passed, baseline {floor}; failed {failed}'


def main(argv):
    """Print per-op counts and failing cases; with --update, rewrite the baseline."""
    cases = collect_cases()
    counts = {}
    for op in supported_ops():
        if op in cases:
            passed, total, failed = pass_count(cases[op])
            counts[op] = passed
            print(f'{op:<22}{passed:>4}/{total:<4} {" ".join(failed)}')
    if '--update' in argv:
        BASELINE.write_text(json.dumps(counts, indent=1, sort_keys=True) + '\n')
        print(f'wrote {BASELINE}')


if __name__ == '__main__':
    main(sys.argv[1:])
