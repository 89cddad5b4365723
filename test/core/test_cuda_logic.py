"""The comparison, logic and selection ops, Mod, Sum, Mean and Trilu on CUDA
(``cuda/lower_logic.py``: one generated pointwise kernel each), without a GPU.

Their C expressions (``codegen_pointwise``), built for the host, against the numpy ops over
pairs of values with zeros, signs, infinities and NaN (and the ONNX Mod edge cases); the
launches and sources of lone nodes (literals for size-1 constants, a saturated Where branch,
Sum and Mean chained past 8 inputs); the FP16 exactness refusals; bools sized as FP16 in the
arena; the sources compiling for sm_62/72/87 (NVRTC) and sm_90 (nvcc). The ONNX node cases and
realistic graphs over the emulated arena are in ``test_cuda_logic_emulated.py``.
"""
import subprocess

import numpy as np
import onnx
import pytest
import test_onnx_node_conformance as cpu
from logic_emulator import COMPARE, LOGIC, LOGIC_OPS
from unary_cases import PRELUDE, build_host, device_compilers, host_compiler, host_program

from tx2_infer_core.cuda import codegen_pointwise as cg, compile as cc, layout
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops import run_node

RNG = np.random.default_rng(41)
TWO_INPUT = [(op, {}) for op in COMPARE + LOGIC] + [('Mod', {'fmod': 0}), ('Mod', {'fmod': 1})]
MAIN2 = '''int main(void) {{
    float x[2];
    while (fread(x, sizeof(float), 2, stdin) == 2) {{
        const float y[] = {{{calls}}};
        fwrite(y, sizeof(float), {count}, stdout);
    }}
    return 0;
}}
'''


def host_program2(programs, folder):
    """``run(a, b) -> [len(programs), len(a)]``: each two-input program as ``pw_f`` computes
    it, built for the host (as ``unary_cases.host_program`` for one input)."""
    bodies = [cg.program_body(steps, 2).replace('pw_f', f'pw_{k}')
              for k, steps in enumerate(programs)]
    calls = ', '.join(f'pw_{k}(x[0], x[1])' for k in range(len(programs)))
    exe = build_host(folder, 'pw2', PRELUDE + '\n'.join(bodies)
                     + MAIN2.format(calls=calls, count=len(programs)))

    def run(a, b):
        pairs = np.stack([a, b], axis=1).astype(np.float32)
        out = subprocess.run([str(exe)], input=pairs.tobytes(), check=True,
                             capture_output=True).stdout
        return np.frombuffer(out, np.float32).reshape(len(a), len(programs)).T
    return run


def pair_probe():
    """(a, b) over every pair of signed values, zeros, infinities and NaN, with the ONNX Mod
    edge cases (fmod 0, float32)."""
    marks = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, -3.0, 7.25, 1e-3, 5e4,
                      np.inf, -np.inf, np.nan], np.float32)
    a, b = (m.reshape(-1) for m in np.meshgrid(marks, marks))
    folder = {f.name: f for f in cpu.collect_cases().get('Mod', [])}
    edge = folder.get('test_mod_float_edge_cases_fmod_0_float32')
    if edge is not None:
        model = onnx.load(str(edge / 'model.onnx'))
        data = cpu.load_tensors(edge / 'test_data_set_0', 'input', model.graph.input)
        extra = [np.asarray(v, np.float32) for v in data.values()]
        a, b = np.concatenate([a, extra[0]]), np.concatenate([b, extra[1]])
    grid = RNG.uniform(-9, 9, (2, 400)).astype(np.float32)
    return np.concatenate([a, grid[0]]), np.concatenate([b, grid[1]])


@pytest.mark.skipif(host_compiler() is None, reason='no host C++ compiler')
def test_two_input_c_expressions_match_numpy_on_the_host(tmp_path):
    a, b = pair_probe()
    got = host_program2([[(op, ['x0', 'x1'], attrs)] for op, attrs in TWO_INPUT], tmp_path)(a, b)
    for (op, attrs), out in zip(TWO_INPUT, got):
        with np.errstate(all='ignore'):
            want = run_node(Node(op, 'n', ['a', 'b'], ['y'], attrs), [a, b])[0]
        np.testing.assert_allclose(out, want.astype(np.float32), rtol=1e-6, atol=0,
                                   err_msg=f'{op} {attrs}')


@pytest.mark.skipif(host_compiler() is None, reason='no host C++ compiler')
def test_is_inf_attributes_on_the_host(tmp_path):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -3.0, 65504.0], np.float32)
    cases = [{}, {'detect_negative': 0}, {'detect_positive': 0},
             {'detect_negative': 0, 'detect_positive': 0}]
    got = host_program([[('IsInf', ['x0'], attrs)] for attrs in cases], tmp_path)(x)
    for attrs, out in zip(cases, got):
        want = run_node(Node('IsInf', 'n', ['x'], ['y'], attrs), [x])[0]
        np.testing.assert_array_equal(out, want.astype(np.float32), err_msg=str(attrs))


def one_node(op, inputs, out_shape, attrs=None, weights=None, dtypes=None, out_dtype=None):
    """One ``op`` node over activations ``inputs`` {name: shape} and constants ``weights``."""
    dtypes, weights = dict(dtypes or {}), dict(weights or {})
    values = {n: Value(n, tuple(s), dtypes.get(n, 'float32'), '') for n, s in inputs.items()}
    out_dtype = out_dtype or ('bool' if op in COMPARE + LOGIC + ('Not', 'IsNaN', 'IsInf')
                              else 'float32')
    values['y'] = Value('y', tuple(out_shape), out_dtype, '')
    node = Node(op, 'n0', list(inputs) + list(weights), ['y'], dict(attrs or {}))
    return Graph([node], list(inputs), ['y'], values, weights)


def _sources(graph, arch=90):
    launches = lower_graph(graph, arch=arch).launches
    assert {k.kernel for k in launches} == {'pointwise'}
    return launches, [cc.GENERATED[k.module] for k in launches]


@pytest.mark.parametrize('op', LOGIC_OPS)
def test_lone_node_is_one_generated_launch(op):
    shape = (2, 5, 16)
    n_in = {'Not': 1, 'IsNaN': 1, 'IsInf': 1, 'Where': 3, 'Sum': 3, 'Mean': 3}.get(op, 2)
    inputs = {f'i{k}': shape for k in range(n_in)}
    dtypes = {'i0': 'bool'} if op == 'Where' else {
        n: 'bool' for n in inputs} if op in LOGIC + ('Not',) else {}
    graph = one_node(op, inputs, shape, dtypes=dtypes)
    for arch in (62, 90):
        launches, (source,) = _sources(graph, arch)
        assert [k for k in launches[0].fields if k.startswith('in')] == list(
            f'in{k}' for k in range(n_in))
    sums = {'Sum': '(x0 + x1)', 'Mean': '(t1 / 3.000000000e+00f)'}
    expr = sums[op] if op in sums else cg.step_expression(op, [f'x{k}' for k in range(n_in)],
                                                          {})
    assert expr in source


def test_size_one_constants_are_float32_literals():
    """x > 0.1 compares with float32 0.1 (not its FP16 rounding); ids == 5000 stays exact."""
    graph = one_node('Greater', {'x': (4, 8)}, (4, 8),
                     weights={'t': np.array([0.1], np.float32)})
    launches, (source,) = _sources(graph)
    assert cg.float_literal(0.1) in source and 'in1' not in launches[0].fields
    graph = one_node('Equal', {'x': (4, 8)}, (4, 8), weights={'t': np.array(5000)})
    assert '5.000000000e+03f' in _sources(graph)[1][0]


def test_where_branch_saturates_to_fp16_range():
    """An attention mask's finfo(float32).min becomes -65504, not -inf; inf stays inf."""
    for value, literal in ((-3.4e38, '-6.550400000e+04f'), (1e5, '6.550400000e+04f'),
                           (np.inf, 'TX2_INF'), (-7.5, '-7.500000000e+00f')):
        graph = one_node('Where', {'c': (1, 1, 8, 8), 'x': (1, 4, 8, 8)}, (1, 4, 8, 8),
                         weights={'m': np.array(value, np.float32)}, dtypes={'c': 'bool'})
        assert literal in _sources(graph)[1][0]


def test_sum_and_mean_past_eight_inputs_chain_launches():
    inputs = {f'i{k}': (3, 16) for k in range(11)}
    launches, sources = _sources(one_node('Mean', inputs, (3, 16)))
    reads = [len([f for f in k.fields if f.startswith('in')]) for k in launches]
    assert reads == [8, 4]  # then y and the last three
    assert '/ 1.100000000e+01f' in sources[1] and '/' not in sources[0].split('pw_f')[1][:400]
    one = one_node('Sum', {'a': (3, 16)}, (3, 16))
    assert 'const float t0 = x0;' in _sources(one)[1][0]


def test_trilu_is_where_over_a_constant_mask():
    graph = one_node('Trilu', {'x': (2, 5, 7)}, (2, 5, 7), {'upper': 0},
                     weights={'k': np.array(1, np.int64)})
    lowered = lower_graph(graph, arch=90)
    (launch,) = lowered.launches
    assert launch.kernel == 'pointwise' and launch.fields['in1'].base == 'weights'
    start = launch.fields['in1'].offset
    mask = lowered.weight_image()[start:start + 70].view(np.float16).reshape(5, 7)
    np.testing.assert_array_equal(mask, np.tril(np.ones((5, 7)), 1))
    everything = one_node('Trilu', {'x': (5, 7)}, (5, 7), weights={'k': np.array(-9)})
    assert [k.kernel for k in lower_graph(everything, arch=90).launches] == ['unary']


REFUSALS = {
    'Mod of integers': (one_node('Mod', {'a': (4,), 'b': (4,)}, (4,), dtypes={
        'a': 'int32', 'b': 'int32'}, out_dtype='int32'), "'a' is int32: float data only"),
    'int64 graph input': (one_node('Equal', {'a': (4,)}, (4,), weights={'b': np.array(3)},
                                   dtypes={'a': 'int64'}),
                          "'a' is an int64 graph input: its values past 2048"),
    'big integer constant': (one_node('Less', {'a': (4,)}, (4,), weights={
        'b': np.array([1, 2, 3, 4096])}), "constant 'b' holds 4096"),
    'big integer branch': (one_node('Where', {'c': (4,)}, (4,), weights={
        'x': np.arange(4), 'z': np.array(9999)}, dtypes={'c': 'bool'}, out_dtype='int64'),
        "constant 'z' = 9999"),
    'int8 activation': (one_node('Greater', {'a': (4,), 'b': (4,)}, (4,),
                                 dtypes={'a': 'int8'}), "'a' is int8: 1-byte integers"),
    'IsNaN of integers': (one_node('IsNaN', {'a': (4,)}, (4,), weights={}, dtypes={
        'a': 'int32'}), "'a' is int32: float data only"),
    'Trilu k at run time': (one_node('Trilu', {'x': (4, 4), 'k': ()}, (4, 4),
                                     dtypes={'k': 'int64'}), 'k must be a constant'),
    'Trilu of a vector': (one_node('Trilu', {'x': (4,)}, (4,)), 'input of rank 1'),
}


@pytest.mark.parametrize('name', sorted(REFUSALS))
def test_refusals_name_the_node_and_the_reason(name):
    graph, reason = REFUSALS[name]
    op = graph.nodes[0].op
    with pytest.raises(UnsupportedOpError, match=f"'{op}' at node 'n0'") as err:
        lower_graph(graph, arch=90)
    assert reason in str(err.value)


def test_bools_and_wide_integers_are_sized_as_fp16():
    """A bool or int64 activation holds FP16 values: 2 bytes each (1 would overflow)."""
    values = {n: Value(n, (4, 8), d, '') for n, d in
              (('b', 'bool'), ('i', 'int64'), ('q', 'int8'), ('f', 'float32'))}
    g = layout.fp16_graph(Graph([], ['f'], ['b'], values, {}))
    assert {n: v.dtype for n, v in g.values.items()} == {
        'b': 'float16', 'i': 'float16', 'q': 'int8', 'f': 'float16'}


@pytest.mark.skipif(not device_compilers(), reason='neither NVRTC nor nvcc installed')
def test_generated_sources_compile_for_every_target():
    """One program with a step of every op here (IsInf with its attributes, Mod both ways)."""
    steps = [(op, ['x0', 'x1'], {}) for op in COMPARE + LOGIC]
    steps += [('Not', ['x0'], {}), ('IsNaN', ['x0'], {}), ('IsInf', ['x1'], {}),
              ('IsInf', ['x0'], {'detect_negative': 0}), ('Mod', ['x0', 'x1'], {'fmod': 0}),
              ('Mod', ['x0', 'x1'], {'fmod': 1}), ('Where', ['t0', 'x0', -6.5504e4], {})]
    steps += [('Add', [f't{j}', f't{j + 1}'], {}) for j in range(0, len(steps) - 1)]
    graph = one_node('Trilu', {'x': (2, 24, 24)}, (2, 24, 24), weights={'k': np.array(2)})
    shape = (1, 8, 4, 4)
    from test_codegen_pointwise import nhwc
    launches = [cg.pointwise_launch('all', steps, [nhwc(shape), nhwc(shape, 1024)],
                                    nhwc(shape, 2048))]
    launches += lower_graph(graph, arch=90).launches
    launches += lower_graph(one_node('Mean', {f'i{k}': (3, 5) for k in range(10)}, (3, 5)),
                            arch=90).launches
    for launch in launches:
        for arch, compiler in device_compilers():
            assert cc.compile_cached(launch.module, arch, compiler=compiler)[:4] == b'\x7fELF'
