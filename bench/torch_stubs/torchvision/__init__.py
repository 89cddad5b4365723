"""A bench-only stand-in for torchvision (``bench/zoo_torch_child.py``), put on ``sys.path``
only where ``import torchvision`` fails: onnx2torch imports torchvision at package import for
its NonMaxSuppression and RoiAlign converters, and the GPU machine may have no torchvision.
Models with those two ops are reported not convertible before this is ever called."""
