"""Which rclpy executor spins our nodes: ``TX2_INFER_EXECUTOR`` = auto | events | single.

``events`` is rclpy's C++ events executor (``rclpy.experimental.EventsExecutor``, rclpy 9 /
Kilted): a subscription's callback runs from the middleware's new-message callback, without
rebuilding a wait set in Python on every wake-up. ``single`` is ``SingleThreadedExecutor``
(every distro). ``auto`` (the default) is events when rclpy has it, else single (older
rclpy: Humble, and Jazzy unless it gets the backport). The choice is an environment variable
because it is needed before the node exists, so it cannot be a parameter.

What our nodes use and the events executor supports: timers, services (lifecycle, parameters),
raw subscriptions, QoS event handlers (waitables without guard conditions), publishing from the
worker thread. It refuses guard conditions ("Guard conditions not supported"): none of our
nodes create one.
"""
import os

ENV_VARIABLE = 'TX2_INFER_EXECUTOR'
CHOICES = ('auto', 'events', 'single')
SPIN_TIMEOUT_S = 0.1  # also how often ``spin``'s ``until`` is checked when idle


def events_executor_class():
    """rclpy's ``EventsExecutor``, or None when this rclpy has none (before Kilted)."""
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:
        return None
    return EventsExecutor


def resolve_executor(name, events_available) -> str:
    """'events' or 'single' for the choice ``name`` (empty or None = auto); raises ValueError
    for an unknown name and RuntimeError for 'events' when this rclpy has none."""
    name = (name or 'auto').strip().lower()
    if name not in CHOICES:
        raise ValueError(f'{ENV_VARIABLE}={name!r}: expected one of {", ".join(CHOICES)}')
    if name == 'events' and not events_available:
        raise RuntimeError(f'{ENV_VARIABLE}=events: this rclpy has no '
                           'rclpy.experimental.EventsExecutor (use single or auto)')
    if name == 'auto':
        return 'events' if events_available else 'single'
    return name


def make_executor(name=None):
    """(resolved name, a new executor) for ``name`` (None: ``$TX2_INFER_EXECUTOR``, default
    auto); after ``rclpy.init``."""
    if name is None:
        name = os.environ.get(ENV_VARIABLE, 'auto')
    events = events_executor_class()
    chosen = resolve_executor(name, events is not None)
    if chosen == 'events':
        return chosen, events()
    from rclpy.executors import SingleThreadedExecutor
    return chosen, SingleThreadedExecutor()


def spin(node, name=None, until=lambda: False) -> None:
    """Spin ``node`` on the executor ``make_executor(name)`` until the context shuts down
    (Ctrl-C) or ``until()`` is true; logs which executor at the start.

    Always ``spin_once`` with a timeout: in rclpy 9.1.2 the events executor's ``spin()`` and
    untimed ``spin_once()`` ran no callback at all here (a timer never fired, a service never
    answered), so ``rclpy.spin`` cannot drive it; timed, a service answers in 0.5-0.8 ms. The
    executor is shut down on the way out, which for the events executor unhooks its callbacks
    from the node's entities before the node destroys them. A bad choice is logged as one line
    and ends the process with status 2 (SystemExit), not a traceback."""
    try:
        chosen, executor = make_executor(name)
    except (ValueError, RuntimeError) as exc:
        node.get_logger().error(str(exc))
        raise SystemExit(2) from None
    node.get_logger().info(f'executor: {chosen}')
    executor.add_node(node)
    try:
        while executor.context.ok() and not until():
            executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)
    finally:
        executor.shutdown()
