"""The three torchvision.ops names onnx2torch imports; each refuses (see ``__init__``)."""


def _missing(*args, **kwargs):
    raise NotImplementedError('torchvision is not installed (bench/torch_stubs stands in)')


nms = box_convert = roi_align = _missing
