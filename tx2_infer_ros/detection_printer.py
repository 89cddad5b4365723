"""``detection_printer``: prints each ``vision_msgs/Detection2DArray`` readably and saves the
annotated frames; on exit writes a JSON summary (frames, fps, latency, the detector's drops).

Parameters: ``labels_path`` (class names; empty = COCO), ``save_dir`` (annotated frames;
empty = do not save), ``summary_path`` (JSON written on exit; empty = none).
"""
import json
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from tx2_infer_core import detect
from tx2_infer_ros import conversions, executors


def describe(msg, labels) -> str:
    """One readable line per detection under a line naming the frame."""
    stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
    lines = [f'frame {msg.header.frame_id} @ {stamp:.3f}: {len(msg.detections)} detections']
    for d in conversions.detections_from_array(msg):
        name = detect.label_for(d['class_id'], labels)
        lines.append(f"  {name:<14} {d['score']:.2f}  box x1={d['x1']:.0f} y1={d['y1']:.0f} "
                     f"x2={d['x2']:.0f} y2={d['y2']:.0f}")
    return '\n'.join(lines)


class DetectionPrinter(Node):
    """Prints detections, saves annotated images, keeps latency and the latest diagnostics."""

    def __init__(self):
        super().__init__('detection_printer')
        for name in ('labels_path', 'save_dir', 'summary_path'):
            self.declare_parameter(name, '')
        labels_path = self.get_parameter('labels_path').value
        if not labels_path:
            from tx2_infer_core import assets
            labels_path = str(assets.fetch('coco.names'))
        self.labels = detect.load_labels(labels_path)
        self.save_dir = self.get_parameter('save_dir').value
        self.latencies, self.arrivals, self.diag, self.saved = [], [], {}, 0
        self.create_subscription(Detection2DArray, 'detections', self._on_detections, 10)
        self.create_subscription(Image, 'annotated_image', self._on_annotated, 2)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)

    def _on_detections(self, msg):
        now = self.get_clock().now().nanoseconds
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        self.latencies.append((now - stamp) * 1e-6)
        self.arrivals.append(time.monotonic())
        print(describe(msg, self.labels), flush=True)

    def _on_annotated(self, msg):
        if self.save_dir:
            Path(self.save_dir).mkdir(parents=True, exist_ok=True)
            path = Path(self.save_dir) / f'annotated_{self.saved:04d}.jpg'
            cv2.imwrite(str(path), conversions.image_to_bgr(msg))
            self.saved += 1

    def _on_diag(self, msg):
        for status in msg.status:
            if 'tx2_infer detector' in status.name:
                self.diag = {kv.key: kv.value for kv in status.values}

    def summary(self) -> dict:
        """frames, fps, latency p50/p99 (ms), the detector's drop counts, saved images."""
        lat = np.asarray(self.latencies)
        span = self.arrivals[-1] - self.arrivals[0] if len(self.arrivals) > 1 else 0
        return {'frames': len(lat), 'fps': (len(lat) - 1) / span if span else 0.0,
                'latency_p50_ms': float(np.percentile(lat, 50)) if lat.size else None,
                'latency_p99_ms': float(np.percentile(lat, 99)) if lat.size else None,
                'drops': {k[8:]: int(v) for k, v in self.diag.items()
                          if k.startswith('dropped_')},
                'detector': {k: self.diag.get(k) for k in ('backend', 'precision', 'model',
                                                           'infer_ms')},
                'saved_images': self.saved}


def main(args=None):
    """Entry point: ``python -m tx2_infer_ros.detection_printer``."""
    rclpy.init(args=args)
    node = DetectionPrinter()
    try:
        executors.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        path = node.get_parameter('summary_path').value
        if path:
            Path(path).write_text(json.dumps(node.summary(), indent=2))
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
