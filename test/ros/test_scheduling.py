"""Freshest-frame slots, one per camera (no ROS): the newest frame per camera, stale frames
counted per camera, cameras served round-robin, close wakes the worker."""
import threading
import time

from tx2_infer_ros.scheduling import FreshestSlots, Worker


def test_newest_frame_per_camera_and_stale_counted_per_camera():
    slots = FreshestSlots(['front', 'rear'])
    for i in range(3):
        slots.put('front', f'f{i}')
    slots.put('rear', 'r0')
    assert slots.take(0)[:2] == ('front', 'f2')
    assert slots.take(0)[:2] == ('rear', 'r0')
    assert slots.take(0) is None
    assert slots.drops == {'front': 2}


def test_cameras_are_served_round_robin():
    slots = FreshestSlots(['front', 'rear', 'side'])
    served = []
    for _ in range(4):  # front always has a new frame; rear and side one each
        slots.put('front', 'f')
        if not served:
            slots.put('rear', 'r')
            slots.put('side', 's')
        served.append(slots.take(0)[0])
    assert served == ['front', 'rear', 'side', 'front']


def test_worker_gets_camera_frame_and_arrival_and_stops():
    slots, seen, done = FreshestSlots(['cam']), [], threading.Event()

    def handle(key, item, arrival):
        seen.append((key, item, arrival > 0))
        done.set()
    worker = Worker(slots, handle)
    worker.start()
    slots.put('cam', 'frame')
    assert done.wait(5)
    worker.stop()
    assert seen == [('cam', 'frame', True)] and slots.take(0) is None


def test_frames_waiting_at_close_are_counted_stale():
    slots = FreshestSlots(['front', 'rear'])
    slots.put('front', 'f0')
    slots.put('front', 'f1')
    slots.put('rear', 'r0')
    slots.close()
    assert slots.drops == {'front': 2, 'rear': 1} and slots.take(0) is None


def test_inline_worker_runs_the_frame_in_the_callers_thread_when_idle():
    slots = FreshestSlots(['a'])
    ran = []
    worker = Worker(slots, lambda key, item, arrival: ran.append(
        (item, threading.get_ident())), inline=True)
    slots.put('a', 1)
    assert worker.serve_inline()
    assert ran == [(1, threading.get_ident())]
    assert not worker.serve_inline()        # nothing waits


def test_inline_worker_leaves_the_frame_to_the_thread_while_one_runs():
    slots = FreshestSlots(['a'])
    started, release, ran = threading.Event(), threading.Event(), []

    def handle(key, item, arrival):
        ran.append((item, threading.get_ident()))
        if item == 1:
            started.set()
            release.wait(5)
    worker = Worker(slots, handle, inline=True)
    worker.start()
    slots.put('a', 1)                       # the worker thread takes it and blocks
    assert started.wait(5)
    slots.put('a', 2)
    answer = []
    caller = threading.Thread(target=lambda: answer.append(worker.serve_inline()))
    caller.start()
    caller.join(3)                          # busy: the caller returns at once, not after
    assert not caller.is_alive() and answer == [False]
    release.set()
    deadline = time.monotonic() + 5
    while len(ran) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert [item for item, _ in ran] == [1, 2]
    assert ran[1][1] == ran[0][1]           # frame 2 ran in the worker thread
    assert slots.drops['a'] == 0


def test_a_worker_without_inline_never_runs_in_the_caller():
    slots = FreshestSlots(['a'])
    worker = Worker(slots, lambda *args: None)
    slots.put('a', 1)
    assert not worker.serve_inline()


def test_put_without_wake_leaves_the_thread_asleep_until_wake_if_waiting():
    slots = FreshestSlots(['a'])
    got = []
    taker = threading.Thread(target=lambda: got.append(slots.take(timeout=30)))
    taker.start()
    time.sleep(0.05)                        # the taker waits on the slots
    slots.put('a', 1, wake=False)
    taker.join(0.3)
    assert taker.is_alive() and not got     # not woken for a message its caller serves
    slots.wake_if_waiting()
    taker.join(5)
    assert not taker.is_alive() and got[0][:2] == ('a', 1)
    slots.wake_if_waiting()                 # nothing waits: no-op


def test_put_and_serve_runs_inline_without_the_thread_and_hands_over_when_busy():
    slots = FreshestSlots(['a'])
    ran, started, release = [], threading.Event(), threading.Event()

    def handle(key, item, arrival):
        ran.append((item, threading.get_ident()))
        if item == 'slow':
            started.set()
            release.wait(5)
    worker = Worker(slots, handle, inline=True)
    worker.start()
    worker.put_and_serve('a', 'here')       # idle: runs in this thread
    assert ran == [('here', threading.get_ident())]
    caller = threading.Thread(target=lambda: worker.put_and_serve('a', 'slow'))
    caller.start()
    assert started.wait(5)                  # the caller's thread runs 'slow'
    worker.put_and_serve('a', 'later')      # busy: left waiting, the thread is woken
    release.set()
    caller.join(5)
    deadline = time.monotonic() + 5
    while len(ran) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop()
    assert [item for item, _ in ran] == ['here', 'slow', 'later']
    assert ran[2][1] not in (threading.get_ident(), caller.ident)   # the worker thread's
    plain = Worker(FreshestSlots(['b']), lambda *args: ran.append(args[1]))
    plain.put_and_serve('b', 'queued')      # without inline: only queued for the thread
    assert ran[-1] != 'queued' and plain.slots.take(timeout=0)[1] == 'queued'
