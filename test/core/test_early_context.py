"""The CUDA context made in a thread while a plan loads (``cuda.runtime.EarlyContext``), with
a stand-in for pycuda.driver (no GPU here): the context is retained in the thread, held until
``release()``, and released in that same thread (pycuda's rule); Engine.load starts one only
for the cuda backend and releases it whether the load succeeds or fails."""
import sys
import threading
import types

import pytest

from tx2_infer_core.cuda import runtime
from tx2_infer_core.engine import Engine


class FakeDriver(types.ModuleType):
    """pycuda.driver's calls EarlyContext makes, recorded with the thread that made them."""

    def __init__(self, fail=False):
        super().__init__('pycuda.driver')
        self.calls, self.fail, self.retained = [], fail, threading.Event()
        driver = self

        class Context:
            def detach(self):
                driver.calls.append(('detach', threading.current_thread().name))

        class Device:
            def __init__(self, index):
                self.index = index

            def retain_primary_context(self):
                driver.calls.append(('retain', threading.current_thread().name))
                driver.retained.set()
                return Context()

        self.Device = Device

    def init(self):
        if self.fail:
            raise RuntimeError('no CUDA driver')


@pytest.fixture
def fake_driver(monkeypatch):
    def install(fail=False):
        driver = FakeDriver(fail)
        package = types.ModuleType('pycuda')
        package.driver = driver
        monkeypatch.setitem(sys.modules, 'pycuda', package)
        monkeypatch.setitem(sys.modules, 'pycuda.driver', driver)
        return driver
    return install


def test_the_context_is_held_until_release_and_released_by_its_own_thread(fake_driver):
    driver = fake_driver()
    early = runtime.EarlyContext(0)
    assert driver.retained.wait(5)
    assert driver.calls == [('retain', 'tx2-cuda-context')]   # held: not released yet
    early.release()
    assert driver.calls == [('retain', 'tx2-cuda-context'), ('detach', 'tx2-cuda-context')]


def test_without_a_driver_the_thread_ends_and_release_returns(fake_driver):
    driver = fake_driver(fail=True)
    early = runtime.EarlyContext(0)
    early.release()
    assert driver.calls == [] and not early._thread.is_alive()


class Recorder:
    made = []

    def __init__(self, device=0):
        self.device, self.released = device, False
        Recorder.made.append(self)

    def release(self):
        self.released = True


def relu_plan(folder):
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node('Relu', ['x'], ['y'])], 'g', [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)]),
              str(folder / 'm.onnx'))
    Engine.build(folder / 'm.onnx').save(folder / 'm.tx2plan')
    return folder / 'm.tx2plan'


def test_engine_load_starts_one_for_cuda_and_releases_it_on_failure(tmp_path, monkeypatch):
    """A cuda load (no GPU here: the backend fails) starts one for the device of its options
    and releases it on the way out of the failure; a numpy load starts none."""
    import numpy as np
    plan = relu_plan(tmp_path)
    monkeypatch.setattr(runtime, 'EarlyContext', Recorder)
    Recorder.made = []
    with Engine.load(plan, backend='numpy') as engine:
        assert np.array_equal(engine.run(np.array([[-1, 2]], np.float32))['y'], [[0, 2]])
    assert Recorder.made == []
    with pytest.raises(Exception) as failure:
        Engine.load(plan, backend='cuda', backend_options={'device': 1})
    assert [(r.device, r.released) for r in Recorder.made] == [(1, True)], failure.value
