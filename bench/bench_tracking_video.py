"""Tracking on a real video: YOLOv3-tiny (persons) + the ByteTrack-class tracker on vtest.avi.

The clip is OpenCV's ``vtest.avi`` (768x576, 795 frames of pedestrians on a square, from
Debian's opencv-doc; ``assets.fetch('vtest.avi')``). The first ``--frames`` frames go through
``Detector`` (Darknet YOLOv3-tiny, COCO, class 0 'person' only, score >= ``--conf``) and one
``ByteTracker`` (ByteTrack's own thresholds: high 0.5, low 0.1), as the node runs them.

Counted without ground truth, by two simple rules on consecutive frames (IoU of boxes):

- *fragment*: a detection gets an ID never seen before, lying on the last box (IoU >= 0.5)
  of an ID that vanished in the last 30 frames (the track buffer) and has not come back: the
  same person, detected again (or still), was given a new ID;
- *takeover*: an ID seen in frames t-1 and t whose box in t overlaps the t-1 box of another ID
  (IoU >= 0.5) more than its own t-1 box (and its own IoU < 0.5), while that other ID is gone
  in frame t: two tracks merged or swapped.

ID switches = fragments + takeovers (also given with IoU >= 0.3, small boxes that move
jump more). Also: mean track length (frames an ID was given to a
detection), IDs given, untracked detections (low-score ones that extended no track). A
contact sheet of 12 evenly spaced frames with boxes and IDs goes to
bench/results/tracking_video_sheet.png to check the IDs by eye; the figures to
bench/results/tracking_video_cpu.json.
"""
import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from benchlib import cpu_name, versions, write_json
from tx2_infer_core import assets, detect
from tx2_infer_core.detect_params import DetectParams
from tx2_infer_core.tracking import ByteTracker, TrackParams, iou_matrix
from tx2_infer_ros.pipeline import load_detector

ROOT = Path(__file__).resolve().parents[1]
CLIP = 'vtest.avi'
SAME = 0.5  # IoU from which two boxes are the same object in consecutive frames


def read_frames(path, count):
    """The first ``count`` frames of the video at ``path`` (BGR uint8)."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def track_video(detector, frames, conf):
    """Per frame: (detections, their track IDs); and the mean tracker update ms."""
    tracker, params = ByteTracker(TrackParams()), DetectParams(conf_threshold=conf, classes=[0])
    out, update_ms = [], []
    for frame in frames:
        dets = detector.detect(frame, params)
        t0 = time.perf_counter()
        ids = tracker.update([(d.x1, d.y1, d.x2, d.y2) for d in dets], [d.score for d in dets],
                             [d.class_id for d in dets])
        update_ms.append((time.perf_counter() - t0) * 1e3)
        out.append((dets, ids))
    return out, float(np.mean(update_ms))


def id_boxes(dets, ids) -> dict:
    """Track ID -> box (x1 y1 x2 y2) of one frame's tracked detections."""
    return {int(t): (d.x1, d.y1, d.x2, d.y2) for d, t in zip(dets, ids) if t >= 0}


def iou(a, b) -> float:
    return float(iou_matrix([a], [b])[0, 0])


def count_switches(tracked, same=SAME, window=30):
    """(fragments, takeovers, events) by the rules of the module docstring; ``events`` lists
    (frame index, rule, old ID, new ID)."""
    seen, prev, vanished, events = set(), {}, {}, []  # vanished: ID -> (frame, last box)
    for i, (dets, ids) in enumerate(tracked):
        now = id_boxes(dets, ids)
        vanished.update({t: (i, box) for t, box in prev.items() if t not in now})
        vanished = {t: v for t, v in vanished.items() if t not in now and i - v[0] < window}
        gone = {t: box for t, box in prev.items() if t not in now}
        for t, box in now.items():
            if t not in seen:  # a new ID: does it sit on the last box of a vanished one?
                old = max(vanished, key=lambda g: iou(box, vanished[g][1]), default=None)
                if old is not None and iou(box, vanished[old][1]) >= same:
                    events.append((i, 'fragment', old, t))
                    vanished.pop(old)
            elif t in prev and iou(box, prev[t]) < same:
                other = max(gone, key=lambda g: iou(box, gone[g]), default=None)
                if other is not None and iou(box, gone[other]) >= same:
                    events.append((i, 'takeover', other, t))
                    vanished.pop(other, None)
        seen.update(now)
        prev = now
    fragments = sum(e[1] == 'fragment' for e in events)
    return fragments, len(events) - fragments, events


def draw_ids(tile, dets, ids, scale):
    """Boxes of the tracked detections and their IDs on a ``scale``-resized frame."""
    for d, t in zip(dets, ids.tolist()):
        if t < 0:
            continue
        color = detect.class_color(t)
        p1 = (int(d.x1 * scale), int(d.y1 * scale))
        cv2.rectangle(tile, p1, (int(d.x2 * scale), int(d.y2 * scale)), color, 1)
        cv2.putText(tile, str(t), (p1[0], max(p1[1] - 2, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    color, 1, cv2.LINE_AA)


def contact_sheet(frames, tracked, count=12, columns=3, width=1200, keep=0.75):
    """``count`` evenly spaced frames with the tracked boxes and their IDs, ``columns``
    wide; only the top ``keep`` of each frame (vtest's bottom quarter is lawn)."""
    picks = np.linspace(0, len(frames) - 1, count).round().astype(int)
    tile_w = width // columns
    tiles = []
    for i in picks:
        scale = tile_w / frames[i].shape[1]
        tile = cv2.resize(frames[i], (tile_w, round(frames[i].shape[0] * scale)),
                          interpolation=cv2.INTER_AREA)
        draw_ids(tile, *tracked[i], scale)
        tile = tile[:round(tile.shape[0] * keep)]
        cv2.putText(tile, f'frame {i}', (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (255, 255, 255), 2, cv2.LINE_AA)
        tiles.append(tile)
    rows = [np.hstack(tiles[r:r + columns]) for r in range(0, len(tiles), columns)]
    return np.vstack(rows), picks.tolist()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--frames', type=int, default=300)
    parser.add_argument('--conf', type=float, default=0.1)
    parser.add_argument('--backend', default='cpu')
    parser.add_argument('--out', default=str(ROOT / 'bench/results/tracking_video_cpu.json'))
    parser.add_argument('--sheet', default=str(ROOT / 'bench/results/tracking_video_sheet.png'))
    args = parser.parse_args()
    frames = read_frames(assets.fetch(CLIP), args.frames)
    detector, info = load_detector(backend=args.backend)
    t0 = time.perf_counter()
    tracked, update_ms = track_video(detector, frames, args.conf)
    seconds = time.perf_counter() - t0
    detector.engine.close()
    fragments, takeovers, events = count_switches(tracked)
    loose = count_switches(tracked, same=0.3)
    lengths = {}
    for _, ids in tracked:
        for t in ids.tolist():
            lengths[t] = lengths.get(t, 0) + 1
    untracked = lengths.pop(-1, 0)
    sheet, picks = contact_sheet(frames, tracked)
    # 5 bits a channel (as a JPEG would lose): the PNG stays under 1 MB.
    cv2.imwrite(args.sheet, sheet // 8 * 8 + 4, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    doc = dict(what=__doc__.splitlines()[0], clip=CLIP,
               clip_source='Debian package opencv-doc, '
                           'usr/share/doc/opencv-doc/examples/data/vtest.avi',
               frame_range=[0, len(frames) - 1], frame_size=list(frames[0].shape[1::-1]),
               model=info['model'], backend=info['backend'], input_shape=info['input_shape'],
               classes=['person'], conf_threshold=args.conf, track_params=vars(TrackParams()),
               switch_rule=f'fragment + takeover, IoU >= {SAME} (see the module docstring)',
               id_switches=fragments + takeovers, fragments=fragments, takeovers=takeovers,
               id_switches_at_iou_0_3=loose[0] + loose[1],
               switch_events=[dict(frame=f, rule=r, old_id=a, new_id=b)
                              for f, r, a, b in events],
               track_ids=len(lengths),
               short_tracks_under_5_frames=sum(n < 5 for n in lengths.values()),
               mean_track_length_frames=float(np.mean(list(lengths.values()))),
               tracked_detections=int(sum(lengths.values())), untracked_detections=untracked,
               mean_detections_per_frame=float(np.mean([len(d) for d, _ in tracked])),
               tracker_update_mean_ms=update_ms, detect_and_track_s=seconds,
               sheet=Path(args.sheet).name, sheet_frames=picks,
               host_cpu=cpu_name(), versions=versions('numpy', 'onnxruntime',
                                                      'opencv-python-headless'),
               date=time.strftime('%Y-%m-%d'))
    print(write_json(args.out, doc))
    print(f"{len(frames)} frames: {doc['track_ids']} IDs, mean track length "
          f"{doc['mean_track_length_frames']:.1f}, ID switches {doc['id_switches']} "
          f'({fragments} fragments, {takeovers} takeovers), {seconds:.1f} s')


if __name__ == '__main__':
    main()
