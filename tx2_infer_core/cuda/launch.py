"""Launch descriptions: a kernel, its grid and a parameter record whose pointers are resolved
once the arena and the weight buffer exist (``Ref``: a byte offset into one of them).
"""
from dataclasses import dataclass, field

import numpy as np

from tx2_infer_core.cuda import params

BLOCK = 256


@dataclass(frozen=True)
class Ref:
    """A device address: ``base`` ('arena', 'weights' or 'io') plus a byte offset."""

    base: str
    offset: int = 0

    def __add__(self, nbytes: int) -> 'Ref':
        return Ref(self.base, self.offset + int(nbytes))


NULL = Ref('null')


@dataclass
class Slot:
    """Where a value lives: its address, logical shape and element strides per logical dim.

    4-D image values (layout 'NCHW' in the graph) are stored NHWC: ``nhwc`` is True and the
    strides say so; a slice of a wider tensor (a placed concat input) has ``channel_off``.
    ``itemsize``: 2 (FP16) or 4 (an int32 index value, ``int32_values.py``).
    """

    ref: Ref
    shape: tuple
    strides: tuple
    nhwc: bool = False
    channel_off: int = 0
    itemsize: int = 2

    @property
    def int32(self) -> bool:
        """True when the slot holds int32 elements."""
        return self.itemsize == 4

    def address(self) -> Ref:
        """The address of the slot's first element (``channel_off`` included)."""
        return self.ref + self.itemsize * self.channel_off

    @property
    def pix(self) -> int:
        """Elements between neighbouring pixels of an NHWC slot."""
        return int(self.strides[3])

    def contiguous(self) -> bool:
        """True when the slot is plain row-major over its logical shape."""
        return tuple(self.strides) == row_major(self.shape) and self.channel_off == 0

    def dense(self) -> bool:
        """True when the slot's elements fill its bytes (row-major or unsliced NHWC)."""
        return self.contiguous() or (self.nhwc and self.channel_off == 0
                                     and tuple(self.strides) == nhwc_strides(self.shape))


def row_major(shape) -> tuple:
    """Element strides of a C-contiguous array of ``shape``."""
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= int(n)
    return tuple(reversed(strides))


def nhwc_strides(shape) -> tuple:
    """Element strides, per logical NCHW dim, of an NHWC-stored 4-D tensor."""
    n, c, h, w = shape
    return (h * w * c, 1, w * c, c)


@dataclass
class Launch:
    """One kernel launch; ``fields`` may hold ``Ref`` values, resolved by ``bind``."""

    module: str
    kernel: str
    grid: tuple
    block: tuple
    dtype: np.dtype
    fields: dict = field(default_factory=dict)
    node: str = ''

    def bind(self, bases: dict):
        """The parameter record with every Ref turned into a device address."""
        values = {k: (0 if v is NULL else int(bases[v.base]) + v.offset)
                  if isinstance(v, Ref) else v for k, v in self.fields.items()}
        return params.record(self.dtype, **values)


def grid_1d(total: int, per_thread: int = 1, max_blocks: int = 65535) -> tuple:
    """A 1-D grid-stride grid covering ``total`` items."""
    blocks = max(1, min(max_blocks, -(-int(total) // (BLOCK * per_thread))))
    return (blocks, 1, 1)
