"""The backend interface: allocate once in ``prepare``, then only copy and compute in ``run``."""
import numpy as np


class Backend:
    """A backend runs one optimised graph laid out by one memory plan.

    Two attributes are part of the interface (a backend sets them in ``__init__`` or
    ``prepare``; these class defaults fit a backend without the feature):

    - ``precision``: the arithmetic ``run`` really computes in ('fp32' or 'fp16'); the engine
      reports it (``Engine.precision``, plan header, ``tx2-infer inspect``, node diagnostics).
    - ``frame_pipeline``: None, or an object whose ``detect(image_bgr, conf, iou, max_det,
      classes)`` takes an HxWx3 uint8 frame through preprocessing, the network, decode and NMS
      on the device and returns (boxes xyxy in image pixels [N, 4], scores [N], class ids
      [N]). ``detector.Detector`` reads it once, at construction, to choose its path.
    """

    name = 'abstract'
    precision = 'fp32'
    frame_pipeline = None

    def prepare(self, graph, memory_plan) -> None:
        """Allocate every buffer and load every weight; called once per engine."""
        raise NotImplementedError

    def run(self, feeds: dict, out=None) -> dict:
        """Run one inference; ``feeds`` are validated by the engine. Returns output copies,
        or with ``out`` ({name: preallocated array}) fills and returns those."""
        raise NotImplementedError

    def input_buffers(self) -> dict:
        """{input name: array} that ``run`` may be fed with; a backend that reads its inputs
        from host memory of its own (the CUDA backend's pinned staging) returns that memory,
        so a caller that fills it in place costs ``run`` no input copy."""
        return {}

    def close(self) -> None:
        """Release everything ``prepare`` acquired."""


def fill_outputs(results: dict, out) -> dict:
    """``results`` copied into the caller's arrays ``out`` (returned), or ``results`` itself
    when ``out`` is None."""
    if out is None:
        return results
    for name, array in results.items():
        np.copyto(out[name], array)
    return out
