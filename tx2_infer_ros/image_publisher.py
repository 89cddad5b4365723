"""``image_publisher``: a camera stand-in that plays real photos as ``sensor_msgs/Image``.

Parameters: ``photos`` (paths; empty = the project's test photos), ``rate`` (Hz), ``count``
(frames, 0 = forever), ``encoding`` (any encoding the detector takes), ``width``/``height``
(resize; 0 = keep), ``frame_id``, ``reliability`` (best_effort: sensor-data QoS, what
cameras use; or reliable), ``wait_for_subscribers`` (publish nothing until the publisher has
that many subscriptions; 0 = start at once). Publishes on ``image``.
"""
import itertools

import cv2
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from tx2_infer_ros import conversions, executors


class ImagePublisher(Node):
    """Publishes the photos in a loop at ``rate`` Hz."""

    def __init__(self):
        super().__init__('image_publisher')
        self.declare_parameter('photos', rclpy.Parameter.Type.STRING_ARRAY)
        for name, default in (('rate', 10.0), ('count', 0), ('encoding', 'bgr8'),
                              ('width', 640), ('height', 480), ('frame_id', 'camera'),
                              ('reliability', 'best_effort'), ('wait_for_subscribers', 0)):
            self.declare_parameter(name, default)
        self.frames = [self._load(p) for p in self._photo_paths()]
        self.pub = self.create_publisher(Image, 'image', self._qos())
        self.cycle, self.sent, self.done = itertools.cycle(self.frames), 0, False
        self.timer = self.create_timer(1.0 / self.get_parameter('rate').value, self._tick)
        self.get_logger().info(f'publishing {len(self.frames)} photos at '
                               f"{self.get_parameter('rate').value} Hz on {self.pub.topic_name}")

    def _qos(self):
        reliability = self.get_parameter('reliability').value
        if reliability == 'best_effort':
            return qos_profile_sensor_data
        if reliability == 'reliable':
            return QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        raise ValueError(f'reliability must be best_effort or reliable, got {reliability!r}')

    def _photo_paths(self):
        paths = self.get_parameter_or('photos').value
        if not paths:
            from tx2_infer_core import assets
            paths = [str(p) for p in assets.fetch_photos()]
        return paths

    def _load(self, path):
        image = cv2.imread(path)
        if image is None:
            raise FileNotFoundError(f'cannot read photo {path}')
        w, h = self.get_parameter('width').value, self.get_parameter('height').value
        image = cv2.resize(image, (w, h)) if w and h else image
        return conversions.fill_image(Image(), image, self.get_parameter('encoding').value)

    def _tick(self):
        count = self.get_parameter('count').value
        if count and self.sent >= count:
            self.timer.cancel()
            self.done = True
            return
        if self.pub.get_subscription_count() < self.get_parameter('wait_for_subscribers').value:
            return
        msg = next(self.cycle)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.get_parameter('frame_id').value
        try:
            self.pub.publish(msg)
            self.sent += 1
        except rclpy.exceptions.RCLError as exc:  # history full when flat out
            self.get_logger().warn(f'publish failed: {exc}', throttle_duration_sec=5.0)


def main(args=None):
    """Entry point: ``python -m tx2_infer_ros.image_publisher``."""
    rclpy.init(args=args)
    node = ImagePublisher()
    try:
        executors.spin(node, until=lambda: node.done)  # exits after ``count`` frames
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
