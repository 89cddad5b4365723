"""The detector node's cameras: one per image topic, each with its subscription (reliability
fixed or matched to its publishers), its output publishers and its statistics.

Topic names (``params.camera_topics``, ``params.output_namespace``): the ``cameras`` parameter
lists image topics (empty: the one topic ``image``); a camera publishes ``detections`` and
``annotated_image`` in its topic's namespace (``front/image_raw`` -> ``front/detections``;
``image`` -> ``detections``), so two cameras need topics in different namespaces. With
``input_type: compressed`` a camera subscribes to ``<topic>/compressed``.
"""
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray

from tx2_infer_ros.params import output_namespace
from tx2_infer_ros.qos import (image_qos, incompatible_qos_callbacks, matching_reliability,
                               publisher_reliabilities)
from tx2_infer_ros.stats import NodeStats


class Camera:
    """One image topic: its output publishers (made now), its subscription (``subscribe``)
    and its per-camera statistics."""

    def __init__(self, node, topic, compressed=False, depth=1):
        self.node, self.topic = node, topic
        self.compressed, self.depth = compressed, depth
        self.stats = NodeStats()
        self.sub, self.reliability = None, ''
        prefix = output_namespace(topic)
        self.detections = node.create_publisher(Detection2DArray, prefix + 'detections', 10)
        self.annotated = node.create_publisher(Image, prefix + 'annotated_image', 2)

    def subscribe(self, on_message, reliability) -> None:
        """(Re)create the subscription with ``reliability``; ``on_message(camera, data)`` gets
        the serialised message (``raw``: read as a view by ``cdr``, no message object)."""
        self.unsubscribe()
        topic = self.topic + '/compressed' if self.compressed else self.topic
        self.sub = self.node.create_subscription(
            CompressedImage if self.compressed else Image, topic,
            lambda data: on_message(self, data), image_qos(reliability, self.depth),
            event_callbacks=incompatible_qos_callbacks(self.node.get_logger(), topic), raw=True)
        self.reliability = reliability
        self._on_message = on_message

    def match_publishers(self) -> None:
        """Resubscribe when this topic's publishers call for another reliability; with no
        publisher the subscription stays as it is."""
        found = publisher_reliabilities(self.node, self.sub.topic_name)
        wanted = matching_reliability(found)
        if found and wanted != self.reliability:
            self.node.get_logger().info(f'image subscription {self.reliability} -> {wanted}, '
                                        f'matching the publishers of {self.sub.topic_name}')
            self.subscribe(self._on_message, wanted)

    def unsubscribe(self) -> None:
        """Destroy the subscription (no new frames from this camera)."""
        if self.sub is not None:
            self.node.destroy_subscription(self.sub)
        self.sub = None

    def close(self) -> None:
        """Destroy the subscription and the publishers."""
        self.unsubscribe()
        self.node.destroy_publisher(self.detections)
        self.node.destroy_publisher(self.annotated)
