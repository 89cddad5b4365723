"""QoS of the image subscription and the warning when a publisher's QoS cannot match it."""
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


def incompatible_qos_callbacks(logger, topic) -> SubscriptionEventCallbacks:
    """Event callbacks that warn, naming the policy, when a publisher's QoS is incompatible."""
    def on_incompatible(event):
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        hint = (' (the publisher is best_effort: set qos_reliability to best_effort)'
                if policy == 'RELIABILITY_QOS_POLICY' else '')
        logger.warn(f"a publisher on '{topic}' offers an incompatible QoS: {policy} "
                    f'({event.total_count} so far); no images will arrive from it{hint}')
    return SubscriptionEventCallbacks(incompatible_qos=on_incompatible)
