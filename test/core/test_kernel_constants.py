"""The Python mirrors of ``kernels/*.cu(h)`` agree with the C sources (no GPU, no compiler).

The sources are parsed: every ``#define NAME <integer>``, every ``struct`` and every
``extern "C"`` kernel's argument list. Checked: the op codes of ``ops/traits.py``
(``ACT_<OP>``, ``UN_<OP>``, ``BIN_<OP>``, both ways), the other mirrored numbers, and the
field names, types and byte offsets of every parameter record of ``cuda/params.py``,
``cuda/lower_conv.py`` and ``cuda/pipeline.py`` against its C struct or argument list.
"""
import re
from pathlib import Path

import numpy as np
import pytest

from tx2_infer_core.cuda import (lower_axis, lower_conv, lower_int8, lower_linear_norm,
                                 lower_nn, lower_norm, lower_ops, lower_recurrent,
                                 lower_sampling, params, pipeline, rows, squeeze_excite)
from tx2_infer_core.cuda.lower_attention import ATTN
from tx2_infer_core.cuda.lower_gather import GATHER
from tx2_infer_core.cuda.lower_index import GATHER_ND
from tx2_infer_core.cuda.lower_scatter import REDUCTIONS as SCATTER_REDUCTIONS, SCATTER
from tx2_infer_core.cuda.lower_topk import TOPK_ARGS
from tx2_infer_core.ops import traits
from tx2_infer_core.ops.fused import GELU_FORMS

KERNELS = Path(__file__).resolve().parents[2] / 'kernels'
SCALARS = {'int': ('i4', 4), 'float': ('f4', 4), 'long long': ('i8', 8),
           'unsigned char': ('u1', 1), 'unsigned int': ('u4', 4),
           'unsigned long long': ('u8', 8), 'half': ('f2', 2)}
PTR = ('u8', 8)  # a device pointer, as params.PTR
DECL = re.compile(r'^(?:const\s+)?(unsigned char|unsigned int|unsigned long long|long long|\w+)'
                  r'\s+(.+)$')
KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+'
                    r'(?:(?:__launch_bounds__|__cluster_dims__)\([^)]*\)\s+)*'
                    r'([\w#]+)\s*\(([^)]*)\)')


def _source(path) -> str:
    text = path.read_text()
    text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    return re.sub(r'//[^\n]*', '', text).replace('\\\n', ' ')


SOURCES = {p.name: _source(p) for p in sorted(KERNELS.glob('*.cu*'))}
ALL = '\n'.join(SOURCES.values())


def defines(text=ALL) -> dict:
    """{macro: int} of every ``#define NAME <integer>``."""
    return {m[1]: int(m[2]) for m in re.finditer(r'#define\s+(\w+)\s+(-?\d+)\s*$', text, re.M)}


DEFINES = defines()


def _declarators(decl, structs):
    """[(name, kind, size, align, count)] of one C declaration (``int a, b[3]``)."""
    m = DECL.match(decl.strip())
    ctype, rest = m[1], m[2]
    out = []
    for part in rest.split(','):
        part = part.strip()
        dims = re.search(r'\[(.+)\]', part)
        count = eval(dims[1], {}, DEFINES) if dims else 1  # noqa: S307 - our own macros
        bare = re.sub(r'\[.*\]', '', part)
        name = bare.replace('*', '').strip()
        if '*' in bare:
            out.append((name, PTR[0], PTR[1], PTR[1], count))
        elif ctype in SCALARS:
            kind, size = SCALARS[ctype]
            out.append((name, kind, size, size, count))
        else:
            out.append((name, structs[ctype], None, None, count))
    return out


def _layout(decls, structs, inline=()) -> tuple:
    """(flat fields [(path, kind, offset, count)], size, align) of C declarations laid out in
    order with C alignment; a struct member (or a by-value struct argument named in ``inline``)
    is flattened as ``member.field`` (or ``field``)."""
    fields, off, align = [], 0, 1
    for decl in decls:
        for name, kind, size, al, count in _declarators(decl, structs):
            if isinstance(kind, tuple):  # a struct: (fields, size, align)
                sub, size, al = kind
            off = -(-off // al) * al
            if isinstance(kind, tuple):
                prefix = '' if name in inline else f'{name}.'
                fields += [(prefix + p, k, off + o, c) for p, k, o, c in sub]
            else:
                fields.append((name, kind, off, count))
            off += size * count
            align = max(align, al)
    return fields, -(-off // align) * align, align


def c_structs() -> dict:
    """{struct name: (flat fields, size, align)} of every plain-data struct of the kernels
    (template helpers such as conv_mma.cu's ``PickType`` are left out)."""
    structs = {}
    for m in re.finditer(r'struct\s+(\w+)\s*\{([^{}]*)\};', ALL):
        decls = [d for d in m[2].split(';') if d.strip()]
        if all(DECL.match(d.strip()) and d.split()[0] != 'using' for d in decls):
            structs[m[1]] = _layout(decls, structs)
    return structs


STRUCTS = c_structs()


def c_kernel_args() -> dict:
    """{kernel name: flat fields of its argument list} (a struct argument ``p`` inlined)."""
    return {m[1]: _layout([a for a in m[2].split(',') if a.strip()], STRUCTS, ('p',))[0]
            for m in KERNEL.finditer(ALL)}


def py_fields(dtype, prefix='') -> list:
    """The flat fields [(path, kind, offset, count)] of a numpy record dtype."""
    out = []
    for name in dtype.names:
        sub, off = dtype.fields[name][:2]
        if sub.fields:
            out += [(p, k, off + o, c) for p, k, o, c in py_fields(sub, f'{prefix}{name}.')]
        elif sub.subdtype:
            base, shape = sub.subdtype
            out.append((prefix + name, base.str[1:], off, int(np.prod(shape))))
        else:
            out.append((prefix + name, sub.str[1:], off, 1))
    return out


STRUCT_RECORDS = {'ActParams': params.ACT, 'View': params.VIEW, 'ConvParams': params.CONV,
                  'PoolParams': params.POOL, 'ResizeParams': params.RESIZE,
                  'GemmParams': params.GEMM, 'PreParams': pipeline.PRE,
                  'PostParams': pipeline.POST, 'RowsParams': pipeline.ROWS,
                  'DarknetParams': pipeline.DARKNET, 'NmsParams': pipeline.NMS,
                  'ConvI8Params': params.CONV_I8, 'QuantParams': params.QUANT,
                  'LstmParams': lower_recurrent.LSTM, 'AttnParams': ATTN,
                  'RecurrentParams': lower_recurrent.RECURRENT, 'RowWalk': rows.ROW_WALK,
                  'GridParams': lower_sampling.GRID, 'AffineParams': lower_sampling.AFFINE,
                  'RoiParams': lower_sampling.ROI}
KERNEL_RECORDS = {
    'unary': params.UNARY_ARGS, 'binary': params.BINARY_ARGS,
    'binary_flat2': params.BINARY_FLAT2, 'global_reduce': params.GLOBAL_REDUCE,
    'unary_vec8': lower_ops.UNARY_VEC8, 'binary_vec8': lower_ops.BINARY_VEC8,
    'gather': GATHER, 'scatter': SCATTER,
    'to_arena_f16': lower_ops.IO_CONVERT, 'from_arena_f32': lower_ops.IO_CONVERT,
    'to_arena_i32': lower_ops.IO_CONVERT, 'from_arena_i32': lower_ops.IO_CONVERT,
    'copy_i32': params.UNARY_ARGS,
    'pool2d': params.POOL, 'resize2d': params.RESIZE, 'matmul': params.GEMM,
    'softmax': lower_axis.SOFTMAX_ARGS, 'layernorm': params.LAYERNORM,
    'conv_simt': params.CONV, 'conv_simt_v4': params.CONV, 'conv_simt_h2': params.CONV,
    'conv_simt_h2_v8': params.CONV, 'conv_wmma': params.CONV,
    'conv_wmma_v8': params.CONV, 'conv_direct': params.CONV,
    'convt_simt': params.CONV, 'convt_simt_v4': params.CONV, 'convt_wmma': params.CONV,
    'convt_wmma_v8': params.CONV, 'depthwise': params.CONV, 'depthwise_h2': params.CONV,
    'depthwise_v8': params.CONV,
    'conv_mma_##BM##x##BN': lower_conv.CONV_MMA,
    'conv_mma_gather_##BM##x##BN': lower_conv.CONV_MMA,
    'conv_mma_##BM##x##BN##_cl': lower_conv.CONV_MMA,
    'conv_mma_gather_##BM##x##BN##_cl': lower_conv.CONV_MMA,
    'conv_mma_##BM##x##BN##_ln': lower_linear_norm.CONV_MMA_LN,
    'conv_mma_pool_##BM##x##BN': lower_conv.CONV_MMA_POOL,
    'conv_mma_gather_pool_##BM##x##BN': lower_conv.CONV_MMA_POOL,
    'conv_mma_pool_##BM##x##BN##_cl': lower_conv.CONV_MMA_POOL,
    'conv_mma_gather_pool_##BM##x##BN##_cl': lower_conv.CONV_MMA_POOL,
    'squeeze_excite': params.SQUEEZE_EXCITE,
    'conv_splitk_reduce': lower_conv.CONV_MMA,
    'sm_ids': np.dtype([('out', params.PTR), ('spin', '<i8')]),          # cuda/green.py
    'sm_clock': np.dtype([('out', params.PTR), ('cycles', '<i8')]),
    'preprocess_letterbox': pipeline.PRE, 'yolo_decode_rows': pipeline.ROWS,
    'yolo_decode_darknet': pipeline.DARKNET, 'nms_greedy': pipeline.NMS,
    'conv_dp4a': params.CONV_I8, 'conv_dp4a_w': params.CONV_I8,
    'conv_i8_mma_##BM##x##BN': lower_int8.CONV_I8_MMA,
    'conv_i8_mma_##BM##x##BN##_cl': lower_int8.CONV_I8_MMA,
    'conv_i8_splitk_reduce': lower_int8.CONV_I8_MMA,
    'quantize_nhwc': params.QUANT, 'dequantize_nhwc': params.QUANT,
    'lstm_recurrent': lower_recurrent.LSTM,
    'rnn_recurrent': lower_recurrent.RECURRENT, 'gru_recurrent': lower_recurrent.RECURRENT,
    'attention_mma': ATTN, 'attention_simt': ATTN,
    'norm_rows': lower_norm.NORM_ARGS, 'lrn': lower_norm.LRN_ARGS,
    'arg_rows': lower_axis.ARG_ARGS, 'scan_rows': lower_axis.SCAN_ARGS,
    'topk_rows': TOPK_ARGS, 'gather_nd': GATHER_ND,
    'grid_sample': lower_sampling.GRID, 'grid_sample_v8': lower_sampling.GRID,
    'affine_grid': lower_sampling.AFFINE, 'roi_align': lower_sampling.ROI,
    'roi_align_v8': lower_sampling.ROI}


# The epilogue-only activations of cuda/params.py (GELU of a GEMM, PRelu of a convolution: no
# traits activation line of their own).
EPILOGUE_MACROS = {'Gelu': 'ACT_GELU', 'GeluTanh': 'ACT_GELU_TANH', 'PRelu': 'ACT_PRELU'}


def code_mismatches(found: dict) -> list:
    """What differs between the traits' (and the epilogue activations') kernel codes and the
    ``#define``s ``found``."""
    problems = []
    for t in traits.TRAITS.values():
        if t.code is not None and found.get(t.macro) != t.code:
            problems.append(f'{t.name}: traits code {t.code}, {t.macro} = {found.get(t.macro)}')
    for name, code in params.EPILOGUE_ACTIVATIONS.items():
        macro = EPILOGUE_MACROS.get(name)
        if found.get(macro) != code:
            problems.append(f'{name}: epilogue code {code}, {macro} = {found.get(macro)}')
    known = {t.macro for t in traits.TRAITS.values() if t.code is not None}
    known |= set(EPILOGUE_MACROS.values())
    for macro in found:
        if re.match(r'(ACT|UN|BIN)_', macro) and macro not in known | {'ACT_NONE', 'UN_ACT'}:
            problems.append(f'{macro} = {found[macro]} has no op in ops/traits.py')
    if found.get('ACT_NONE') != params.ACTIVATIONS[''] or found.get('UN_ACT') != 0:
        problems.append('ACT_NONE and UN_ACT must be 0 (the copy: lower_ops passes op=0)')
    return problems


def test_op_codes_match_traits():
    assert code_mismatches(DEFINES) == []


def test_a_wrong_code_is_caught():
    """The check above can fail: one code off, or a kernel code without a traits line."""
    wrong = dict(DEFINES, ACT_LEAKYRELU=DEFINES['ACT_LEAKYRELU'] + 1)
    assert any('LeakyRelu' in p for p in code_mismatches(wrong))
    assert any('UN_CBRT' in p for p in code_mismatches(dict(DEFINES, UN_CBRT=42)))
    no_gelu = {k: v for k, v in DEFINES.items() if k != 'UN_GELU'}
    assert any('Gelu' in p for p in code_mismatches(no_gelu))
    swapped = dict(DEFINES, ACT_GELU=DEFINES['ACT_GELU_TANH'], ACT_GELU_TANH=DEFINES['ACT_GELU'])
    assert len([p for p in code_mismatches(swapped) if 'epilogue' in p]) == 2
    assert any('PRelu' in p for p in code_mismatches(dict(DEFINES, ACT_PRELU=12)))
    assert any('Selu' in p for p in code_mismatches(dict(DEFINES, ACT_SELU=14)))


def test_epilogue_activation_codes():
    """ACT_GELU and ACT_GELU_TANH: FusedLinear's GELU names; ACT_PRELU: a fused PRelu (its
    slope per channel); one ActParams code space with the traits activations' (every code a
    bit of a -DTX2_ACTS mask, an int)."""
    assert set(params.EPILOGUE_ACTIVATIONS) == set(EPILOGUE_MACROS) == set(GELU_FORMS) | {
        'PRelu'}
    assert (DEFINES['ACT_GELU'], DEFINES['ACT_GELU_TANH'], DEFINES['ACT_PRELU']) == (10, 11, 17)
    codes = list(params.ACT_CODES.values())
    assert len(codes) == len(set(codes)) and max(codes) < 31


def test_codes_are_distinct_per_family():
    for kind in (traits.ACTIVATION, traits.UNARY, traits.BINARY):
        codes = list(traits.codes(kind).values())
        assert len(codes) == len(set(codes)), kind


def test_other_mirrored_numbers():
    assert DEFINES['TX2_MAX_DIMS'] == params.MAX_DIMS
    assert DEFINES['MMA_BK'] == lower_conv.MMA_BK
    assert DEFINES['I8_MMA_BK'] == lower_int8.I8_MMA_BK
    assert DEFINES['I8_BM'] == DEFINES['I8_BN'] == lower_int8.DP4A_TILE
    assert DEFINES['TX2_MAX_CLASSES'] == pipeline.MAX_CLASSES
    assert DEFINES['TX2_MAX_CAND'] == pipeline.MAX_CAND
    assert DEFINES['TX2_MAX_ANCHORS'] == pipeline.MAX_ANCHORS
    assert DEFINES['TX2_NMS_THREADS'] == pipeline.NMS_THREADS
    assert STRUCTS['Cand'][1] == pipeline.CAND_BYTES
    assert DEFINES['LSTM_MAX_HIDDEN'] == lower_recurrent.MAX_HIDDEN
    assert DEFINES['REC_MAX_HIDDEN'] == lower_recurrent.MAX_HIDDEN
    assert 32 * lower_nn.GAP_ROWS <= 1024 and lower_nn.GAP_ROWS <= DEFINES['GAP_MAX_ROWS']
    assert 32 * lower_nn.GAP_ROWS <= DEFINES['GAP_THREADS']  # __launch_bounds__
    assert DEFINES['GAP_BLOCKS_PER_SM'] == lower_nn.GAP_BLOCKS_PER_SM
    assert (DEFINES['SE_MAX_C'], DEFINES['SE_MAX_C1']) == (squeeze_excite.MAX_C,
                                                           squeeze_excite.MAX_HIDDEN)
    for name, code in params.REDUCE_OPS.items():
        assert DEFINES[f"RED_{name[len('Reduce'):].upper()}"] == code
    for name, code in lower_norm.NORM_MODES.items():
        assert DEFINES[f'NORM_{name.upper()}'] == code
    for name, code in SCATTER_REDUCTIONS.items():
        assert DEFINES[f'SCATTER_{name.upper()}'] == code
    for name, code in lower_axis.ARG_MODES.items():
        assert DEFINES[f"ARG_{name.replace('Arg', '').upper()}"] == code
    assert DEFINES['TX2_TEAM_MAX'] == rows.TEAM_MAX
    for name, code in params.RESIZE_COORD.items():
        assert DEFINES[f'CT_{name.upper()}'] == code
    for name, code in params.RESIZE_NEAREST.items():
        assert DEFINES[f'NR_{name.upper()}'] == code
    for name, code in {**lower_sampling.GRID_MODES, **lower_sampling.GRID_PADDING}.items():
        assert DEFINES[f"GS_{re.sub('^BI', '', name.upper())}"] == code  # opset 16 names too


def test_conv_mma_tiles_are_built():
    """Every tile the host may pick is instantiated, with the threads the host launches."""
    built = {(int(m[1]), int(m[2])) for m in re.finditer(
        r'^CONV_MMA_KERNEL\((\d+),\s*(\d+),\s*\d+\)', SOURCES['conv_mma.cu'], re.M)}
    assert built == {(bm, bn) for bm, bn, _ in lower_conv.MMA_TILES}
    assert all(threads == bm * bn // 32 for bm, bn, threads in lower_conv.MMA_TILES)
    built_i8 = {(int(m[1]), int(m[2])) for m in re.finditer(
        r'^CONV_I8_MMA_KERNEL\((\d+),\s*(\d+),\s*\d+\)', SOURCES['conv_int8_mma.cu'], re.M)}
    assert built_i8 == built  # lower_int8 picks its tile with lower_conv.mma_config


@pytest.mark.parametrize('name', sorted(STRUCT_RECORDS))
def test_struct_records_match_c(name):
    fields, size, _ = STRUCTS[name]
    dtype = STRUCT_RECORDS[name]
    assert py_fields(dtype) == fields
    assert dtype.itemsize == size


@pytest.mark.parametrize('kernel', sorted(KERNEL_RECORDS))
def test_kernel_argument_records_match_c(kernel):
    assert py_fields(KERNEL_RECORDS[kernel]) == c_kernel_args()[kernel]


def test_every_kernel_has_a_record():
    assert set(c_kernel_args()) == set(KERNEL_RECORDS)


def test_a_wrong_field_order_is_caught():
    swapped = ' '.join(SOURCES['common.cuh'].split()).replace(
        'float alpha; float beta;', 'float beta; float alpha;')
    m = re.search(r'struct\s+ActParams\s*\{([^{}]*)\};', swapped)
    fields = _layout([d for d in m[1].split(';') if d.strip()], STRUCTS)[0]
    assert fields != py_fields(params.ACT)
