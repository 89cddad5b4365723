"""Shape, indexing and data-movement ops. Shape-valued outputs are int64."""
import numpy as np

from tx2_infer_core.ops.common import axis_of, ints, unsupported

# ONNX TensorProto.DataType -> numpy dtype (those the engine can hold).
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32,
          7: np.int64, 9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32,
          13: np.uint64}


def onnx_dtype(code):
    """numpy dtype of an ONNX data type code; unsupported codes fail loudly."""
    if code not in DTYPES:
        unsupported(f'data type {code} (e.g. string, bfloat16, float8, int4) is not supported')
    return np.dtype(DTYPES[code])


def Identity(x):
    """The input unchanged."""
    return x


def Dropout(data, ratio=None, training_mode=None, *, seed=None):
    """Inference Dropout: identity, and an all-true mask."""
    if training_mode is not None and bool(training_mode):
        unsupported('training_mode=True')
    return data, np.ones(data.shape, dtype=bool)


def Cast(x, *, to, saturate=1):
    """Convert to the ONNX data type ``to``."""
    dtype = onnx_dtype(to)
    if x.dtype.kind == 'f' and dtype.kind in 'iub' and dtype != np.bool_:
        with np.errstate(invalid='ignore'):
            return np.trunc(x).astype(dtype)
    return x.astype(dtype)


def CastLike(x, target_type, *, saturate=1):
    """Convert to the dtype of ``target_type``."""
    return x.astype(target_type.dtype)


def Shape(x, *, start=0, end=None):
    """The shape of x (optionally a slice of it) as int64."""
    return np.array(x.shape[start:end], dtype=np.int64)


def Size(x):
    """The number of elements of x as an int64 scalar."""
    return np.array(x.size, dtype=np.int64)


def Constant(**attrs):
    """The tensor carried by the node's single ``value*`` attribute."""
    kinds = {'value': None, 'value_float': np.float32, 'value_floats': np.float32,
             'value_int': np.int64, 'value_ints': np.int64}
    if len(attrs) != 1 or next(iter(attrs)) not in kinds:
        unsupported(f'Constant attributes {sorted(attrs)}')
    key, value = next(iter(attrs.items()))
    return np.asarray(value, dtype=kinds[key])


def ConstantOfShape(shape, *, value=None):
    """A tensor of ``shape`` filled with the one-element ``value`` (default float32 zero)."""
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value)
    return np.full(ints(shape), fill.reshape(-1)[0], dtype=fill.dtype)


def Range(start, limit, delta):
    """start, start + delta, ... up to (not including) limit, in the dtype of start."""
    count = max(int(np.ceil((limit - start) / delta)), 0)
    return (start + np.arange(count) * delta).astype(start.dtype)


def Reshape(data, shape, *, allowzero=0):
    """Reshape; 0 copies the input dimension (unless allowzero), -1 is inferred."""
    dims = ints(shape)
    if not allowzero:
        dims = [data.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return data.reshape(dims)


def Flatten(x, *, axis=1):
    """Reshape to 2-D: dimensions before ``axis`` and from ``axis`` on."""
    axis = axis % x.ndim if axis < 0 else axis
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


def Transpose(x, *, perm=None):
    """Permute the axes (reverse them by default)."""
    return np.transpose(x, perm)


def Squeeze(data, axes=None):
    """Remove size-1 dimensions (all of them, or those in ``axes``)."""
    if axes is None:
        return np.squeeze(data)
    return np.squeeze(data, axis=tuple(axis_of(a, data.ndim) for a in ints(axes)))


def Unsqueeze(data, axes=None):
    """Insert size-1 dimensions at ``axes`` (positions in the output; an input from opset 13,
    an attribute before)."""
    if axes is None:
        raise ValueError('Unsqueeze needs axes')
    rank = data.ndim + len(ints(axes))
    return np.expand_dims(data, axis=tuple(axis_of(a, rank) for a in ints(axes)))


def Concat(*inputs, axis):
    """Join along ``axis``."""
    return np.concatenate(inputs, axis=axis_of(axis, inputs[0].ndim))


def Split(x, split=None, *, axis=0, num_outputs=None):
    """Split along ``axis`` by the sizes in ``split`` or into ``num_outputs`` parts.

    Without ``split`` the parts have ceil(dim / num_outputs) elements, the last one fewer.
    """
    axis = axis_of(axis, x.ndim)
    if split is None:
        chunk = -(-x.shape[axis] // num_outputs)
        sizes = [min(chunk, x.shape[axis] - i * chunk) for i in range(num_outputs)]
    else:
        sizes = ints(split)
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=axis))


def Slice(data, starts, ends, axes=None, steps=None):
    """Strided slice per axis; out-of-range bounds clamp as in Python (which ONNX matches)."""
    starts, ends = ints(starts), ints(ends)
    axes = range(len(starts)) if axes is None else ints(axes)
    steps = [1] * len(starts) if steps is None else ints(steps)
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[axis_of(axis, data.ndim)] = slice(start, end, step)
    return data[tuple(index)]


def Gather(data, indices, *, axis=0):
    """Take ``indices`` (negative allowed) along ``axis``."""
    return np.take(data, indices.astype(np.int64), axis=axis_of(axis, data.ndim))


def GatherElements(data, indices, *, axis=0):
    """Pick data elements by an index tensor of the output's shape."""
    axis = axis_of(axis, data.ndim)
    idx = np.where(indices < 0, indices + data.shape[axis], indices)
    return np.take_along_axis(data, idx.astype(np.int64), axis=axis)


def Expand(x, shape):
    """Broadcast x to ``shape`` (numpy broadcasting rules, either side may be larger)."""
    return np.array(np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(ints(shape)))))


def Tile(x, repeats):
    """Repeat x ``repeats[i]`` times along each axis."""
    return np.tile(x, ints(repeats))


def pads_over_all_axes(pads, axes, rank):
    """Pad's ``pads`` over ``axes`` (None: every axis; negative ones count from the end) as
    [begin per axis..., end per axis...] over all ``rank`` axes; None when they do not match
    (a pads count not twice the axes, a repeated or out-of-range axis)."""
    pads = [int(p) for p in pads]
    axes = list(range(rank)) if axes is None else [int(a) + rank if int(a) < 0 else int(a)
                                                   for a in axes]
    if len(pads) != 2 * len(axes) or len(set(axes)) != len(axes) or \
            not all(0 <= a < rank for a in axes):
        return None
    full = [0] * (2 * rank)
    for i, axis in enumerate(axes):
        full[axis], full[rank + axis] = pads[i], pads[len(axes) + i]
    return full


def Pad(data, pads=None, constant_value=None, axes=None, *, mode='constant', value=0.0):
    """Pad (or crop, with negative pads) in mode constant, reflect, edge or wrap."""
    if mode not in ('constant', 'reflect', 'edge', 'wrap'):
        unsupported(f"mode='{mode}'")
    pads = ints(pads)
    axes = range(data.ndim) if axes is None else [axis_of(a, data.ndim) for a in ints(axes)]
    widths = [[0, 0] for _ in range(data.ndim)]
    for i, axis in enumerate(axes):
        widths[axis] = [pads[i], pads[i + len(axes)]]
    grow = [[max(b, 0), max(e, 0)] for b, e in widths]
    if mode == 'constant':
        fill = value if constant_value is None else constant_value.reshape(-1)[0]
        out = np.pad(data, grow, mode='constant', constant_values=fill)
    else:
        out = np.pad(data, grow, mode=mode)
    crop = tuple(slice(-min(b, 0), out.shape[i] + min(e, 0))
                 for i, (b, e) in enumerate(widths))
    return out[crop]


def DepthToSpace(x, *, blocksize, mode='DCR'):
    """Move channel blocks into spatial blocks (DCR or CRD order)."""
    n, c, h, w = x.shape
    b = blocksize
    if mode == 'DCR':
        y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    elif mode == 'CRD':
        y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        unsupported(f"mode='{mode}'")
    return y.reshape(n, c // (b * b), h * b, w * b)


def SpaceToDepth(x, *, blocksize, mode='DCR'):
    """Move spatial blocks into channels (inverse of DepthToSpace in the same mode)."""
    n, c, h, w = x.shape
    b = blocksize
    y = x.reshape(n, c, h // b, b, w // b, b)
    if mode == 'DCR':
        y = y.transpose(0, 3, 5, 1, 2, 4)
    elif mode == 'CRD':
        y = y.transpose(0, 1, 3, 5, 2, 4)
    else:
        unsupported(f"mode='{mode}'")
    return y.reshape(n, c * b * b, h // b, w // b)


def NonZero(x):
    """Indices of the non-zero elements, one row per axis (int64)."""
    return np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)


def Trilu(x, k=None, *, upper=1):
    """The upper (or lower) triangle of the last two axes from diagonal ``k``; zeros
    elsewhere."""
    k = ints(k)[0] if k is not None else 0
    return np.triu(x, k) if upper else np.tril(x, k)


def EyeLike(x, *, dtype=None, k=0):
    """Ones on diagonal ``k`` of a 2-D tensor shaped like x (dtype: x's, or ``dtype``)."""
    out_dtype = x.dtype if dtype is None else onnx_dtype(dtype)
    return np.eye(x.shape[0], x.shape[1], k, dtype=out_dtype)


def Einsum(*inputs, equation):
    """Einstein summation as ``np.einsum`` spells it (ONNX uses the same equations)."""
    return np.asarray(np.einsum(equation, *inputs))
