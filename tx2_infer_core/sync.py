"""Approximate-time pairing of two message streams by stamp (colour and depth images).

message_filters is not on the package registries, so this is a small one of our own, pure and
ROS-free (stamps are integer nanoseconds). Policy: each stream keeps a bounded queue; when a
message arrives it is paired with the queued message of the other stream nearest in stamp,
if that is within ``slop``; a pair consumes both messages and every message of either stream
stamped earlier than the pair (they can no longer pair with anything newer). Unlike
message_filters' ApproximateTime it does not wait to see whether a nearer match arrives later:
the first match within ``slop`` wins, which keeps latency to one message.
"""
from collections import deque


class ApproxTimeSync:
    """Pairs messages of stream 0 (e.g. colour) and stream 1 (e.g. depth) by stamp."""

    def __init__(self, slop_ns, queue_size=5):
        if slop_ns < 0 or queue_size < 1:
            raise ValueError(f'need slop_ns >= 0 and queue_size >= 1, got {slop_ns}, '
                             f'{queue_size}')
        self.slop_ns, self.queue_size = int(slop_ns), int(queue_size)
        self.queues = (deque(maxlen=self.queue_size), deque(maxlen=self.queue_size))
        self.dropped = 0  # messages that left a queue unpaired

    def add(self, stream, stamp_ns, msg):
        """Add ``msg`` (stamped ``stamp_ns``) to ``stream`` (0 or 1). Returns the pair
        ``(msg0, msg1)`` it completes, or None (it waits in its queue, the oldest message
        there dropped when full)."""
        if stream not in (0, 1):
            raise ValueError(f'stream must be 0 or 1, got {stream}')
        other = self.queues[1 - stream]
        best = min(other, key=lambda item: abs(item[0] - stamp_ns), default=None)
        if best is None or abs(best[0] - stamp_ns) > self.slop_ns:
            queue = self.queues[stream]
            self.dropped += len(queue) == queue.maxlen
            queue.append((stamp_ns, msg))
            return None
        self._discard_before(min(best[0], stamp_ns), best)
        other.remove(best)
        return (msg, best[1]) if stream == 0 else (best[1], msg)

    def _discard_before(self, stamp_ns, keep):
        """Drop every queued message older than ``stamp_ns`` except ``keep``."""
        for queue in self.queues:
            old = [item for item in queue if item[0] < stamp_ns and item is not keep]
            for item in old:
                queue.remove(item)
            self.dropped += len(old)

    def reset(self):
        """Empty both queues."""
        for queue in self.queues:
            queue.clear()
