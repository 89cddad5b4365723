"""Drawing pose detections (boxes, keypoints, skeleton) and ``tx2-infer run --pose``."""
import sys
from pathlib import Path

import cv2
import numpy as np

from .detect import class_color, preprocess
from .errors import InputError
from .heads_pose import COCO_KEYPOINTS, COCO_SKELETON, decode_pose

KEYPOINT_MIN_VISIBILITY = 0.5


def draw_poses(image_bgr, poses, min_visibility=KEYPOINT_MIN_VISIBILITY):
    """A copy of the image with each person's box, score, limbs and visible keypoints."""
    out = image_bgr.copy()
    thickness = max(1, round(min(out.shape[:2]) / 300))
    for i, pose in enumerate(poses):
        color = class_color(i)
        x1, y1, x2, y2 = (int(round(v)) for v in pose.box)
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), color, thickness)
        cv2.putText(out, f'{pose.score:.2f}', (x1, max(y1 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5, color, 1, cv2.LINE_AA)
        draw_keypoints(out, pose.keypoints, color, min_visibility)
    return out


def draw_keypoints(image_bgr, keypoints, color, min_visibility=KEYPOINT_MIN_VISIBILITY):
    """Draw one object's keypoints (K x 3) whose visibility reaches ``min_visibility`` as red
    dots, and (COCO's 17) the limbs between two such in ``color``; in place."""
    thickness = max(1, round(min(image_bgr.shape[:2]) / 300))
    shown = keypoints[:, 2] >= min_visibility
    if len(keypoints) == len(COCO_KEYPOINTS):
        for a, b in COCO_SKELETON:
            if shown[a] and shown[b]:
                cv2.line(image_bgr, _point(keypoints[a]), _point(keypoints[b]), color,
                         thickness, cv2.LINE_AA)
    for k in np.flatnonzero(shown):
        cv2.circle(image_bgr, _point(keypoints[k]), thickness + 2, (0, 0, 255), -1,
                   cv2.LINE_AA)
    return image_bgr


def draw_detection_keypoints(image_bgr, detections, min_visibility=KEYPOINT_MIN_VISIBILITY,
                             track_ids=None):
    """The skeletons of ``[Detection]`` with ``keypoints`` drawn on the image, in place; the
    limbs take the box's colour (``detect.draw_detections``: by track ID, else class)."""
    for i, det in enumerate(detections):
        if det.keypoints is not None:
            track = -1 if track_ids is None else int(track_ids[i])
            color = class_color(track if track >= 0 else det.class_id)
            draw_keypoints(image_bgr, det.keypoints, color, min_visibility)
    return image_bgr


def _point(kpt):
    return int(round(float(kpt[0]))), int(round(float(kpt[1])))


def format_pose(name, pose, min_visibility=KEYPOINT_MIN_VISIBILITY):
    """One printed line: image, score, box, number of visible keypoints."""
    x1, y1, x2, y2 = pose.box
    visible = int((pose.keypoints[:, 2] >= min_visibility).sum())
    return (f'{name}: person {pose.score:.3f}  [{x1:7.1f} {y1:7.1f} {x2:7.1f} {y2:7.1f}]  '
            f'{visible}/{len(pose.keypoints)} keypoints')


def pose_images(engine, images, out_dir, num_keypoints, params):
    """``run --pose K``: decode each image's pose head, print, write annotated copies."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = engine.input_specs[0]
    rows = engine.output_specs[0].shape[1]
    num_classes = rows - 4 - 3 * num_keypoints
    if num_classes < 1:
        raise InputError(f'--pose {num_keypoints}: the model has {rows} output rows, too few '
                         f'for 4 box values, a class and {num_keypoints} keypoints')
    total = 0
    for path in images:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f'cannot read image {path}')
        x, lb = preprocess(image, spec.shape, engine.meta.get('input_format'))
        output = engine.run({spec.name: x})[engine.output_specs[0].name]
        poses = decode_pose(output, lb, num_classes, num_keypoints, params.conf_threshold,
                            params.iou_threshold, params.max_detections)
        for pose in poses:
            print(format_pose(Path(path).name, pose))
        target = out_dir / Path(path).name
        if not cv2.imwrite(str(target), draw_poses(image, poses)):
            raise InputError(f'cannot write annotated image {target}')
        total += len(poses)
    print(f'{total} people in {len(images)} images; annotated images in {out_dir}',
          file=sys.stderr)
    return total
