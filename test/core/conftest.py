"""Fixtures shared by the core tests: the real models imported once per module."""
import pytest

from tx2_infer_core import assets
from tx2_infer_core.darknet import load_darknet
from tx2_infer_core.onnx_import import load_onnx


@pytest.fixture(scope='module')
def yolov8():
    """YOLOv8 640 (ONNX) as an unoptimised IR graph."""
    return load_onnx(assets.fetch('yolov8-fall.onnx'), input_shape=(1, 3, 640, 640))


@pytest.fixture(scope='module')
def yolov3():
    """YOLOv3-tiny (Darknet) as an unoptimised IR graph."""
    cfg, weights, _ = assets.yolov3_tiny()
    return load_darknet(cfg, weights)


@pytest.fixture(scope='module')
def open_nsfw():
    """open_nsfw (ONNX, a ResNet-50 classifier at 224x224) as an unoptimised IR graph."""
    return load_onnx(assets.fetch('open_nsfw.onnx'))
