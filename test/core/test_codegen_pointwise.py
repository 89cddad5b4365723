"""The pointwise kernel generator (cuda/codegen_pointwise.py) without a GPU: how each input is
read (full, per-channel, per-pixel, scalar, View), the vector width, an emulation of the
generated kernel's indexing against the numpy reference, and the sources compiling with NVRTC
(sm_62/72/87) and nvcc (sm_90)."""

import numpy as np
import pytest
from rows_emulator import int32_at, put_int32
from unary_cases import device_compilers

from tx2_infer_core.cuda import codegen_pointwise as cg, compile as cc, lower_ops
from tx2_infer_core.cuda.launch import Ref, Slot, row_major
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.ir import Graph, Node, Value
from tx2_infer_core.ops.fused import FusedPointwise, program_text
from tx2_infer_core.passes.pointwise_chains import POINTWISE_OPS

RNG = np.random.default_rng(7)
HARDSWISH_SE = [('Add', ['x0', 3.0], {}), ('Clip', ['t0', 0.0, 6.0], {}),
                ('Mul', ['x0', 't1'], {}), ('Div', ['t2', 6.0], {}), ('Mul', ['t3', 'x1'], {}),
                ('Sigmoid', ['t4'], {})]
WHERE = [('Greater', ['x0', 0.5], {}), ('Where', ['t0', 'x0', 'x1'], {}),
         ('Cast', ['t1'], {'to': 1}), ('Gelu', ['t2'], {'approximate': 'tanh'})]
AFFINE = [('Mul', ['x0', 'x1'], {}), ('Add', ['t0', -0.25], {}),
          ('LeakyRelu', ['t1'], {'alpha': 0.1})]


def nhwc(shape, at=0, pix=None, first=0):
    """An NHWC arena slot (a channel slice of a tensor of ``pix`` channels when given)."""
    n, c, h, w = shape
    pix = pix or c
    return Slot(Ref('arena', at), shape, (h * w * pix, 1, w * pix, pix), True, first)


def flat(shape, at=0, base='arena'):
    return Slot(Ref(base, at), shape, row_major(shape))


def test_every_pointwise_op_has_c_code():
    assert set(POINTWISE_OPS) <= set(cg.C_OPS)


def test_access_patterns_resolved_at_generation():
    shape = (1, 16, 4, 5)
    k = 1
    assert cg.input_access(nhwc(shape), shape, k).mode == 'full'
    assert cg.input_access(flat((1, 16, 1, 1)), shape, k).mode == 'chan'
    assert cg.input_access(flat((16, 1, 1)), shape, k).mode == 'chan'
    assert cg.input_access(nhwc((1, 1, 4, 5)), shape, k) == cg.Access('row', 1, 0)
    assert cg.input_access(flat((1,)), shape, k).mode == 'scalar'
    assert cg.input_access(nhwc(shape, pix=40, first=8), shape, k) == cg.Access('full', 40, 8)
    assert cg.input_access(flat(shape), shape, k).mode == 'view'  # NCHW read into NHWC
    assert cg.input_access(flat((3, 7)), (3, 7), 1) == cg.Access('full', 7, 0)
    assert cg.input_access(flat((7,)), (3, 7), 1).mode == 'chan'
    assert cg.input_access(flat((3, 1)), (3, 7), 1) == cg.Access('row', 1, 0)


def _view_offsets(view, i):
    """tx2_view_offset of common.cuh over an array of logical indices."""
    off, i = np.full_like(i, int(view['offset'])), i.copy()
    for d in range(int(view['ndim']) - 1, -1, -1):
        n = int(view['shape'][d])
        off += (i % n) * int(view['stride'][d])
        i //= n
    return off


def _read_offsets(a, walk, i, pp, c, e):
    """Element offsets the generated code reads for access ``a`` (as ``_load`` writes them)."""
    if walk.flat and a.mode == 'full':
        return i * walk.vec + e
    return {'full': lambda: a.off + pp * a.pix + c + e, 'chan': lambda: a.off + c + e,
            'row': lambda: a.off + pp * a.pix + 0 * e, 'scalar': lambda: a.off + 0 * (i + e),
            'view': lambda: _view_offsets(a.view, i) + 0 * e}[a.mode]()


def emulate(steps, ins, y, memory):
    """Run the generated kernel's indexing on host memory {base: fp16 array} (every thread at
    once) with the numpy program; returns (walk, accesses)."""
    walk, accesses, channels = cg.plan_walk(ins, y)
    n = int(np.prod(y.shape))
    i = np.arange(n // walk.vec)[:, None]
    e = np.arange(walk.vec)[None, :]
    cv = max(channels // walk.vec, 1)
    pp, c = i // cv, (i - (i // cv) * cv) * walk.vec
    values = [_read(memory, s, _read_offsets(a, walk, i, pp, c, e))
              for s, a in zip(ins, accesses)]
    out = np.broadcast_to(FusedPointwise(*values, program=steps), (len(i), walk.vec))
    y_at = _read_offsets(walk.y, walk, i, pp, c, e)
    assert len(np.unique(y_at)) == n, 'every output element written once'
    if y.int32:  # __float2int_rz: toward zero, saturated, NaN 0
        ints = np.nan_to_num(np.trunc(out.astype(np.float64)), nan=0.0)
        put_int32(memory['arena'], y.ref.offset // 2, y_at, np.clip(ints, -2 ** 31, 2 ** 31 - 1))
    else:
        memory['arena'][y.ref.offset // 2 + y_at] = out.astype(np.float16)
    return walk, accesses


def _read(memory, slot, offsets):
    """The FP32 values the kernel reads from ``slot`` at element ``offsets``: FP16, or int32
    (in the arena as ``put_int32`` lays them out, in the weights as int32 bytes)."""
    if not slot.int32:
        return memory[slot.ref.base][slot.ref.offset // 2 + offsets].astype(np.float32)
    if slot.ref.base == 'weights':
        table = np.frombuffer(memory['weight_bytes'], np.int32, offset=slot.ref.offset)
        return table[offsets].astype(np.float32)
    return memory['arena'][int32_at(slot.ref.offset // 2, offsets)].astype(np.float32)


def _logical(slot, memory):
    """The logical (NCHW / row-major) array a slot holds."""
    shape = slot.shape
    idx = np.indices(shape).reshape(len(shape), -1)
    off = slot.channel_off + sum(int(s) * idx[d] for d, s in enumerate(slot.strides))
    return memory[slot.ref.base][slot.ref.offset // 2 + off].reshape(shape).astype(np.float32)


CASES = {
    # name: (program, input slots, output slot, expected (flat, vector width, modes))
    'nhwc_channel_vec8': (HARDSWISH_SE, [nhwc((1, 16, 3, 5)), flat((1, 16, 1, 1), 0, 'weights')],
                          nhwc((1, 16, 3, 5), 4096), (False, 8, ['full', 'chan'])),
    'flat_scalar_input': (AFFINE, [nhwc((2, 8, 3, 3)), nhwc((1, 1, 1, 1), 2048)],
                          nhwc((2, 8, 3, 3), 4096), (True, 8, ['full', 'scalar'])),
    'rowmajor_last_dim_odd': (AFFINE, [flat((2, 5, 7)), flat((7,), 0, 'weights')],
                              flat((2, 5, 7), 4096), (False, 1, ['full', 'chan'])),
    'views_in_and_out': (WHERE, [nhwc((1, 8, 4, 4), 0, 24, 8), nhwc((1, 1, 4, 4), 2048)],
                         nhwc((1, 8, 4, 4), 4096, 16, 8), (False, 8, ['full', 'row'])),
    'half2_channel_offset': (WHERE, [nhwc((1, 6, 2, 3), 0, 10, 2), flat((1,), 0, 'weights')],
                             nhwc((1, 6, 2, 3), 4096), (False, 2, ['full', 'scalar'])),
    'odd_channel_offset': (WHERE, [nhwc((1, 6, 2, 3), 0, 9, 3), flat((1,), 0, 'weights')],
                           nhwc((1, 6, 2, 3), 4096), (False, 1, ['full', 'scalar'])),
    'nchw_input_view': (AFFINE, [flat((1, 4, 3, 2)), flat((1, 4, 1, 1), 0, 'weights')],
                        nhwc((1, 4, 3, 2), 4096), (False, 1, ['view', 'chan'])),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_generated_indexing_matches_the_reference(name):
    steps, ins, y, (is_flat, vec, modes) = CASES[name]
    memory = {b: RNG.standard_normal(8192).astype(np.float16) for b in ('arena', 'weights')}
    want = FusedPointwise(*[_logical(s, memory) for s in ins], program=steps)
    walk, accesses = emulate(steps, ins, y, memory)
    assert (walk.flat, walk.vec, [a.mode for a in accesses]) == (is_flat, vec, modes)
    got = _logical(y, memory)
    np.testing.assert_allclose(got, np.broadcast_to(want, y.shape), rtol=2e-3, atol=2e-3)
    launch = cg.pointwise_launch('n', steps, ins, y)
    source = cc.GENERATED[launch.module]
    assert f'pw_copy<{vec}>' in source and launch.kernel == 'pointwise'
    for k, a in enumerate(accesses):
        if a.mode == 'full' and not walk.flat:
            assert f'p.off{k} + pp * p.pix{k} + c' in source  # what _read_offsets emulates
    assert launch.fields['count'] * vec == np.prod(y.shape)


@pytest.mark.skipif(not device_compilers(), reason='neither NVRTC nor nvcc installed')
@pytest.mark.parametrize('name', sorted(CASES))
def test_generated_sources_compile(name):
    steps, ins, y, _ = CASES[name]
    launch = cg.pointwise_launch('n', steps, ins, y)
    for arch, compiler in device_compilers():
        cubin = cc.compile_cached(launch.module, arch, compiler=compiler)
        assert cubin[:4] == b'\x7fELF', (arch, compiler)


def test_every_op_compiles_in_one_program():
    """One step of each op (the binary ones on x0 and x1), NVRTC sm_62: the C table is valid."""
    steps = []
    for op in POINTWISE_OPS:
        args = {'Where': ['x0', 'x0', 'x1'], 'Clip': ['x0', -1.0, 1.0]}.get(
            op, ['x0', 'x1'] if op in cg.BINARY_C else ['x0'])
        steps.append((op, args, {}))
    steps.append(('Add', [f't{j}' for j in (0, 1)], {}))
    ins = [nhwc((1, 8, 2, 2)), nhwc((1, 8, 2, 2), 1024)]
    launch = cg.pointwise_launch('all', steps, ins, nhwc((1, 8, 2, 2), 2048))
    targets = device_compilers()
    if not targets:
        pytest.skip('neither NVRTC nor nvcc installed')
    arch, compiler = targets[0]
    assert cc.compile_cached(launch.module, arch, compiler=compiler)[:4] == b'\x7fELF'


def test_fused_node_lowers_to_one_generated_launch():
    shape = (1, 16, 4, 4)
    values = {n: Value(n, shape, 'float32', 'NCHW') for n in ('x', 'y')}
    weights = {'s': RNG.standard_normal((1, 16, 1, 1)).astype(np.float32)}
    node = Node('FusedPointwise', 'pw', ['x', 's'], ['y'],
                {'program': program_text(HARDSWISH_SE)})
    conv = Node('Relu', 'r', ['y'], ['z'])
    values['z'] = Value('z', shape, 'float32', 'NCHW')
    graph = Graph([node, conv], ['x'], ['z'], values, weights)
    launches = lower_graph(graph, arch=87).launches
    assert [k.kernel for k in launches] == ['pointwise', 'unary_vec8']
    assert launches[0].module in cc.GENERATED


def test_binary_fast_paths():
    """Same shape, per-channel and scalar operands of one binary op: binary_vec8."""
    y = nhwc((1, 16, 3, 3), 4096)
    same = lower_ops.binary_vec8_launch('n', nhwc((1, 16, 3, 3)), nhwc((1, 16, 3, 3), 2048),
                                        y, 0)
    assert same.kernel == 'binary_vec8' and same.fields['b8'] == same.fields['n8'] == 18
    chan = lower_ops.binary_vec8_launch('n', flat((1, 16, 1, 1), 0, 'weights'),
                                        nhwc((1, 16, 3, 3)), y, 1)
    assert (chan.fields['b8'], chan.fields['swap']) == (2, 1)  # C / 8; a - x: swapped
    assert lower_ops.binary_vec8_launch('n', nhwc((1, 12, 3, 3)), flat((1, 12, 1, 1)),
                                        nhwc((1, 12, 3, 3), 4096), 0) is None  # 12 % 8
    assert lower_ops.binary_vec8_launch('n', nhwc((1, 16, 3, 3), 0, 24, 8),
                                        nhwc((1, 16, 3, 3)), y, 0) is None  # a view


def test_ops_with_a_kernel_code_need_no_table_line(monkeypatch):
    """With the C tables emptied, every elementwise op with a kernel code (ops/traits.py) is
    still generated, through its code and kernels/elementwise.cuh, and the program compiles:
    a new CUDA activation, unary or binary op is fused with no line in codegen_pointwise."""
    monkeypatch.setattr(cg, 'UNARY_C', {})
    monkeypatch.setattr(cg, 'BINARY_C', {})
    coded = [op for op in POINTWISE_OPS if cg.traits.TRAITS[op].code is not None
             if op in cg.traits.TRAITS]
    assert {'Mish', 'Exp', 'PRelu', 'Add'} <= set(coded)
    steps = [(op, ['x0', 'x1'] if cg.traits.TRAITS[op].kind == 'binary' else ['x0'], {})
             for op in coded]
    assert 'tx2_unary(UN_ACT, x0, ActParams{ACT_MISH' in cg.program_body(steps, 2)
    assert 'tx2_binary(BIN_PRELU, x0, x1)' in cg.program_body(steps, 2)
    steps.append(('Add', ['t0', 't1'], {}))
    ins = [nhwc((1, 8, 2, 2)), nhwc((1, 8, 2, 2), 1024)]
    launch = cg.pointwise_launch('coded', steps, ins, nhwc((1, 8, 2, 2), 2048))
    for arch, compiler in device_compilers()[:1] + device_compilers()[-1:]:
        assert cc.compile_cached(launch.module, arch, compiler=compiler)[:4] == b'\x7fELF'
