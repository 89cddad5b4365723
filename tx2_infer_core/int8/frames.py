"""Calibration and held-out frames: real photos and frames of a real video, never random data.

The default set (``default_frames``), fixed so results compare across runs:

- calibration: the photos ``CALIB_PHOTOS`` + video frames 0, 50, 100, ... of vtest.avi
  (Debian's opencv-doc, a street scene: people walking);
- held out: the photos ``HELD_OUT_PHOTOS`` + video frames 25, 75, 125, ...

A user folder (``folder_frames``): every image file in it, sorted by name; every 4th one
(index 3, 7, 11, ...) is held out, the others calibrate. Fewer than ``MIN_IMAGES`` images is a
``CalibrationError``. ``FrameSet.digest`` hashes the frames' sources (file bytes and frame
numbers): the frame-set part of the calibration cache key.
"""
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from tx2_infer_core.int8.calibrate import CalibrationError

CALIB_PHOTOS = ['dog.jpg', 'horses.jpg', 'person.jpg', 'giraffe.jpg', 'kite.jpg', 'eagle.jpg',
                'astronaut.png', 'coffee.png']
HELD_OUT_PHOTOS = ['bus.jpg', 'zidane.jpg', 'chelsea.png', 'motorcycle_left.png', 'rocket.jpg']
VIDEO = 'vtest.avi'
VIDEO_STEP = 50         # calibration frames 0, 50, ...; held-out frames 25, 75, ...
MIN_IMAGES = 8
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.ppm', '.pgm')
HELD_OUT_EVERY = 4


@dataclass
class FrameSet:
    """Named BGR uint8 frames split into calibration and held-out lists."""

    calibration: list = field(default_factory=list)     # [(name, image)]
    held_out: list = field(default_factory=list)
    digest: str = ''

    def limit(self, calibration=None, held_out=None):
        """A smaller set: the first ``calibration`` / ``held_out`` frames of each list (the
        digest says so)."""
        cal = self.calibration[:calibration] if calibration else self.calibration
        held = self.held_out[:held_out] if held_out else self.held_out
        text = f'{self.digest}|{len(cal)}|{len(held)}'
        return FrameSet(cal, held, hashlib.sha256(text.encode()).hexdigest())


def read_image(path):
    """A BGR uint8 image; an unreadable file is a ``CalibrationError``."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise CalibrationError(f'cannot decode calibration image {path}')
    return image


def video_frames(path, indices):
    """[(name, BGR frame)] of the given frame numbers of a video file."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        for index in indices:
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = capture.read()
            if not ok:
                break
            frames.append((f'{Path(path).stem}#{index}', frame))
    finally:
        capture.release()
    return frames


def _file_digest(digest, path):
    digest.update(Path(path).name.encode())
    digest.update(Path(path).read_bytes())


def default_frames(video_frames_each=8) -> FrameSet:
    """The fixed default set (module doc): photos + ``video_frames_each`` video frames in each
    of the calibration and held-out lists."""
    from tx2_infer_core import assets
    digest = hashlib.sha256(b'default-frames-v1')
    sets = []
    for photos, offset in ((CALIB_PHOTOS, 0), (HELD_OUT_PHOTOS, VIDEO_STEP // 2)):
        items = []
        for name in photos:
            path = assets.fetch(name)
            _file_digest(digest, path)
            items.append((name, read_image(path)))
        video = assets.fetch(VIDEO)
        indices = [offset + VIDEO_STEP * k for k in range(video_frames_each)]
        items.extend(video_frames(video, indices))
        digest.update(repr(indices).encode())
        sets.append(items)
    digest.update(Path(assets.fetch(VIDEO)).read_bytes()[:1 << 20])
    return FrameSet(sets[0], sets[1], digest.hexdigest())


def image_files(folder) -> list:
    """The image files of ``folder`` (``IMAGE_SUFFIXES``), sorted by name."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def folder_frames(folder, min_images=MIN_IMAGES) -> FrameSet:
    """The images of a folder (module doc); fewer than ``min_images`` is an error."""
    path = Path(folder)
    if not path.is_dir():
        raise CalibrationError(f'calibration images folder {folder} does not exist')
    files = image_files(path)
    if len(files) < min_images:
        raise CalibrationError(f'calibration images folder {folder} has {len(files)} images; '
                               f'at least {min_images} are needed (real frames of the scenes '
                               'the model will see)')
    digest = hashlib.sha256(b'folder-frames-v1')
    frames = FrameSet()
    for k, file in enumerate(files):
        _file_digest(digest, file)
        item = (file.name, read_image(file))
        held = k % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
        (frames.held_out if held else frames.calibration).append(item)
    frames.digest = digest.hexdigest()
    return frames


def input_feeds(frames, graph):
    """Each (name, image) preprocessed as the Detector does -> [{input name: tensor}]."""
    from tx2_infer_core import detect
    spec = graph.values[graph.inputs[0]]
    fmt = detect.resolve_input_format(graph.meta.get('input_format'), spec.shape)
    feeds = []
    for _, image in frames:
        tensor, _ = detect.preprocess(image, spec.shape, fmt)
        feeds.append({spec.name: tensor.astype(spec.dtype, copy=False)})
    return feeds
