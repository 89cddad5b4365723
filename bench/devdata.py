"""Carry the real models to the device machine at half size (its working tree is capped at
64 MiB): float32 weights stored as float16, restored to float32 files there. Latency does not
depend on the low mantissa bits; accuracy runs should carry the originals.

    python bench/devdata.py pack .benchdata      # here: yolov8-fall, yolov3-tiny
    unpack_all('.benchdata', work_dir)           # on the device: the restored model files
    python3 bench/devdata.py unpack .devdata /tmp/tx2cache/assets   # + open_nsfw, photos/
"""
import sys
from pathlib import Path

import numpy as np

DARKNET_HEADER = 20  # int32 major, minor, revision + int64 images seen (version >= 0.2)
FP16_MAX = 65504.0
SMALL = 16           # float tensors below this many elements stay float32


def float_tensors(model) -> list:
    """Every float32 tensor of ``model`` worth halving: initializers and Constant values."""
    import onnx
    tensors = [t for t in model.graph.initializer]
    for node in model.graph.node:
        if node.op_type == 'Constant':
            tensors += [a.t for a in node.attribute if a.name == 'value']
    return [t for t in tensors if t.data_type == onnx.TensorProto.FLOAT
            and int(np.prod(t.dims, dtype=np.int64)) >= SMALL]


def pack_onnx(src, dst_stem) -> None:
    """``dst_stem``.onnx (float tensors emptied) + ``dst_stem``.npz (them, as float16)."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(src))
    arrays = {}
    for i, tensor in enumerate(float_tensors(model)):
        array = numpy_helper.to_array(tensor)
        if np.abs(array).max() > FP16_MAX:          # e.g. a BatchNorm variance: kept float32
            continue
        arrays[f'w{i}'] = array.astype(np.float16)
        tensor.ClearField('raw_data')
        tensor.ClearField('float_data')
    onnx.save(model, f'{dst_stem}.onnx')
    np.savez(f'{dst_stem}.npz', **arrays)


def unpack_onnx(stem, dst) -> Path:
    """Restore the float32 ONNX model packed by ``pack_onnx`` to ``dst``."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(f'{stem}.onnx')
    arrays = np.load(f'{stem}.npz')
    for i, tensor in enumerate(float_tensors(model)):
        if f'w{i}' in arrays:
            tensor.CopyFrom(numpy_helper.from_array(arrays[f'w{i}'].astype(np.float32),
                                                    tensor.name))
    onnx.save(model, str(dst))
    return Path(dst)


def pack_darknet_weights(src, dst) -> None:
    """A Darknet .weights file (version >= 0.2 header) with its floats stored as float16."""
    data = Path(src).read_bytes()
    major, minor = np.frombuffer(data[:8], np.int32)
    if (major * 10 + minor) < 2:
        raise ValueError(f'{src}: Darknet weights version {major}.{minor} has a short header')
    floats = np.frombuffer(data[DARKNET_HEADER:], np.float32).astype(np.float16)
    Path(dst).write_bytes(data[:DARKNET_HEADER] + floats.tobytes())


def unpack_darknet_weights(src, dst) -> Path:
    """Undo ``pack_darknet_weights``."""
    data = Path(src).read_bytes()
    floats = np.frombuffer(data[DARKNET_HEADER:], np.float16).astype(np.float32)
    Path(dst).write_bytes(data[:DARKNET_HEADER] + floats.tobytes())
    return Path(dst)


def pack_all(folder) -> None:
    """Pack the real benchmark models from the asset cache into ``folder``."""
    import shutil

    from tx2_infer_core import assets
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pack_onnx(assets.fetch('yolov8-fall.onnx'), folder / 'yolov8')
    cfg, weights, names = assets.yolov3_tiny()
    shutil.copy(cfg, folder / 'yolov3-tiny.cfg')
    shutil.copy(names, folder / 'coco.names')
    pack_darknet_weights(weights, folder / 'yolov3-tiny.weights16')


def unpack_all(folder, work) -> dict:
    """Restore the packed real models into ``work``; {model name: model path}."""
    import shutil
    folder, work = Path(folder), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    found = {}
    if (folder / 'yolov8.npz').is_file():
        found['yolov8'] = unpack_onnx(folder / 'yolov8', work / 'yolov8-fall.onnx')
    if (folder / 'yolov3-tiny.weights16').is_file():
        shutil.copy(folder / 'yolov3-tiny.cfg', work / 'yolov3-tiny.cfg')
        shutil.copy(folder / 'coco.names', work / 'coco.names')
        unpack_darknet_weights(folder / 'yolov3-tiny.weights16', work / 'yolov3-tiny.weights')
        found['yolov3_tiny'] = work / 'yolov3-tiny.cfg'
    return found


def unpack_carry(folder, assets) -> list:
    """On the GPU machine: the packed models of ``folder`` (``unpack_all``, open_nsfw where
    packed) and its ``photos/`` into the asset cache ``assets``; the names found there."""
    import shutil
    folder, assets = Path(folder), Path(assets)
    unpack_all(folder, assets)
    if (folder / 'open_nsfw.npz').is_file():
        unpack_onnx(folder / 'open_nsfw', assets / 'open_nsfw.onnx')
    for photo in (folder / 'photos').glob('*'):
        shutil.copy(photo, assets / photo.name)
    return sorted(p.name for p in assets.iterdir())


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == 'pack':
        pack_all(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == 'unpack':
        print('assets:', unpack_carry(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
