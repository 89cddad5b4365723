"""The per-layer INT8 schedule: FusedConv node name -> ``LayerQuant`` (notes/int8.md).

Stored in the plan header as JSON (``schedule_to_json`` / ``schedule_from_json``).
"""
import math
import numbers
from dataclasses import dataclass

from tx2_infer_core.errors import Tx2InferError


@dataclass(frozen=True)
class LayerQuant:
    """How one FusedConv runs in INT8: ``x_scale`` the scale of its input tensor (threshold /
    127), ``w_scales`` one scale per output channel (None: computed from the weights,
    ``quant_math.weight_scales``), ``int8`` False keeps the layer in float."""

    x_scale: float
    w_scales: tuple = None
    int8: bool = True

    def __post_init__(self):
        if not (isinstance(self.x_scale, numbers.Real) and math.isfinite(self.x_scale)
                and self.x_scale > 0):
            raise Tx2InferError(f'LayerQuant: x_scale {self.x_scale!r} is not a finite '
                                'number > 0')
        if self.w_scales is not None:
            scales = tuple(float(s) for s in self.w_scales)
            if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
                raise Tx2InferError('LayerQuant: w_scales must be finite numbers > 0')
            object.__setattr__(self, 'w_scales', scales)
        object.__setattr__(self, 'x_scale', float(self.x_scale))
        object.__setattr__(self, 'int8', bool(self.int8))

    def to_json(self) -> dict:
        """A JSON-able dict (plain floats, a list or None, a bool)."""
        return {'x_scale': self.x_scale, 'int8': self.int8,
                'w_scales': None if self.w_scales is None else list(self.w_scales)}

    @classmethod
    def from_json(cls, d) -> 'LayerQuant':
        """Inverse of ``to_json``; a malformed entry raises ``Tx2InferError``."""
        if not isinstance(d, dict) or set(d) - {'x_scale', 'w_scales', 'int8'} \
                or 'x_scale' not in d:
            raise Tx2InferError(f'LayerQuant: malformed entry {d!r}')
        return cls(d['x_scale'], d.get('w_scales'), d.get('int8', True))


def schedule_to_json(schedule) -> dict:
    """{node name: LayerQuant} as a JSON-able dict."""
    return {str(name): lq.to_json() for name, lq in schedule.items()}


def schedule_from_json(d) -> dict:
    """Inverse of ``schedule_to_json``."""
    if not isinstance(d, dict):
        raise Tx2InferError(f'INT8 schedule: want a dict, got {type(d).__name__}')
    return {str(name): LayerQuant.from_json(entry) for name, entry in d.items()}
