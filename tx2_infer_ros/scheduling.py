"""Freshest-frame scheduling: a keep-last-1 slot between the subscription and one worker.

The subscription callback ``put``s each message; a message still waiting when a newer one
arrives is replaced and counted as dropped ('stale'). The worker thread ``take``s the newest
message, so inference never runs on a frame while a newer one is waiting. No rclpy here.
"""
import threading
import time
from collections import Counter


class FreshestSlot:
    """A one-message mailbox that always holds the newest message."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self._closed = False
        self.drops = Counter()

    def put(self, item) -> None:
        """Store ``item`` (with its arrival time), replacing and counting a waiting one."""
        with self._cond:
            if self._item is not None:
                self.drops['stale'] += 1
            self._item = (item, time.monotonic())
            self._cond.notify()

    def take(self, timeout=None):
        """The newest (item, arrival time), waiting up to ``timeout`` s; None if none/closed."""
        with self._cond:
            if self._item is None and not self._closed:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return None if self._closed else item

    def clear(self) -> None:
        """Forget a waiting message (not counted: the node is being deactivated)."""
        with self._cond:
            self._item = None

    def close(self) -> None:
        """Wake and stop the worker."""
        with self._cond:
            self._closed = True
            self._item = None
            self._cond.notify_all()


class Worker:
    """A thread that runs ``handle(item, arrival)`` on the newest message of a slot."""

    def __init__(self, slot, handle, name='tx2_infer_worker'):
        self.slot, self.handle = slot, handle
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._stop = threading.Event()

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            got = self.slot.take(timeout=0.2)
            if got is not None:
                self.handle(*got)

    def stop(self, timeout=10.0) -> None:
        """Stop the thread after the frame in progress (if any) and wait for it."""
        self._stop.set()
        self.slot.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
