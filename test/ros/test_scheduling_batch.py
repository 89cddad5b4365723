"""``FreshestSlots.take_many`` and the batch worker (no ROS): the newest frame of each camera
with one waiting, up to the batch, round-robin; the wait for other cameras; every frame taken
or counted stale."""
import threading
import time

from tx2_infer_ros.scheduling import FreshestSlots, Worker


def test_take_many_one_newest_frame_per_camera_round_robin():
    slots = FreshestSlots(['a', 'b', 'c', 'd'])
    for i in range(3):
        slots.put('b', f'b{i}')
    slots.put('d', 'd0')
    slots.put('a', 'a0')
    got = slots.take_many(4, timeout=0)
    assert [(k, item) for k, item, _ in got] == [('a', 'a0'), ('b', 'b2'), ('d', 'd0')]
    assert slots.drops == {'b': 2}
    assert slots.take_many(4, timeout=0) == []


def test_take_many_limit_continues_after_the_last_served():
    slots = FreshestSlots(['a', 'b', 'c'])
    served = []
    for _ in range(3):          # every camera always has a frame; batch of 2
        for key in 'abc':
            slots.put(key, key)
        served.append([k for k, _, _ in slots.take_many(2, timeout=0)])
    assert served == [['a', 'b'], ['c', 'a'], ['b', 'c']]
    assert slots.drops == {'c': 1, 'b': 1}   # the frames replaced while not served


def test_take_many_waits_for_the_other_cameras_up_to_wait():
    slots = FreshestSlots(['a', 'b'])
    slots.put('a', 'a0')
    threading.Timer(0.05, slots.put, ('b', 'b0')).start()
    got = slots.take_many(2, timeout=0, wait=2.0)
    assert [k for k, _, _ in got] == ['a', 'b']      # b came within the wait
    slots.put('a', 'a1')
    start = time.monotonic()
    got = slots.take_many(2, timeout=0, wait=0.1)
    assert [k for k, _, _ in got] == ['a'] and time.monotonic() - start >= 0.09
    slots.put('a', 'a2')
    start = time.monotonic()
    assert len(slots.take_many(2, timeout=0)) == 1 and time.monotonic() - start < 0.05


def test_close_wakes_a_waiting_take_many_and_counts_the_frames():
    slots = FreshestSlots(['a', 'b'])
    slots.put('a', 'a0')
    threading.Timer(0.05, slots.close).start()
    assert slots.take_many(2, timeout=0, wait=5.0) == []
    assert slots.drops == {'a': 1}


def test_batch_worker_hands_over_lists():
    slots, seen, done = FreshestSlots(['a', 'b', 'c']), [], threading.Event()

    def many(items):
        seen.append(sorted(k for k, _, _ in items))
        done.set()
    worker = Worker(slots, None, batch=4, handle_many=many, wait=0.5)
    for key in 'abc':
        slots.put(key, key)
    worker.start()
    assert done.wait(5)
    worker.stop()
    assert seen == [['a', 'b', 'c']]


def test_batch_worker_inline_only_without_wait():
    assert Worker(FreshestSlots(), None, inline=True, batch=4).inline
    assert not Worker(FreshestSlots(), None, inline=True, batch=4, wait=0.01).inline
    slots, seen = FreshestSlots(['a', 'b']), []
    worker = Worker(slots, None, inline=True, batch=2, handle_many=seen.append)
    slots.put('a', 1)
    slots.put('b', 2)
    assert worker.serve_inline() and [k for k, _, _ in seen[0]] == ['a', 'b']
