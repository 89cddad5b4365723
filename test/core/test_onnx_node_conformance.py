"""ONNX node-test conformance of the reference ops, against a baseline of case names.

Every single-node case of ``onnx/backend/test/data/node/`` whose op is an ONNX op of
``ops/traits.py`` is run through ``ops.run_node``; the If, Loop and Scan cases, and those of ops
the importer rewrites (Attention, RotaryEmbedding: ``newer_ops.py``), through the importer and
``reference.execute``. Wheels that ship without that folder get it regenerated once from
``onnx.backend.test.case.node`` (same models and data) into ``~/.cache/tx2_infer``.

``onnx_node_baseline.json`` lists, per op, the cases that pass and the known failures, each
with a short reason. A test per op fails naming every listed passing case that fails now
(a regression) and every failing case the baseline does not list; a newly passing case is only
reported (terminal summary), with the per-op table. Rewrite the baseline (reasons of the known
failures kept, new ones filled from the error) with
``python test/core/test_onnx_node_conformance.py --update``.
"""
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tx2_infer_core import reference
from tx2_infer_core.ops import run_node, traits

try:
    from tx2_infer_core.onnx_import import graph_from_model, node_from_proto
except ImportError:  # pragma: no cover - before the importer existed
    node_from_proto = None

BASELINE = Path(__file__).with_name('onnx_node_baseline.json')
CACHE = Path(os.environ.get('TX2_INFER_CACHE', Path.home() / '.cache' / 'tx2_infer'))
RESULTS = {}  # op -> (passed case names, {failed case: reason})
# ops with graph attributes: their cases run through the importer (control_flow.py resolves
# them at build time) and the reference interpreter, not run_node
CONTROL_FLOW = ('If', 'Loop', 'Scan')
IMPORTED = CONTROL_FLOW + ('Attention', 'RotaryEmbedding')   # rewritten away at import


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


def _mismatch(name, got, want):
    """Why output ``name`` is not ``want`` ('' when it matches)."""
    if got is None:
        return f'output {name!r} missing'
    got = np.asarray(got)
    if got.dtype != want.dtype or got.shape != want.shape:
        return f'output {name!r} is {got.dtype}{list(got.shape)}, want {want.dtype}' \
               f'{list(want.shape)}'
    if want.dtype.kind in 'fc':
        if np.allclose(got, want, rtol=1e-4, atol=1e-5, equal_nan=True):
            return ''
        with np.errstate(all='ignore'):
            err = float(np.nanmax(np.abs(got.astype(np.float64) - want))) if want.size else 0
        return f'output {name!r} off by up to {err:.3g}'
    return '' if np.array_equal(got, want) else f'output {name!r} differs'


def _node_runner(proto):
    """feeds -> {output: array} of one node through ``run_node``."""
    node = node_from_proto(proto)
    return lambda feeds: dict(zip(proto.output, run_node(
        node, [feeds[name] if name else None for name in proto.input])))


def _import_runner(model, name):
    """feeds -> {output: array} of the imported model (control flow resolved at import)."""
    graph = graph_from_model(model, source=name)
    return lambda feeds: reference.execute(graph, feeds)


def run_case(folder) -> str:
    """'' when every data set of the case gives the expected outputs, else why not."""
    model = onnx.load(str(folder / 'model.onnx'))
    graph, proto = model.graph, model.graph.node[0]
    run = _import_runner(model, folder.name) if proto.op_type in IMPORTED else \
        _node_runner(proto)
    for data in sorted(folder.glob('test_data_set_*')):
        feeds = load_tensors(data, 'input', graph.input)
        expected = load_tensors(data, 'output', graph.output)
        with np.errstate(all='ignore'):
            got = run(feeds)
        for name, want in expected.items():
            why = _mismatch(name, got.get(name), want)
            if why:
                return why
    return ''


def _reason(exc) -> str:
    """A one-line reason for an error: an UnsupportedOpError's detail, else its type and
    message."""
    text = str(exc).split('; supported:')[0].splitlines()[0]
    m = re.match(r"unsupported operator '\w+' at node '[^']*' \((.*)\)$", text)
    if m:
        return f'not implemented: {m[1]}'
    if isinstance(exc, FileNotFoundError):
        return 'an input is not a tensor (optional or sequence)'
    return f'{type(exc).__name__}: {text}'[:120]


def run_cases(folders) -> tuple:
    """([passing case names], {failing case name: reason}) over case folders."""
    passed, failed = [], {}
    for folder in folders:
        try:
            why = run_case(folder)
        except Exception as exc:  # noqa: BLE001 - any error is a failed case, with its reason
            why = _reason(exc)
        if why:
            failed[folder.name] = why
        else:
            passed.append(folder.name)
    return passed, failed


def load_baseline() -> dict:
    """{op: {'pass': [case], 'fail': {case: reason}}}."""
    return json.loads(BASELINE.read_text()) if BASELINE.exists() else {}


def compare(op, passed, failed, baseline) -> tuple:
    """(regressed cases, failing cases not in the baseline, newly passing cases) of ``op``."""
    entry = baseline.get(op, {})
    regressed = sorted(c for c in entry.get('pass', []) if c in failed)
    unknown = sorted(c for c in failed if c not in entry.get('fail', {}) and c not in regressed)
    newly = sorted(c for c in passed if c not in entry.get('pass', []))
    return regressed, unknown, newly


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
        baseline = load_baseline()
        cells, newly = [], []
        for op, (passed, failed) in sorted(RESULTS.items()):
            new = compare(op, passed, failed, baseline)[2]
            newly += new
            cells.append(f'{op:<22}{len(passed):>4}/{len(passed) + len(failed):<4}'
                         f'{"  +" if new else "   "}')
        for i in range(0, len(cells), 3):
            write('  '.join(cells[i:i + 3]))
        passed = sum(len(p) for p, _ in RESULTS.values())
        total = passed + sum(len(f) for _, f in RESULTS.values())
        write(f'total: {passed}/{total} cases over {len(RESULTS)} op types '
              f'(+ = cases passing that the baseline does not list)')
        if newly:
            write(f'newly passing (run --update to record): {" ".join(newly)}')


def conformance_ops() -> list:
    """The ONNX ops of ``ops/traits.py``, the control-flow ops and those rewritten at import."""
    return list(traits.onnx_ops()) + [op for op in IMPORTED if op not in traits.onnx_ops()]


@pytest.mark.parametrize('op', conformance_ops())
def test_op_conformance(op, node_cases):
    """Every case the baseline lists as passing still passes; every failing case is a known
    failure of the baseline."""
    if node_from_proto is None:
        pytest.skip('tx2_infer_core.onnx_import.node_from_proto not available')
    passed, failed = run_cases(node_cases.get(op, []))
    RESULTS[op] = (passed, failed)
    regressed, unknown, _ = compare(op, passed, failed, load_baseline())
    assert not regressed, f'{op}: cases that passed now fail: ' + \
        '; '.join(f'{c} ({failed[c]})' for c in regressed)
    assert not unknown, f'{op}: failing cases not in the baseline: ' + \
        '; '.join(f'{c} ({failed[c]})' for c in unknown)


def main(argv):
    """Print per-op counts and failing cases; with --update, rewrite the baseline."""
    cases, old, new = collect_cases(), load_baseline(), {}
    for op in conformance_ops():
        if op not in cases:
            continue
        passed, failed = run_cases(cases[op])
        known = old.get(op, {}).get('fail', {})
        new[op] = {'pass': passed}
        if failed:
            new[op]['fail'] = {c: known.get(c, why) for c, why in failed.items()}
        print(f'{op:<22}{len(passed):>4}/{len(cases[op]):<4} {" ".join(failed)}')
    if '--update' in argv:
        BASELINE.write_text(json.dumps(new, indent=1, sort_keys=True) + '\n')
        print(f'wrote {BASELINE}')


if __name__ == '__main__':
    main(sys.argv[1:])
