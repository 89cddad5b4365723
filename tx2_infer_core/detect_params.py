"""The per-frame detection settings and their defaults, defined once.

Every place that offers these settings takes its defaults from ``DetectParams``: the decode in
``heads.py``, the GPU frame pipeline, ``detector.Detector``, the CLI's ``--conf/--iou/--max-det``
and the ROS node's ``conf_threshold/iou_threshold/max_detections`` parameters. It has no
dependencies, so any module may import it.
"""
from dataclasses import dataclass
from typing import Optional


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
        if self.classes is not None:
            object.__setattr__(self, 'classes', tuple(sorted(int(c) for c in self.classes)))


DEFAULTS = DetectParams()
