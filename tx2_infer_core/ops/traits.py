"""One line per op: what the engine knows about it, and every op list derived from that.

An op's line says where its reference function lives (``ops/<module>.py``, named after the
op), its kind, its kernel code on CUDA and the facts the passes, the planner and the CUDA
backend need. Nothing else keeps a list of op names: the CPU registry (``ops.registry.OPS``),
the CUDA op table (``cuda.lowering.LOWERINGS``), the kernel codes (``cuda.params``), the NHWC
layout and placement lists (``cuda.layout``, ``cuda.placement``), the layout and transpose
passes, the fusable activations, the planner's in-place ops and the ONNX conformance op list
all derive from ``TRAITS``.

Kinds:

- ``activation``: elementwise, one input; its code is ``ACT_<NAME>`` of ``kernels/common.cuh``
  (the ``ActParams`` epilogue), so it runs alone and fused into a convolution. ``params`` are
  the ONNX attributes (with defaults) carried in ``ActParams.alpha`` and ``.beta``.
- ``unary`` / ``binary``: elementwise; the code is ``UN_<NAME>`` / ``BIN_<NAME>`` of
  ``kernels/elementwise.cu``; no code: the CPU runs it, CUDA refuses it, unless (``generated``)
  a C expression of ``cuda/codegen_pointwise.py`` makes it one generated kernel.
- ``copy``: a copy of the data (``Reshape`` and friends): one strided copy on CUDA.
- ``image``: reads and writes NCHW images (NHWC in the CUDA arena).
- ``other``: the rest; ``cuda`` names its CUDA lowering, if it has one.

Adding a unary op: its numpy function in ``ops/elementwise.py``, one line here and, for CUDA,
its C expression in ``cuda/codegen_pointwise.py`` (a ``generated`` line), or its device code
and ``#define`` in ``kernels/elementwise.cu`` (``common.cuh`` for an activation;
``test/core/test_kernel_constants.py`` checks the codes agree).
"""
import functools
from dataclasses import dataclass

ACTIVATION, UNARY, BINARY, COPY, IMAGE, OTHER = ('activation', 'unary', 'binary', 'copy',
                                                 'image', 'other')
ELEMENTWISE_KINDS = (ACTIVATION, UNARY, BINARY)
CODE_PREFIX = {ACTIVATION: 'ACT_', UNARY: 'UN_', BINARY: 'BIN_'}
ACT_FIELDS = ('alpha', 'beta')  # the ActParams fields an activation's ``params`` fill


@dataclass(frozen=True)
class OpTraits:
    """What the engine knows about one op type (see the module doc)."""

    name: str
    module: str              # ops/<module>.py holds the reference function ``name``
    kind: str = OTHER
    code: int = None         # kernel code of an activation, unary or binary op
    cuda: str = ''           # CUDA lowering family (cuda/lowering.py FAMILIES); '' = refused
    params: tuple = ()       # activation: ((ONNX attribute, default), ...) -> alpha, beta
    strided: bool = False    # its CUDA kernel reads and writes any strided view (placement)
    keeps_layout: bool = False  # its 4-D output has its first input's layout (and storage)
    inplace: bool = False    # its output may overwrite a dying input of its shape (planner)
    internal: bool = False   # made by the passes, not an ONNX op (no ONNX node tests)
    fixed_inputs: tuple = ()  # inputs whose values must be known at build time (importer)

    @property
    def elementwise(self) -> bool:
        """True for activation, unary and binary ops."""
        return self.kind in ELEMENTWISE_KINDS

    @property
    def macro(self) -> str:
        """The kernel's ``#define`` of this op's code, e.g. ``ACT_LEAKYRELU``; '' if none."""
        return f'{CODE_PREFIX[self.kind]}{self.name.upper()}' if self.code is not None else ''


def act(name, code, params=(), inplace=True, internal=False):
    """An activation (kernel code ``ACT_<NAME>``), fusable into a convolution."""
    return OpTraits(name, 'elementwise', ACTIVATION, code, 'unary', tuple(params), True, True,
                    inplace, internal)


def unary(name, code=None):
    """A one-input elementwise op; ``code`` is its ``UN_<NAME>`` (None: CPU only)."""
    return OpTraits(name, 'elementwise', UNARY, code, 'unary' if code is not None else '',
                    strided=True, keeps_layout=True)


def generated(name):
    """A one-input float op with no kernel code: one generated kernel on CUDA (its C expression
    in ``cuda/codegen_pointwise.py`` UNARY_C, FP32 maths), alone or in a fused chain."""
    return OpTraits(name, 'elementwise', UNARY, cuda='pointwise', strided=True,
                    keeps_layout=True)


def binary(name, code=None, inplace=False):
    """A broadcasting elementwise op; ``code`` is its ``BIN_<NAME>`` (None: CPU only)."""
    return OpTraits(name, 'elementwise', BINARY, code, 'binary' if code is not None else '',
                    strided=True, keeps_layout=True, inplace=inplace)


def copy(name, keeps_layout=False):
    """An op whose output is its input's data (a strided copy on CUDA)."""
    return OpTraits(name, 'tensor', COPY, cuda='copy', strided=True, keeps_layout=keeps_layout)


def image(name, module, cuda='', internal=False, inplace=False, fixed_inputs=()):
    """An op over NCHW images (NHWC in the CUDA arena); ``fixed_inputs`` as for ``op``."""
    return OpTraits(name, module, IMAGE, cuda=cuda, strided=bool(cuda), inplace=inplace,
                    internal=internal, fixed_inputs=tuple(fixed_inputs))


def op(name, module, cuda='', strided=False, keeps_layout=False, inplace=False,
       fixed_inputs=()):
    """Any other op; ``fixed_inputs``: indices of the inputs that must be constants at build
    time (TopK's K and OneHot's depth size the output; the engine's shapes are static)."""
    return OpTraits(name, module, OTHER, cuda=cuda, strided=strided, keeps_layout=keeps_layout,
                    inplace=inplace, fixed_inputs=tuple(fixed_inputs))


_LINES = (
    # activations: kernels/common.cuh ACT_<NAME> (the planner's in-place order first)
    act('Relu', 1),
    act('LeakyRelu', 2, [('alpha', 0.01)]),
    act('Sigmoid', 3),
    act('Tanh', 8),
    act('Clip', 7),
    act('HardSwish', 5),
    act('HardSigmoid', 6, [('alpha', 0.2), ('beta', 0.5)]),
    act('SiLU', 4, inplace=False, internal=True),  # x * sigmoid(x), made by fuse_conv
    act('Mish', 9),
    act('Elu', 12, [('alpha', 1.0)]),  # 10, 11: GELU, a GEMM epilogue only (cuda/params.py)
    act('Selu', 13, [('alpha', 1.67326319217681884765625),
                     ('gamma', 1.05070102214813232421875)]),  # gamma -> ActParams.beta
    act('Celu', 14, [('alpha', 1.0)]),
    act('Softplus', 15),
    act('ThresholdedRelu', 16, [('alpha', 1.0)]),
    # binary: kernels/elementwise.cu BIN_<NAME>
    binary('Add', 0, inplace=True),
    binary('Sub', 1, inplace=True),
    binary('Mul', 2, inplace=True),
    binary('Div', 3, inplace=True),
    binary('Max', 4),  # variadic: a chain of launches reading every input (never in place)
    binary('Min', 5),
    binary('Pow', 6),
    binary('PRelu', 7),
    # unary: kernels/elementwise.cu UN_<NAME>
    unary('Exp', 1),
    unary('Log', 2),
    unary('Sqrt', 3),
    unary('Neg', 4),
    unary('Abs', 5),
    unary('Reciprocal', 6),
    unary('Erf', 7),
    unary('Gelu', 8),
    unary('Softsign', 9),
    # unary, generated on CUDA (cuda/codegen_pointwise.py UNARY_C)
    generated('Shrink'), generated('Swish'),
    generated('Floor'), generated('Ceil'), generated('Round'), generated('Sign'),
    generated('Sin'), generated('Cos'), generated('Tan'), generated('Asin'), generated('Acos'),
    generated('Atan'), generated('Sinh'), generated('Cosh'), generated('Asinh'),
    generated('Acosh'), generated('Atanh'),
    # comparison, logic and selection ops, Mod, Sum, Mean: one generated kernel each on CUDA
    # (cuda/lower_logic.py; a bool is FP16 0/1 in the arena, an integer must stay exact)
    *(OpTraits(name, 'elementwise', BINARY, cuda='logic', strided=True, keeps_layout=True)
      for name in ('Mod', 'Sum', 'Mean', 'Equal', 'Less', 'LessOrEqual', 'Greater',
                   'GreaterOrEqual', 'And', 'Or', 'Xor')),
    *(OpTraits(name, 'elementwise', UNARY, cuda='logic', strided=True, keeps_layout=True)
      for name in ('Not', 'IsNaN', 'IsInf')),
    OpTraits('Where', 'elementwise', OTHER, cuda='logic', strided=True),
    op('Trilu', 'tensor', 'trilu', strided=True, fixed_inputs=[1]),  # Where over a mask
    # data movement: strided copies on CUDA (cuda/lower_movement.py)
    op('Expand', 'tensor', 'expand', strided=True),
    op('Tile', 'tensor', 'tile', strided=True),
    op('DepthToSpace', 'tensor', 'depth_to_space', strided=True),
    op('SpaceToDepth', 'tensor', 'space_to_depth', strided=True),
    op('CastLike', 'tensor', 'cast_like', strided=True, keeps_layout=True),  # float to float
    op('EyeLike', 'tensor', 'eye_like', strided=True),  # a copy of a constant
    # quantisation boundaries (notes/int8.md)
    op('QuantizeLinear', 'quant', 'quantize', keeps_layout=True),  # cuda/lower_int8.py
    op('DequantizeLinear', 'quant', 'dequantize', keeps_layout=True),
    # ONNX's QOperator ops: written in QDQ form at import (qoperator_rewrite.py), so the CUDA
    # backend meets DequantizeLinear, Conv/MatMul, QuantizeLinear/Cast; CPU-only references
    op('QLinearConv', 'qoperator'), op('QLinearMatMul', 'qoperator'),
    op('ConvInteger', 'qoperator'), op('MatMulInteger', 'qoperator'),
    op('DynamicQuantizeLinear', 'qoperator'),  # its scale from the data: CPU only
    # convolution, pooling, resampling over images
    image('Conv', 'conv', 'conv'),
    image('FusedConv', 'fused', 'conv', internal=True),
    OpTraits('FusedPointwise', 'fused', OTHER, cuda='pointwise', strided=True, keeps_layout=True,
             inplace=True, internal=True),  # a chain of elementwise ops (fuse_pointwise)
    image('ConvTranspose', 'conv', 'conv_transpose'),
    image('FusedConvTranspose', 'fused', 'conv_transpose', internal=True),
    image('FusedConvInt8', 'quant', 'conv_int8', internal=True),  # passes/quantize.py
    OpTraits('FusedAttention', 'attention', OTHER, cuda='attention',
             internal=True),  # softmax(s * Q K^T + mask) V over strided views (fuse_attention)
    image('MaxPool', 'pool', 'pool'),
    image('AveragePool', 'pool', 'pool'),
    image('GlobalAveragePool', 'pool', 'pool'),
    image('GlobalMaxPool', 'pool', 'pool'),
    OpTraits('BatchNormalization', 'nn', IMAGE, cuda='batchnorm', strided=True,
             keeps_layout=True, inplace=True),  # one per-channel scale and shift
    image('Resize', 'resize', 'resize'),
    image('Upsample', 'resize', 'resize'),
    # normalisation, softmax, matrix products
    op('LayerNormalization', 'nn', 'layernorm'),
    op('Softmax', 'nn', 'softmax'),
    op('LogSoftmax', 'nn', 'softmax'),
    op('MatMul', 'nn', 'matmul'),
    OpTraits('FusedLinear', 'fused', OTHER, cuda='matmul',
             internal=True),  # act(x @ W + b + residual): a GEMM and its epilogue (fuse_linear)
    OpTraits('FusedLinearNorm', 'fused', OTHER, cuda='linear_norm',
             internal=True),  # LayerNorm(FusedLinear): one GEMM, rows normed in its epilogue
    op('Gemm', 'nn', 'gemm'),
    op('Einsum', 'tensor', 'einsum'),  # MatMul & co once rewritten (passes/rewrite_einsum.py)
    # recurrent
    op('LSTM', 'recurrent', 'lstm'),
    op('RNN', 'recurrent', 'rnn'), op('GRU', 'recurrent', 'gru'),
    # reductions
    op('ReduceMean', 'reduce', 'reduce', strided=True),  # cuda/lower_nn.py lower_reduce
    op('ReduceSum', 'reduce', 'reduce', strided=True),
    op('ReduceMax', 'reduce', 'reduce', strided=True),
    op('ReduceMin', 'reduce', 'reduce', strided=True),
    # more reductions, the ops along an axis, normalisations and Lp pools (issue 14):
    # cuda/lower_nn.py (reductions on the global_reduce kernel, pools), cuda/lower_axis.py
    # (kernels/arg.cu, scan.cu), cuda/lower_norm.py (kernels/norm.cu)
    op('ReduceProd', 'reduce', 'reduce', strided=True),
    op('ReduceL1', 'reduce', 'reduce', strided=True),
    op('ReduceL2', 'reduce', 'reduce', strided=True),
    op('ReduceSumSquare', 'reduce', 'reduce', strided=True),
    op('ReduceLogSum', 'reduce', 'reduce', strided=True),
    op('ReduceLogSumExp', 'reduce', 'reduce', strided=True),
    op('ArgMax', 'reduce', 'arg', strided=True),  # indices int32 (or FP16: 2048 at most)
    op('ArgMin', 'reduce', 'arg', strided=True),
    op('Hardmax', 'nn', 'arg', strided=True),
    op('CumSum', 'reduce', 'scan', strided=True, fixed_inputs=[1]),
    op('CumProd', 'reduce', 'scan', strided=True,
       fixed_inputs=[1]),  # opset 26: node tests only (no opset-21 form)
    image('InstanceNormalization', 'nn', 'norm'),
    image('GroupNormalization', 'nn', 'norm'),
    image('LRN', 'nn', 'norm'),
    op('MeanVarianceNormalization', 'nn', 'norm', strided=True),
    op('LpNormalization', 'nn', 'norm', strided=True),
    op('RMSNormalization', 'nn', 'norm', strided=True),
    image('LpPool', 'pool', 'pool'),
    image('GlobalLpPool', 'pool', 'pool'),
    # shape and data movement
    copy('Identity', keeps_layout=True),
    copy('Dropout', keeps_layout=True),
    OpTraits('Cast', 'tensor', COPY, cuda='cast', strided=True,
             keeps_layout=True),  # a copy, or (to an integer, bool) generated: lower_logic.py
    copy('Reshape'), copy('Flatten'), copy('Squeeze'), copy('Unsqueeze'),
    op('Transpose', 'tensor', 'transpose', strided=True),
    op('Concat', 'tensor', 'concat', strided=True, keeps_layout=True),
    op('Split', 'tensor', 'split', strided=True, keeps_layout=True),
    op('Slice', 'tensor', 'slice', strided=True),
    op('Pad', 'tensor', 'pad', strided=True, keeps_layout=True),
    op('Shape', 'tensor'), op('Size', 'tensor'),
    op('Constant', 'tensor'), op('ConstantOfShape', 'tensor'), op('Range', 'tensor'),
    op('Gather', 'tensor', 'gather', strided=True),  # cuda/lower_gather.py, lower_index.py
    op('GatherElements', 'tensor', 'gather_elements', strided=True),  # cuda/lower_index.py
    op('NonZero', 'tensor'),
    # bitwise ops (CPU only)
    unary('BitwiseNot'),
    binary('BitwiseAnd'), binary('BitwiseOr'), binary('BitwiseXor'), binary('BitShift'),
    # indexing, scatter and sequence-free tensor ops (CPU only where no CUDA family is named;
    # CUDA: TopK cuda/lower_topk.py, gathers cuda/lower_index.py, scatters cuda/lower_scatter.py)
    op('TopK', 'index', 'topk', strided=True, fixed_inputs=[1]),
    op('GatherND', 'index', 'gather_nd'),
    op('ScatterND', 'index', 'scatter_nd', strided=True),
    op('ScatterElements', 'index', 'scatter_elements', strided=True),
    op('Scatter', 'index', 'scatter_elements',
       strided=True),  # opset 9-10 only: the importer's upgrade makes ScatterElements
    op('OneHot', 'index', 'one_hot', strided=True, fixed_inputs=[1]),
    op('ReverseSequence', 'index'),
    # spatial sampling: kernels/sampling.cu (cuda/lower_sampling.py; 2-D only)
    image('GridSample', 'sampling', 'grid_sample'),
    op('AffineGrid', 'sampling', 'affine_grid', strided=True, fixed_inputs=[1]),
    image('RoiAlign', 'sampling', 'roi_align'),
    # normalisation and spatial sampling ops (CPU only)
    image('MaxUnpool', 'pool', fixed_inputs=[2]),
    op('Col2Im', 'pool', fixed_inputs=[1, 2]),
    image('MaxRoiPool', 'sampling'),
    op('CenterCropPad', 'sampling', fixed_inputs=[1]),
)


def _table(lines) -> dict:
    table = {}
    for line in lines:
        if line.name in table:
            raise ValueError(f'op {line.name} has two lines')
        table[line.name] = line
    return table


TRAITS = _table(_LINES)


def names(**where) -> tuple:
    """Op names whose traits have the given values (in table order), e.g.
    ``names(kind='copy')``, ``names(strided=True)``."""
    return _names(tuple(sorted(where.items())))


@functools.lru_cache(maxsize=None)
def _names(where: tuple) -> tuple:
    return tuple(t.name for t in TRAITS.values()
                 if all(getattr(t, k) == v for k, v in where))


def codes(kind) -> dict:
    """{op: kernel code} of the ``kind`` ops that have a CUDA kernel."""
    return {t.name: t.code for t in TRAITS.values() if t.kind == kind and t.code is not None}


def cuda_ops() -> dict:
    """{op: CUDA lowering family} of every op the CUDA backend lowers."""
    return {t.name: t.cuda for t in TRAITS.values() if t.cuda}


def onnx_ops() -> tuple:
    """The ONNX op types (internal ops left out): those the ONNX node tests run."""
    return names(internal=False)


def activation_params(name, alpha, beta) -> dict:
    """The ONNX keyword attributes of activation ``name`` from ActParams ``alpha``, ``beta``."""
    values = dict(zip(ACT_FIELDS, (alpha, beta)))
    return {attr: values[field] for (attr, _), field in zip(TRAITS[name].params, ACT_FIELDS)}


def activation_values(name, attrs) -> dict:
    """ActParams ``alpha``/``beta`` of activation ``name`` from its ONNX ``attrs``."""
    return {field: float(attrs.get(attr, default))
            for (attr, default), field in zip(TRAITS[name].params, ACT_FIELDS)}
