"""The per-frame detection settings and their defaults, defined once.

Every place that offers these settings takes its defaults from ``DetectParams``: the decode in
``heads.py``, the GPU frame pipeline, ``detector.Detector``, the CLI's ``--conf/--iou/--max-det``
and the ROS node's ``conf_threshold/iou_threshold/max_detections`` parameters. It depends on
``errors`` only, so any module may import it. A value out of range is an ``InputError``.
"""
import numbers
from dataclasses import dataclass
from typing import Optional

from tx2_infer_core.errors import InputError


@dataclass(frozen=True)
class DetectParams:
    """Score threshold, NMS IoU threshold, detections kept per frame and class filter.

    ``classes`` is None (all classes) or class ids; it is stored as a sorted tuple.
    """

    conf_threshold: float = 0.25
    iou_threshold: float = 0.45
    max_detections: int = 100
    classes: Optional[tuple] = None

    def __post_init__(self):
        for name in ('conf_threshold', 'iou_threshold'):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                    or not 0.0 <= value <= 1.0:
                raise InputError(f'{name} must be a number in [0, 1], got {value!r}')
        count = self.max_detections
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
            raise InputError(f'max_detections must be a non-negative integer, got '
                             f'{self.max_detections!r}')
        if self.classes is not None:
            try:
                classes = tuple(sorted(int(c) for c in self.classes))
            except (TypeError, ValueError):
                classes = (-1,)
            if any(c < 0 for c in classes):
                raise InputError(f'classes must be non-negative class ids, got {self.classes!r}')
            object.__setattr__(self, 'classes', classes)


DEFAULTS = DetectParams()
