"""Kernel parameter records: numpy structured dtypes laid out like the C structs and argument
lists of ``kernels/*.cu`` (``align=True`` follows the C alignment rules, which kernel
parameter buffers follow too). A whole argument list is passed to pycuda as one record.

The op codes come from ``ops/traits.py``; ``test/core/test_kernel_constants.py`` checks them,
the other constants and the field order of every record against the ``.cu``/``.cuh`` sources.
"""
import numpy as np

from tx2_infer_core.ops import traits

MAX_DIMS = 6  # TX2_MAX_DIMS
ACTIVATIONS = {'': 0, **traits.codes(traits.ACTIVATION)}  # ACT_NONE, ACT_<NAME>
# Epilogue-only activations (no traits activation line): GELU of a GEMM (FusedLinear's
# ``activation``, ops/fused.py GELU_FORMS; the Gelu op itself is unary): ACT_GELU (erf form),
# ACT_GELU_TANH (tanh approximation); PRelu of a convolution-class node, its slope per output
# channel in ConvParams.slope (ACT_PRELU; the PRelu op itself is binary).
EPILOGUE_ACTIVATIONS = {'Gelu': 10, 'GeluTanh': 11, 'PRelu': 17}
ACT_CODES = {**ACTIVATIONS, **EPILOGUE_ACTIVATIONS}
UNARY = traits.codes(traits.UNARY)  # UN_<NAME> (0, UN_ACT: the activation in ActParams)
BINARY = traits.codes(traits.BINARY)  # BIN_<NAME>
REDUCE_OPS = {'ReduceMean': 0, 'ReduceSum': 1, 'ReduceMax': 2, 'ReduceMin': 3,  # RED_<OP>
              'ReduceProd': 4, 'ReduceL1': 5, 'ReduceL2': 6, 'ReduceSumSquare': 7,
              'ReduceLogSum': 8, 'ReduceLogSumExp': 9}
RESIZE_COORD = {'half_pixel': 0, 'asymmetric': 1, 'align_corners': 2, 'pytorch_half_pixel': 3,
                'half_pixel_symmetric': 4}
RESIZE_NEAREST = {'round_prefer_floor': 0, 'round_prefer_ceil': 1, 'floor': 2, 'ceil': 3}

ACT = np.dtype([('kind', 'i4'), ('alpha', 'f4'), ('beta', 'f4'), ('lo', 'f4'), ('hi', 'f4'),
                ('post_scale', 'f4'), ('post_shift', 'f4')], align=True)
VIEW = np.dtype([('ndim', 'i4'), ('shape', 'i4', (MAX_DIMS,)), ('stride', 'i8', (MAX_DIMS,)),
                 ('offset', 'i8')], align=True)


def _ints(*names):
    return [(n, 'i4') for n in names]


PTR = 'u8'
CONV = np.dtype([(n, PTR) for n in ('x', 'w', 'bias', 'res', 'y', 'slope')]
                + _ints('N', 'H', 'W', 'P', 'Q', 'Cg', 'Kg', 'groups', 'R', 'S', 'sh', 'sw',
                        'ph', 'pw', 'dh', 'dw', 'x_pix', 'x_off', 'y_pix', 'y_off', 'r_pix',
                        'r_off', 'res_after') + [('act', ACT)], align=True)
POOL = np.dtype([('x', PTR), ('y', PTR)]
                + _ints('N', 'H', 'W', 'C', 'P', 'Q', 'R', 'S', 'sh', 'sw', 'ph', 'pw', 'dh',
                        'dw', 'x_pix', 'x_off', 'y_pix', 'y_off', 'is_avg',
                        'count_include_pad', 'lp'), align=True)
GLOBAL_REDUCE = np.dtype([('x', PTR), ('y', PTR)]
                         + _ints('N', 'HW', 'C', 'x_pix', 'x_off', 'y_pix', 'y_off', 'op')
                         + [('ws', PTR), ('tickets', PTR)], align=True)
# kernels/pool.cu squeeze_excite: global_reduce's arguments, then ExciteParams.
SQUEEZE_EXCITE = np.dtype([(n, GLOBAL_REDUCE.fields[n][0]) for n in GLOBAL_REDUCE.names]
                          + [(n, PTR) for n in ('w1', 'b1', 'w2', 'b2')]
                          + [('C1', 'i4'), ('act1', ACT), ('act2', ACT)], align=True)
RESIZE = np.dtype([('x', PTR), ('y', PTR)] + _ints('N', 'H', 'W', 'C', 'P', 'Q')
                  + [('scale_h', 'f4'), ('scale_w', 'f4'), ('len_h', 'f4'), ('len_w', 'f4')]
                  + _ints('coord', 'linear', 'nearest', 'x_pix', 'x_off', 'y_pix', 'y_off'),
                  align=True)
UNARY_ARGS = np.dtype([('x', PTR), ('xv', VIEW), ('y', PTR), ('yv', VIEW), ('n', 'i8'),
                       ('op', 'i4'), ('act', ACT)], align=True)
BINARY_ARGS = np.dtype([('a', PTR), ('av', VIEW), ('b', PTR), ('bv', VIEW), ('y', PTR),
                        ('yv', VIEW), ('n', 'i8'), ('op', 'i4'), ('act', ACT)], align=True)
BINARY_FLAT2 = np.dtype([('a', PTR), ('b', PTR), ('y', PTR), ('n2', 'i8'), ('op', 'i4'),
                         ('act', ACT)], align=True)
GEMM = np.dtype([('a', PTR), ('b', PTR), ('bias', PTR), ('y', PTR)]
                + _ints('M', 'N', 'K', 'B1', 'B2')
                + [(n, 'i8') for n in ('a_b1', 'a_b2', 'a_m', 'a_k', 'b_b1', 'b_b2', 'b_k',
                                       'b_n')]
                + [('alpha', 'f4'), ('act', ACT)], align=True)
LAYERNORM = np.dtype([('x', PTR), ('gamma', PTR), ('beta', PTR), ('y', PTR), ('rows', 'i8'),
                      ('n', 'i4'), ('eps', 'f4'), ('mean_out', PTR), ('rstd_out', PTR)],
                     align=True)

# INT8 (kernels/conv_int8.cuh, conv_int8.cu): the fused int8 convolution and the boundaries
CONV_I8 = np.dtype([('x', PTR), ('w', PTR), ('bias', PTR), ('dq', PTR), ('res', PTR),
                    ('y', PTR)]
                   + _ints('N', 'H', 'W', 'P', 'Q', 'Cg', 'Cw', 'Kg', 'groups', 'R', 'S', 'sh',
                           'sw', 'ph', 'pw', 'dh', 'dw', 'x_pix', 'x_off', 'y_pix', 'y_off',
                           'r_pix', 'r_off', 'res_after', 'res_int8')
                   + [('res_scale', 'f4'), ('out_inv', 'f4'), ('act', ACT)], align=True)
QUANT = np.dtype([('x', PTR), ('y', PTR), ('pixels', 'i8')]
                 + _ints('C', 'cpad', 'x_pix', 'x_off', 'y_pix', 'y_off') + [('scale', 'f4')],
                 align=True)


def _trimmed(dtype: np.dtype) -> np.dtype:
    """``dtype`` without its trailing padding: a kernel's parameter buffer ends at its last
    argument, and the driver refuses a longer one ('too many resources requested')."""
    end = max(off + dt.itemsize for dt, off in (dtype.fields[n][:2] for n in dtype.names))
    return np.dtype({'names': list(dtype.names),
                     'formats': [dtype.fields[n][0] for n in dtype.names],
                     'offsets': [dtype.fields[n][1] for n in dtype.names], 'itemsize': end})


def record(dtype: np.dtype, **fields):
    """One parameter record (an ``np.void``, trailing padding cut); unset fields are zero."""
    rec = np.zeros((), _trimmed(dtype))
    for name, value in fields.items():
        if name not in dtype.names:
            raise KeyError(f'{name!r} is not a field of this kernel record: {dtype.names}')
        rec[name] = value
    return rec[()]


def act_record(activation='', alpha=0.01, beta=0.5, clip_min=-np.inf, clip_max=np.inf,
               post_scale=1.0, post_shift=0.0):
    """The ActParams of an activation name ('' is the identity; ``ACT_CODES``), with the
    affine a convolution-class epilogue applies after it (``* post_scale + post_shift``)."""
    if activation not in ACT_CODES:
        raise KeyError(f"activation '{activation}' has no CUDA kernel; supported: "
                       f"{', '.join(a or 'none' for a in ACT_CODES)}")
    lo = np.float32(max(float(clip_min), -3.0e38))
    hi = np.float32(min(float(clip_max), 3.0e38))
    return np.array((ACT_CODES[activation], alpha, beta, lo, hi, post_scale, post_shift), ACT)


def view_record(shape, strides, offset=0):
    """A View of ``shape`` (logical) with element ``strides`` and element ``offset``."""
    if len(shape) > MAX_DIMS:
        raise ValueError(f'a CUDA view has at most {MAX_DIMS} dims, got shape {shape}')
    rec = np.zeros((), VIEW)
    rec['ndim'] = max(len(shape), 1)
    rec['shape'][:] = 1
    rec['shape'][:len(shape)] = shape
    rec['stride'][:len(strides)] = strides
    rec['offset'] = offset
    return rec
