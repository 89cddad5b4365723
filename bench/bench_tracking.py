"""Per-frame cost of the tracker (``tx2_infer_core/tracking.py``) at 50 detections a frame.

A synthetic 1280x720 scene: 50 boxes of random size walking at constant random velocities
(bouncing off the borders), a pixel of box noise, scores uniform in [0.3, 1.0] (so some go
through ByteTrack's second, low-score stage), and 2% of detections missed each frame. Times
``ByteTracker.update`` over every frame after a warm-up (the tracker keeps its tracks, as in a
node), and counts against the scene's ground truth (a sanity figure: the scene is easy) the ID
switches (an object's track ID changing to another ID) and the untracked detections (ID -1:
mostly a low-score detection right after a missed frame, which ByteTrack's second stage does
not match to a lost track). Writes bench/results/tracking_cpu.json.

Before and after in the same run: the per-track tracker it replaced (frozen, as the tests'
oracle, in test/core/tracking_oracle.py) gets the same frames, each frame timed for both in
turn (alternating which goes first); their IDs must be the same. Also at fewer objects
(``--sweep``, the node's 5-15 detections a frame).
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchlib import cpu_name, stats, versions, write_json
from tx2_infer_core.tracking import ByteTracker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'test/core'))
import tracking_oracle  # noqa: E402 (the tracker before it was batched)

# The tracker before it was batched: the last commit of its code, and this file's figure then.
BEFORE_COMMIT = '3491705f166225a644a906d6f4c1637db98624c6'
BEFORE_RECORDED = dict(update=dict(median_ms=2.4856, p99_ms=6.5918, mean_ms=2.7869, runs=1000),
                       results_commit='0e19a5330e7e8e612979408a066c0e21f9a572cc',
                       date='2026-12-01')

SIZE = np.array([1280.0, 720.0])


def scene(objects, frames, seed=0):
    """Per frame: (object indices, boxes N x 4, scores N, class ids N)."""
    rng = np.random.default_rng(seed)
    wh = rng.uniform(20, 120, (objects, 2))
    pos = rng.uniform(0, 1, (objects, 2)) * (SIZE - wh)
    vel = rng.uniform(-4, 4, (objects, 2))
    classes = rng.integers(0, 5, objects)
    out = []
    for _ in range(frames):
        pos += vel
        bounce = (pos < 0) | (pos > SIZE - wh)
        vel[bounce] *= -1
        pos = np.clip(pos, 0, SIZE - wh)
        seen = np.nonzero(rng.uniform(size=objects) > 0.02)[0]
        boxes = np.hstack([pos, pos + wh])[seen] + rng.normal(0, 1, (len(seen), 4))
        out.append((seen, boxes, rng.uniform(0.3, 1.0, len(seen)), classes[seen]))
    return out


def vtest_frames(count=100):
    """(object indices, boxes, scores, classes) per frame of the YOLOv3-tiny detections of
    vtest.avi cached by test/core/test_tracking_equivalence.py (objects unknown: -1), or
    None when they are not cached."""
    from tx2_infer_core import assets
    cache = assets.cache_dir() / 'tracking' / f'vtest_yolov3_tiny_{count}.npy'
    if not cache.is_file():
        return None
    rows = np.load(cache)
    frames = []
    for i in range(count):
        r = rows[rows[:, 0] == i]
        frames.append((np.full(len(r), -1), r[:, 1:5], r[:, 5], r[:, 6].astype(np.int64)))
    return frames


def run(frames, warmup, restart=0):
    """Time every frame's update of both trackers (both reset every ``restart`` frames when
    given) -> (after ms, before ms, ID switches, untracked detections, mean track length in
    frames, mean kept tracks)."""
    after, before = ByteTracker(), tracking_oracle.ByteTracker()
    times = {after: [], before: []}
    last_id, switches, lengths, kept = {}, 0, {}, []
    for i, (seen, boxes, scores, classes) in enumerate(frames):
        if restart and i % restart == 0:
            after.reset(), before.reset()
        for tracker in ((after, before) if i % 2 else (before, after)):
            t0 = time.perf_counter()
            ids = tracker.update(boxes, scores, classes)
            times[tracker].append((time.perf_counter() - t0) * 1e3)
            if tracker is before:
                want = ids
            else:
                got = ids
        if got.tolist() != want.tolist():
            raise RuntimeError(f'frame {i}: the trackers disagree: {got} != {want}')
        kept.append(len(after.track_states()[0]))
        for obj, track in zip(seen.tolist(), got.tolist()):
            lengths[track] = lengths.get(track, 0) + 1
            if track == -1:
                continue
            switches += obj in last_id and last_id[obj] != track
            last_id[obj] = track
    untracked = lengths.pop(-1, 0)
    return (times[after][warmup:], times[before][warmup:], switches, untracked,
            float(np.mean(list(lengths.values()))), float(np.mean(kept[warmup:])))


def compare(frames, warmup, restart=0):
    """Median ms before and after, the speed-up and the mean kept tracks."""
    after, before, _, _, _, kept = run(frames, warmup, restart)
    a, b = float(np.median(after)), float(np.median(before))
    return dict(after_median_ms=a, before_median_ms=b, speedup=b / a, mean_kept_tracks=kept,
                mean_detections=float(np.mean([len(f[1]) for f in frames[warmup:]])))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--objects', type=int, default=50)
    parser.add_argument('--frames', type=int, default=1000)
    parser.add_argument('--warmup', type=int, default=50)
    parser.add_argument('--sweep', type=int, nargs='*', default=[5, 15, 30])
    parser.add_argument('--out', default=str(ROOT / 'bench/results/tracking_cpu.json'))
    args = parser.parse_args()
    after, before, switches, untracked, mean_len, kept = run(
        scene(args.objects, args.frames + args.warmup), args.warmup)
    speedups = {str(n): compare(scene(n, args.frames // 2 + args.warmup), args.warmup)
                for n in args.sweep}
    clip = vtest_frames()
    if clip is not None:  # frames 0-99 ten times over, the trackers restarted each time
        speedups['vtest.avi'] = compare(clip * 10, 0, restart=len(clip))
    doc = dict(what=__doc__.splitlines()[0], objects=args.objects, frames=args.frames,
               warmup=args.warmup, update=stats(after, mean=True),
               before=dict(code_commit=BEFORE_COMMIT,
                           code='test/core/tracking_oracle.py (the per-track tracker)',
                           update_same_run=stats(before, mean=True),
                           recorded=BEFORE_RECORDED),
               speedup_median=float(np.median(before) / np.median(after)),
               mean_kept_tracks=kept, same_ids=True, by_objects=speedups,
               by_objects_note='synthetic scenes of that many objects; vtest.avi: YOLOv3-tiny '
                               'persons >= 0.1 of frames 0-99 (cached by the equivalence test)',
               id_switches=switches, untracked_detections=untracked,
               mean_track_length_frames=mean_len,
               host_cpu=cpu_name(), host_load_average=os.getloadavg()[0],
               versions=versions('numpy'),
               date=time.strftime('%Y-%m-%d'))
    print(write_json(args.out, doc))
    print(doc['update'], f"before {doc['before']['update_same_run']['median_ms']:.3f} ms, "
          f"x{doc['speedup_median']:.1f}; id switches {switches}, untracked {untracked}, "
          f'mean track length {mean_len:.1f}')
    for n, row in speedups.items():
        print(f"{n}: {row['before_median_ms']:.3f} -> {row['after_median_ms']:.3f} ms "
              f"(x{row['speedup']:.1f}; {row['mean_detections']:.1f} detections, "
              f"{row['mean_kept_tracks']:.1f} tracks)")


if __name__ == '__main__':
    main()
