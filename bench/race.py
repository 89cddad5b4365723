"""The pure parts of the race of ``bench_cuda.py`` (issue 12 item 4), importable with numpy
alone (OpenCV only for the photos): the shared inputs, the output comparison, the repeats
summary, and how far a capped max-autotune child got.

- ``race_input``: the same input for every contender: a real photo letterboxed to the model's
  size (RGB, [0, 1], ImageNet-normalised for ResNet-50) or BERT-tiny's embeddings of a fixed
  token sequence (seeded tables, like the seeded random weights of ``torch_models``).
- ``compare``: max |a - b| / max |b| and the relative L2 of one output set against another.
- ``combine_rounds``: per contender, the median of the rounds' medians and their spread.
"""
import json
import re
from pathlib import Path

import numpy as np

# model -> (photo, letterbox size (w, h), normalisation (mean, std) or None)
PHOTO_INPUTS = {
    'resnet50': ('dog.jpg', (224, 224), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))),
    'yolov5s': ('bus.jpg', (640, 640), None),
}
BERT_SEQ, BERT_HIDDEN, BERT_VOCAB = 128, 128, 30522
CLS, SEP = 101, 102


def photo_tensor(path, size, norm=None) -> np.ndarray:
    """[1, 3, h, w] float32: the photo letterboxed (pad 114), RGB in [0, 1], then
    ``(x - mean) / std`` per channel when ``norm`` = (mean, std) is given."""
    import cv2
    from tx2_infer_core.detect import letterbox
    from tx2_infer_core.errors import InputError
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f'cannot read the photo {path}')
    boxed, _ = letterbox(image, size)
    x = boxed[:, :, ::-1].astype(np.float32) / 255.0
    if norm is not None:
        x = (x - np.float32(norm[0])) / np.float32(norm[1])
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def bert_tokens(seq=BERT_SEQ, seed=0) -> np.ndarray:
    """A fixed token sequence: [CLS], seeded word ids, [SEP]."""
    ids = np.random.default_rng(seed).integers(1000, BERT_VOCAB, seq).astype(np.int64)
    ids[0], ids[-1] = CLS, SEP
    return ids


def bert_embeddings(tokens, hidden=BERT_HIDDEN, seed=0) -> np.ndarray:
    """[1, seq, hidden] float32: word + position + segment-0 embeddings of ``tokens`` from
    seeded tables (std 0.02, BERT's initialisation)."""
    rng = np.random.default_rng(seed)
    word = rng.standard_normal((BERT_VOCAB, hidden), np.float32) * np.float32(0.02)
    pos = rng.standard_normal((len(tokens), hidden), np.float32) * np.float32(0.02)
    segment = rng.standard_normal(hidden, np.float32) * np.float32(0.02)
    return (word[np.asarray(tokens)] + pos + segment)[None].astype(np.float32)


def race_input(name, photos) -> np.ndarray:
    """The input every contender gets for model ``name`` (``photos``: the photo folder)."""
    if name == 'bert_tiny':
        return bert_embeddings(bert_tokens())
    photo, size, norm = PHOTO_INPUTS[name]
    return photo_tensor(Path(photos) / photo, size, norm)


def save_outputs(path, outputs) -> Path:
    """The outputs (a list, in the model's output order) as float32 ``out0``, ``out1``..."""
    np.savez(path, **{f'out{i}': np.asarray(o, np.float32) for i, o in enumerate(outputs)})
    return Path(path)


def load_outputs(path) -> list:
    """The list written by ``save_outputs``."""
    with np.load(path) as data:
        return [data[f'out{i}'] for i in range(len(data.files))]


def compare(outputs, reference) -> dict:
    """``outputs`` against ``reference`` (lists of arrays, same order and shapes):
    max_rel_error = max |a - b| / max |b| and rel_l2 = ||a - b|| / ||b||, over all the outputs
    together, and max_abs_error; ``finite`` is False when ``outputs`` hold NaN or Inf."""
    from tx2_infer_core.errors import InputError
    if len(outputs) != len(reference):
        raise InputError(f'{len(outputs)} outputs compared with {len(reference)}')
    a_all, b_all = [], []
    for i, (a, b) in enumerate(zip(outputs, reference)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.size != b.size:
            raise InputError(f'output {i}: shape {a.shape} compared with {b.shape}')
        a_all.append(a.ravel())
        b_all.append(b.ravel())
    a, b = np.concatenate(a_all), np.concatenate(b_all)
    diff = np.abs(a - b)
    scale, norm = float(np.abs(b).max()), float(np.linalg.norm(b))
    return dict(max_rel_error=float(diff.max() / scale) if scale else float(diff.max()),
                rel_l2=float(np.linalg.norm(a - b) / norm) if norm else float(diff.max()),
                max_abs_error=float(diff.max()), finite=bool(np.isfinite(a).all()))


def accuracy(ours, reference, torch_outputs) -> dict:
    """The accuracy block of one model: every contender (ours and each torch FP16 one) against
    torch eager FP32, and ours against each torch FP16 contender. ``torch_outputs``:
    {contender: outputs}; missing sets are left out."""
    out = dict(reference='torch eager FP32 (TF32 off)', vs_fp32={}, ours_vs={})
    if reference is not None:
        for name, outputs in [('ours', ours)] + sorted(torch_outputs.items()):
            if outputs is not None:
                out['vs_fp32'][name] = compare(outputs, reference)
    if ours is not None:
        for name, outputs in sorted(torch_outputs.items()):
            out['ours_vs'][name] = compare(ours, outputs)
    return out


def combine_rounds(rounds) -> dict:
    """One contender's rounds (each a timing dict or a failure) -> median_ms = the median of
    the rounds' medians, spread_ms = [min, max] of them, p99_ms the median of the p99s,
    compile_s of the first round (cold caches), round_medians and failed rounds kept."""
    ok = [r for r in rounds if 'median_ms' in r]
    failed = [r for r in rounds if 'median_ms' not in r]
    if not ok:
        return dict(rounds[0], repeats=0) if rounds else dict(error='no round ran')
    meds = [r['median_ms'] for r in ok]
    out = dict(median_ms=float(np.median(meds)), spread_ms=[min(meds), max(meds)],
               spread_pct=100.0 * (max(meds) - min(meds)) / float(np.median(meds)),
               p99_ms=float(np.median([r['p99_ms'] for r in ok])),
               min_ms=min(r.get('min_ms', r['median_ms']) for r in ok),
               runs=sum(r.get('runs', 0) for r in ok), repeats=len(ok), round_medians=meds)
    compiles = [r['compile_s'] for r in ok if 'compile_s' in r]
    if compiles:
        out.update(compile_s=compiles[0], round_compile_s=compiles)
    for key in ('launches', 'outputs_finite', 'finished'):
        if key in ok[0]:
            out[key] = ok[0][key]
    if failed:
        out['failed_rounds'] = failed
    return out


AUTOTUNE = re.compile(r'^AUTOTUNE (.+)$')


def autotune_progress(log_tail, child_json=None) -> dict:
    """How far a killed max-autotune child got: the ops it had autotuned (inductor prints one
    ``AUTOTUNE op(shapes)`` table per op to the log), the last of them, and the child's own
    last stage (from its JSON: 'compiling' or 'timing')."""
    ops = [m.group(1) for m in map(AUTOTUNE.match, log_tail.splitlines()) if m]
    out = dict(autotuned_ops=len(ops), last_autotuned=ops[-1] if ops else None)
    if child_json and Path(child_json).is_file():
        entry = json.loads(Path(child_json).read_text()).get('contenders', {})
        out['stage'] = entry.get('max-autotune', {}).get('stage', 'not started')
    return out


def ratios(entry) -> dict:
    """ours / each PyTorch contender, / the best torch.compile, / the best PyTorch, from the
    medians (of the rounds' medians) of ``entry['contenders']``."""
    c = entry.get('contenders', {})
    ours = c.get('ours', {}).get('median_ms')
    med = {k: v['median_ms'] for k, v in c.items() if 'median_ms' in v
           and not k.startswith('ours')}
    if not ours or not med:
        return {}
    out = {f'ours/{k}': ours / v for k, v in med.items()}
    compiled = [med[k] for k in ('reduce-overhead', 'max-autotune') if k in med]
    if compiled:
        out['ours/best_compile'] = ours / min(compiled)
    out['ours/best_torch'] = ours / min(med.values())
    return out
