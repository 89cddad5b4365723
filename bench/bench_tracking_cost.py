"""Per-call CPU cost of the node's per-frame work around the engine: ``ByteTracker.update``
and ``cdr.detection_array_bytes`` (issue 10: the node's ``track`` and ``publish`` stages).

Tracker sequences, a few detections a frame as the node sees them:

- ``photos``: YOLOv3-tiny detections (score >= 0.25, the node's default) of dog.jpg, bus.jpg
  and horses.jpg at 640x480, the node benchmark's camera, cycled: each photo's tracks are
  lost for two frames and matched again on the third;
- ``vtest``: YOLOv3-tiny persons of frames 0-99 of vtest.avi (cached by
  test/core/test_tracking_equivalence.py), the tracker restarted at each replay;
- ``jitter``: 5-20 boxes walking with a pixel of noise, objects appearing and disappearing,
  scores in [0.05, 1] (some through the low-score stage);
- ``crowd10`` ... ``crowd100``: as ``jitter``, but 10 ... 100 smaller boxes (10-60 pixels) at
  a time in 1280x720, as pedestrians or cars seen by a robot: from ``crowd20`` on,
  ``update`` runs batched on arrays (``tracking.batched``);
- ``photos_after_idle``: ``photos`` with 50 ms idle before each frame, as in the node
  benchmark (a frame every inference plus 50 ms): the call runs with cold caches. Only the
  first call after the idle time is timed, alternately the new and the old code's;
- ``photos_after_idle_gpu_frame``: the same, each frame as the node's GPU frame: the
  tracker's ``predict`` (where it has one; the node runs it while the GPU works), 0.5 ms of
  GPU time, then the timed ``update``.

Before and after in the same run: the code of ``BEFORE_COMMIT`` (``git show`` into a temporary
package) gets the same calls, timed alternately call by call; its IDs and bytes must be the
same. Since ``BEFORE_COMMIT``, cdr.py packs each detection's fixed runs at once (c68da37) and
the tracker runs in plain Python per track on small scenes (numpy's per-call cost dominated
at a camera's sizes, above all after idle time), still batched on crowds; at c68da37 the
tracker was still ``BEFORE_COMMIT``'s. Each scenario but ``photos_after_idle`` also times
the new tracker forced on each path (``plain_python_only``, ``arrays_only``), the measure
``tracking.batched``'s threshold comes from; ``batched_share``: the calls it ran batched.
Writes bench/results/tracking_cost_cpu.json.
"""
import argparse
import importlib
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchlib import cpu_name, stats, versions, write_json
from tx2_infer_core import assets, tracking
from tx2_infer_core.detect import Detection

ROOT = Path(__file__).resolve().parents[1]
# The tracker and cdr.py before this benchmark's changes.
BEFORE_COMMIT = '64da0b19d93253b4c20b410c1406008d347661ff'
BEFORE_FILES = ('tx2_infer_core/tracking.py', 'tx2_infer_core/kalman.py',
                'tx2_infer_core/assignment.py', 'tx2_infer_ros/cdr.py')
PHOTOS = ('dog.jpg', 'bus.jpg', 'horses.jpg')
CROWDS = (10, 20, 30, 60, 100)  # objects at a time of the crowd scenarios


def load_before(commit, files=BEFORE_FILES, package='before', tree=None):
    """The modules of ``files`` at ``commit`` (or in the folder ``tree``, a checkout without
    git, as on the GPU machine) as a temporary ``package`` -> {file stem: module}."""
    folder = Path(tempfile.mkdtemp(prefix=f'tx2_{package}_'))
    (folder / package).mkdir()
    (folder / package / '__init__.py').write_text('')
    for path in files:
        text = (Path(tree, path).read_text() if tree else
                subprocess.run(['git', 'show', f'{commit}:{path}'], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout)
        text = text.replace('tx2_infer_core.', f'{package}.')
        (folder / package / Path(path).name).write_text(text)
    sys.path.insert(0, str(folder))
    return {Path(path).stem: importlib.import_module(f'{package}.{Path(path).stem}')
            for path in files}


def photo_frames():
    """Per photo (boxes, scores, classes) of YOLOv3-tiny at 640x480, cached beside vtest's."""
    cache = assets.cache_dir() / 'tracking' / 'photos_yolov3_tiny.npy'
    if not cache.is_file():
        import cv2
        from tx2_infer_core.detect_params import DetectParams
        from tx2_infer_ros.pipeline import load_detector
        detector, _ = load_detector(backend='cpu', log=lambda _: None)
        try:
            rows = [[i, d.x1, d.y1, d.x2, d.y2, d.score, d.class_id]
                    for i, p in enumerate(assets.fetch_photos(list(PHOTOS)))
                    for d in detector.detect(cv2.resize(cv2.imread(str(p)), (640, 480)),
                                             DetectParams(conf_threshold=0.1))]
        finally:
            detector.engine.close()
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, np.array(rows, np.float64))
    rows = np.load(cache)
    return split_rows(rows[rows[:, 5] >= 0.25], len(PHOTOS))


def vtest_frames(count=100):
    """vtest.avi's cached per-frame detections, or None when test_tracking_equivalence has
    not cached them."""
    cache = assets.cache_dir() / 'tracking' / f'vtest_yolov3_tiny_{count}.npy'
    return split_rows(np.load(cache), count) if cache.is_file() else None


def split_rows(rows, count):
    """Rows (frame, x1, y1, x2, y2, score, class) -> per frame (boxes, scores, classes) as
    Python lists, as the node passes them."""
    frames = []
    for i in range(count):
        r = rows[rows[:, 0] == i]
        frames.append((r[:, 1:5].tolist(), r[:, 5].tolist(), r[:, 6].astype(int).tolist()))
    return frames


def walking_frames(count, objects=(5, 20), image=(640, 480), sizes=(20, 150), seed=0):
    """``objects[0]`` to ``objects[1]`` objects at a time walking in an ``image``-sized frame,
    boxes of ``sizes`` pixels, each seen for 10-80 frames."""
    rng = np.random.default_rng(seed)
    least, most = objects
    width, height = image
    objects, frames = [], []
    for _ in range(count):
        objects = [o for o in objects if o['left'] > 0]
        while len(objects) < least or (len(objects) < most and rng.uniform() < 0.2):
            wh = rng.uniform(*sizes, 2)
            objects.append(dict(xy=rng.uniform(0, 1, 2) * (width - wh[0], height - wh[1]), wh=wh,
                                v=rng.uniform(-3, 3, 2), left=rng.integers(10, 80),
                                cls=int(rng.integers(0, 5))))
        boxes, scores, classes = [], [], []
        for o in objects:
            o['xy'] += o['v']
            o['left'] -= 1
            if rng.uniform() > 0.05:  # sometimes missed
                box = np.concatenate([o['xy'], o['xy'] + o['wh']]) + rng.normal(0, 1, 4)
                boxes.append(box.tolist())
                scores.append(float(rng.uniform(0.05, 1.0)))
                classes.append(o['cls'])
        frames.append((boxes, scores, classes))
    return frames


def time_tracker(new_cls, old_cls, frames, calls, restart, idle=0.0, gpu_wait=0.0):
    """Per-call ms of ``update`` of both trackers over ``frames`` cycled to ``calls`` calls
    (restarted every ``restart`` calls when given), alternating which goes first; with
    ``idle`` seconds of sleep before each frame, only the first call is timed. With
    ``gpu_wait`` seconds, each tracker's frame starts as the node's GPU frame does: the
    tracker's ``predict`` where it has one (the node runs it while the GPU works), then that
    wait, then the timed ``update``. Also returns the tracks kept at the end and the share of
    calls the new tracker ran batched."""
    new, old = new_cls(), old_cls()
    times, batched = {new: [], old: []}, 0
    for i in range(calls):
        if restart and i % restart == 0:
            new.reset(), old.reset()
        boxes, scores, classes = frames[i % len(frames)]
        ids = {}
        batched += tracking.batched(len(new.track_states()[0]), len(boxes))
        time.sleep(idle)
        for k, tracker in enumerate((new, old) if i % 2 else (old, new)):
            if gpu_wait:
                if hasattr(tracker, 'predict'):
                    tracker.predict()
                time.sleep(gpu_wait)
            t0 = time.perf_counter()
            ids[tracker] = tracker.update(boxes, scores, classes)
            if not (idle and k):
                times[tracker].append((time.perf_counter() - t0) * 1e3)
        if ids[new].tolist() != ids[old].tolist():
            raise RuntimeError(f'call {i}: IDs differ: {ids[new]} != {ids[old]}')
    return times[new], times[old], len(new.track_states()[0]), batched / calls


def time_paths(tracker_cls, frames, calls, restart):
    """Per-call ms of ``update`` forced on each path, plain Python and arrays
    (``tracking.BATCHED_COST`` infinite and 0), one tracker each, alternately call by call;
    the IDs must be the same. -> (plain Python's, arrays')."""
    trackers = {math.inf: tracker_cls(), 0: tracker_cls()}
    times, saved = {cost: [] for cost in trackers}, tracking.BATCHED_COST
    try:
        for i in range(calls):
            frame = frames[i % len(frames)]
            ids = {}
            for cost, tracker in sorted(trackers.items(), reverse=bool(i % 2)):
                if restart and i % restart == 0:
                    tracker.reset()
                tracking.BATCHED_COST = cost
                t0 = time.perf_counter()
                ids[cost] = tracker.update(*frame).tolist()
                times[cost].append((time.perf_counter() - t0) * 1e3)
            if ids[0] != ids[math.inf]:
                raise RuntimeError(f'call {i}: the paths\' IDs differ')
    finally:
        tracking.BATCHED_COST = saved
    return times[math.inf], times[0]


def time_cdr(new_fn, old_fn, count, calls, seed=0):
    """Per-call ms of both ``detection_array_bytes`` for ``count`` detections with IDs."""
    rng = np.random.default_rng(seed)
    xs = np.sort(rng.uniform(0, 640, (count, 2)), axis=1)
    ys = np.sort(rng.uniform(0, 480, (count, 2)), axis=1)
    corners = np.column_stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]])
    dets = [Detection(*box, float(rng.uniform(0.1, 1)), int(rng.integers(0, 80)))
            for box in corners.tolist()]
    ids = rng.integers(-1, 500, count)
    args = (1712, 345678901, 'camera_optical_frame', dets, ids, 0.5)
    times = {new_fn: [], old_fn: []}
    for i in range(calls):
        for fn in ((new_fn, old_fn) if i % 2 else (old_fn, new_fn)):
            t0 = time.perf_counter()
            out = fn(*args)
            times[fn].append((time.perf_counter() - t0) * 1e3)
            if fn is old_fn:
                want = out
            else:
                got = out
        if got != want:
            raise RuntimeError('detection_array_bytes: the bytes differ')
    return times[new_fn], times[old_fn]


def compare(after, before, **extra):
    a, b = stats(after), stats(before)
    return dict(after=a, before=b, speedup_median=b['median_ms'] / a['median_ms'], **extra)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--calls', type=int, default=3000)
    parser.add_argument('--idle-calls', type=int, default=400)
    parser.add_argument('--before', default=BEFORE_COMMIT)
    parser.add_argument('--before-tree', help="read the 'before' files from this folder (a "
                        'checkout of --before without git) instead of git show')
    parser.add_argument('--out', default=str(ROOT / 'bench/results/tracking_cost_cpu.json'))
    args = parser.parse_args()
    from tx2_infer_core.tracking import ByteTracker
    from tx2_infer_ros import cdr
    old = load_before(args.before, tree=args.before_tree)
    sequences = dict(photos=(photo_frames(), 0), jitter=(walking_frames(500), 0))
    for n in CROWDS:
        sequences[f'crowd{n}'] = (walking_frames(500, (n, n), (1280, 720), (10, 60)), 0)
    vtest = vtest_frames()
    if vtest is not None:
        sequences['vtest'] = (vtest, len(vtest))
    runs = [(name, frames, restart, args.calls, 0.0, 0)
            for name, (frames, restart) in sequences.items()]
    runs.append(('photos_after_idle', sequences['photos'][0], 0, args.idle_calls, 0.05, 0))
    runs.append(('photos_after_idle_gpu_frame', sequences['photos'][0], 0, args.idle_calls,
                 0.05, 0.0005))
    update = {}
    for name, frames, restart, calls, idle, gpu_wait in runs:
        after, before, kept, share = time_tracker(ByteTracker, old['tracking'].ByteTracker,
                                                  frames, calls, restart, idle, gpu_wait)
        detections = float(np.mean([len(f[0]) for f in frames]))
        update[name] = compare(after, before, mean_detections=detections, tracks_at_end=kept,
                               batched_share=share)
        if not idle:
            lists, arrays = time_paths(ByteTracker, frames, calls, restart)
            update[name].update(plain_python_only=stats(lists), arrays_only=stats(arrays))
    publish = {str(n): compare(*time_cdr(cdr.detection_array_bytes,
                                         old['cdr'].detection_array_bytes, n, args.calls))
               for n in (3, 10, 30)}
    doc = dict(what=__doc__.splitlines()[0], calls=args.calls,
               before=dict(commit=args.before, files=BEFORE_FILES,
                           note='timed in the same run, call by call alternately; same IDs '
                                'and bytes checked on every call'),
               update=update, detection_array_bytes=publish,
               host_cpu=cpu_name(), host_load_average=os.getloadavg()[0],
               versions=versions('numpy'), date=time.strftime('%Y-%m-%d'))
    print(write_json(args.out, doc))
    for what, rows in (('update', update), ('detection_array_bytes', publish)):
        for name, row in rows.items():
            print(f"{what} {name}: {row['before']['median_ms'] * 1e3:.1f} -> "
                  f"{row['after']['median_ms'] * 1e3:.1f} us median (p99 "
                  f"{row['before']['p99_ms'] * 1e3:.1f} -> {row['after']['p99_ms'] * 1e3:.1f}), "
                  f"x{row['speedup_median']:.2f}" + _paths(row))


def _paths(row):
    """The forced paths' medians of an ``update`` row, when timed."""
    if 'arrays_only' not in row:
        return ''
    return (f"; plain Python only {row['plain_python_only']['median_ms'] * 1e3:.1f}, arrays "
            f"only {row['arrays_only']['median_ms'] * 1e3:.1f}, batched "
            f"{row['batched_share']:.0%} of calls")


if __name__ == '__main__':
    main()
