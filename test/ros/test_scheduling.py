"""Freshest-frame slots, one per camera (no ROS): the newest frame per camera, stale frames
counted per camera, cameras served round-robin, close wakes the worker."""
import threading

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
