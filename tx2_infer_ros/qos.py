"""QoS of the image subscription: a fixed reliability, or 'auto' matched to the publishers
seen in the ROS graph; and the warning when a publisher's QoS cannot match it."""
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

try:  # Jazzy and later
    from rclpy.event_handler import SubscriptionEventCallbacks, qos_policy_name_from_kind
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks, qos_policy_name_from_kind

_RELIABILITY = {'best_effort': ReliabilityPolicy.BEST_EFFORT,
                'reliable': ReliabilityPolicy.RELIABLE}


def image_qos(reliability='best_effort', depth=1) -> QoSProfile:
    """Keep-last ``depth`` profile with the given reliability ('best_effort' or 'reliable')."""
    if reliability not in _RELIABILITY:
        raise ValueError(f"qos_reliability must be one of {', '.join(_RELIABILITY)}, "
                         f'got {reliability!r}')
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                      reliability=_RELIABILITY[reliability])


def publisher_reliabilities(node, topic) -> list:
    """'reliable' or 'best_effort' for each publisher of ``topic`` (a resolved name) that the
    ROS graph knows of."""
    return ['reliable' if info.qos_profile.reliability == ReliabilityPolicy.RELIABLE
            else 'best_effort' for info in node.get_publishers_info_by_topic(topic)]


def matching_reliability(reliabilities) -> str:
    """The subscription reliability for publishers of these reliabilities, as ``ros2 topic
    echo`` chooses: 'reliable' when every publisher is reliable, else 'best_effort' (which
    matches both kinds), also when no publisher is known yet."""
    if reliabilities and all(r == 'reliable' for r in reliabilities):
        return 'reliable'
    return 'best_effort'


def incompatible_qos_callbacks(logger, topic) -> SubscriptionEventCallbacks:
    """Event callbacks that warn, naming the policy, when a publisher's QoS is incompatible."""
    def on_incompatible(event):
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        hint = (' (the publisher is best_effort: set qos_reliability to best_effort)'
                if policy == 'RELIABILITY_QOS_POLICY' else '')
        logger.warn(f"a publisher on '{topic}' offers an incompatible QoS: {policy} "
                    f'({event.total_count} so far); no images will arrive from it{hint}')
    return SubscriptionEventCallbacks(incompatible_qos=on_incompatible)
