"""Freshest-frame scheduling: a keep-last-1 slot per camera between the subscriptions and one
worker.

Each subscription callback ``put``s its message under its camera's key; a message still waiting
when a newer one of the same camera arrives is replaced and counted as dropped (``drops[key]``,
'stale'). The worker thread ``take``s the newest message of the next camera with one waiting,
round-robin from the camera served last, so inference never runs on a frame while a newer one
of that camera waits, and a fast camera cannot starve a slow one. For an engine built for a
batch of N images the worker ``take_many``s instead: the newest message of up to N cameras with
one waiting, in the same round-robin order, optionally waiting a little for the other cameras
once the first frame is there. No rclpy here.
"""
import threading
import time
from collections import Counter


class FreshestSlots:
    """One-message mailboxes, one per key, each holding its newest message."""

    def __init__(self, keys=(None,)):
        self._cond = threading.Condition()
        self._keys = list(keys)
        self._items = {}  # key -> (item, arrival)
        self._next = 0  # index in _keys where the round-robin search starts
        self._closed = False
        self.drops = Counter()  # key -> messages replaced before the worker took them

    def put(self, key, item, wake=True) -> None:
        """Store ``item`` (with its arrival time) for ``key``, replacing and counting a
        waiting one; ``wake``: wake the worker thread for it (an inline caller that serves it
        itself passes False, then ``wake_if_waiting``)."""
        with self._cond:
            if key in self._items:
                self.drops[key] += 1
            self._items[key] = (item, time.monotonic())
            if wake:
                self._cond.notify()

    def wake_if_waiting(self) -> None:
        """Wake the worker thread if a message waits (one the caller did not serve)."""
        with self._cond:
            if self._items:
                self._cond.notify()

    def take(self, timeout=None):
        """(key, item, arrival time) of the next key with a message, round-robin, waiting up to
        ``timeout`` s; None if none came or the slots are closed."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if self._closed or not self._items:
                return None
            for step in range(len(self._keys)):
                index = (self._next + step) % len(self._keys)
                key = self._keys[index]
                if key in self._items:
                    self._next = index + 1
                    item, arrival = self._items.pop(key)
                    return key, item, arrival
            return None

    def take_many(self, limit, timeout=None, wait=0.0) -> list:
        """[(key, item, arrival time)] of up to ``limit`` keys with a message (one each, the
        newest), round-robin from the key after the last served; waits up to ``timeout`` s for
        a first message, then up to ``wait`` s from that message's arrival for more keys (until
        ``limit`` or every key has one). [] if none came or the slots are closed."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            want = min(limit, len(self._keys))
            if wait > 0 and self._items:
                deadline = min(arrival for _, arrival in self._items.values()) + wait
                while not self._closed and len(self._items) < want:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            if self._closed:
                return []
            taken = []
            for step in range(len(self._keys)):
                index = (self._next + step) % len(self._keys)
                key = self._keys[index]
                if key in self._items and len(taken) < limit:
                    item, arrival = self._items.pop(key)
                    taken.append((key, item, arrival))
                    last = index
            if taken:
                self._next = last + 1
            return taken

    def close(self) -> None:
        """Drop waiting messages (counted in ``drops``: no frame goes uncounted), wake and
        stop the worker."""
        with self._cond:
            self._closed = True
            for key in self._items:
                self.drops[key] += 1
            self._items.clear()
            self._cond.notify_all()


class Worker:
    """A thread that runs ``handle(key, item, arrival)`` on the messages ``slots`` give.

    ``inline``: ``put_and_serve`` (the subscription's call) runs the message in the caller's
    thread (``serve_inline``) when the worker is idle, saving the thread hand-off
    (0.4 ms measured); for frames much shorter than the frame period (the GPU path), since it
    holds the caller (the executor) for the frame. Every message still passes the slots, so
    the counting is the same.

    ``batch`` > 1: ``handle_many([(key, item, arrival), ...])`` runs up to ``batch`` messages
    at once (``take_many``, waiting ``wait`` s for more cameras; inline only when 0)."""

    def __init__(self, slots, handle, name='tx2_infer_worker', inline=False, batch=1,
                 handle_many=None, wait=0.0):
        self.slots, self.handle, self.inline = slots, handle, inline and not (batch > 1 and wait)
        self.batch, self.handle_many, self.wait = batch, handle_many, wait
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._stop = threading.Event()
        self._busy = threading.Lock()   # one frame at a time, in whichever thread

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.batch > 1:
                got = self.slots.take_many(self.batch, timeout=0.2, wait=self.wait)
                if got:
                    with self._busy:
                        self.handle_many(got)
                continue
            got = self.slots.take(timeout=0.2)
            if got is not None:
                with self._busy:
                    self.handle(*got)

    def put_and_serve(self, key, item) -> None:
        """A subscription's message: with ``inline``, run here if no frame is running, and
        wake the thread only for what is left waiting (waking it for a message this thread
        then takes costs a thread switch a frame); else hand it to the thread."""
        if not self.inline:
            self.slots.put(key, item)
            return
        self.slots.put(key, item, wake=False)
        self.serve_inline()
        self.slots.wake_if_waiting()

    def serve_inline(self) -> bool:
        """With ``inline``: run the next waiting message here if no frame is running; True
        when one ran."""
        if not self.inline or self._stop.is_set() or not self._busy.acquire(blocking=False):
            return False
        try:
            if self.batch > 1:
                got = self.slots.take_many(self.batch, timeout=0)
                if got:
                    self.handle_many(got)
                return bool(got)
            got = self.slots.take(timeout=0)
            if got is not None:
                self.handle(*got)
            return got is not None
        finally:
            self._busy.release()

    def stop(self, timeout=10.0) -> None:
        """Stop the thread after the frame in progress (if any) and wait for it."""
        self._stop.set()
        self.slots.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
