"""Per-frame cost of the tracker (``tx2_infer_core/tracking.py``) at 50 detections a frame.

A synthetic 1280x720 scene: 50 boxes of random size walking at constant random velocities
(bouncing off the borders), a pixel of box noise, scores uniform in [0.3, 1.0] (so some go
through ByteTrack's second, low-score stage), and 2% of detections missed each frame. Times
``ByteTracker.update`` over every frame after a warm-up (the tracker keeps its tracks, as in a
node), and counts against the scene's ground truth (a sanity figure: the scene is easy) the ID
switches (an object's track ID changing to another ID) and the untracked detections (ID -1:
mostly a low-score detection right after a missed frame, which ByteTrack's second stage does
not match to a lost track). Writes bench/results/tracking_cpu.json.
"""
import argparse
import time
from pathlib import Path

import numpy as np

from benchlib import cpu_name, stats, versions, write_json
from tx2_infer_core.tracking import ByteTracker

ROOT = Path(__file__).resolve().parents[1]

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


def run(objects, frames, warmup):
    """Time every frame's update; ID switches, untracked detections and the mean track
    length (frames)."""
    tracker, times, last_id, switches, lengths = ByteTracker(), [], {}, 0, {}
    for i, (seen, boxes, scores, classes) in enumerate(scene(objects, frames + warmup)):
        t0 = time.perf_counter()
        ids = tracker.update(boxes, scores, classes)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
        for obj, track in zip(seen.tolist(), ids.tolist()):
            lengths[track] = lengths.get(track, 0) + 1
            if track == -1:
                continue
            switches += obj in last_id and last_id[obj] != track
            last_id[obj] = track
    untracked = lengths.pop(-1, 0)
    return times, switches, untracked, float(np.mean(list(lengths.values())))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--objects', type=int, default=50)
    parser.add_argument('--frames', type=int, default=1000)
    parser.add_argument('--warmup', type=int, default=50)
    parser.add_argument('--out', default=str(ROOT / 'bench/results/tracking_cpu.json'))
    args = parser.parse_args()
    times, switches, untracked, mean_len = run(args.objects, args.frames, args.warmup)
    doc = dict(what=__doc__.splitlines()[0], objects=args.objects, frames=args.frames,
               warmup=args.warmup, update=stats(times, mean=True),
               id_switches=switches, untracked_detections=untracked,
               mean_track_length_frames=mean_len,
               host_cpu=cpu_name(), versions=versions('numpy'),
               date=time.strftime('%Y-%m-%d'))
    print(write_json(args.out, doc))
    print(doc['update'], f'id switches {switches}, untracked {untracked}, '
          f'mean track length {mean_len:.1f}')


if __name__ == '__main__':
    main()
