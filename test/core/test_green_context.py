"""cuda/green.py without a GPU: the order of context pushes and pops between pycuda and the
driver, against a fake driver that keeps the driver's context stack and a fake pycuda that
follows pycuda's own stack rules (src/cpp/cuda.hpp: ``context_push`` pops the driver's top when
pycuda's stack is not empty, then pushes; ``context::pop`` pops the driver's top, then pushes
pycuda's new top). The slice must be the driver's current context exactly while pycuda work
is meant to run in it. The real thing: test/cuda/test_green.py."""
import sys
import types
from types import SimpleNamespace

import pytest

from tx2_infer_core.cuda import green as green_mod
from tx2_infer_core.errors import Tx2InferError

PRIMARY, SLICE = 1001, 2002


class FakeDriver:
    """cuda-bindings' driver calls green.py makes, on one thread's context stack."""

    CUdevResourceType = SimpleNamespace(CU_DEV_RESOURCE_TYPE_SM='sm')
    CUgreenCtxCreate_flags = SimpleNamespace(CU_GREEN_CTX_DEFAULT_STREAM=1)

    def __init__(self, device_sms=132, granule=8, fail=''):
        self.stack, self.device_sms, self.granule, self.fail = [], device_sms, granule, fail
        self.destroyed = 0

    def _ok(self, name, *values):
        return (801,) if name == self.fail else (0, *values)

    def cuInit(self, flags):
        return self._ok('cuInit')

    def cuDeviceGet(self, ordinal):
        return self._ok('cuDeviceGet', ordinal)

    def cuDeviceGetDevResource(self, dev, kind):
        return self._ok('cuDeviceGetDevResource', _res(self.device_sms))

    def cuDevSmResourceSplitByCount(self, groups, whole, flags, count):
        got = min(-(-count // self.granule) * self.granule, whole.sm.smCount)
        return self._ok('cuDevSmResourceSplitByCount', [_res(got)], 1,
                        _res(whole.sm.smCount - got))

    def cuDevResourceGenerateDesc(self, resources, count):
        return self._ok('cuDevResourceGenerateDesc', 'desc')

    def cuGreenCtxCreate(self, desc, dev, flags):
        return self._ok('cuGreenCtxCreate', 'green')

    def cuCtxFromGreenCtx(self, green):
        return self._ok('cuCtxFromGreenCtx', SLICE)

    def cuGreenCtxDestroy(self, green):
        self.destroyed += 1
        return self._ok('cuGreenCtxDestroy')

    def cuCtxGetCurrent(self):
        return (0, self.stack[-1] if self.stack else 0)

    def cuCtxPopCurrent(self):
        return (0, self.stack.pop()) if self.stack else (201,)

    def cuCtxPushCurrent(self, ctx):
        self.stack.append(int(ctx))
        return (0,)


def _res(sms):
    return SimpleNamespace(sm=SimpleNamespace(smCount=sms))


def fake_pycuda(cu):
    """A pycuda.driver whose contexts follow pycuda's stack rules over ``cu.stack``."""
    drv = types.ModuleType('pycuda.driver')
    own = []  # pycuda's context stack

    class Context:
        def __init__(self, handle):
            self.handle = handle

        def push(self):
            if own:
                cu.stack.pop()
            cu.stack.append(self.handle)
            own.append(self)

        def detach(self):
            pass

        @staticmethod
        def pop():
            if own:
                cu.stack.pop()
            if not own:
                raise RuntimeError('context::pop: cannot pop non-current context')
            own.pop()
            if own:
                cu.stack.append(own[-1].handle)

        @staticmethod
        def get_current():
            return own[-1] if own else None

    class Device:
        def __init__(self, n):
            self.n = n

        @staticmethod
        def count():
            return 1

        def retain_primary_context(self):
            return Context(PRIMARY)

        def compute_capability(self):
            return 9, 0

        def name(self):
            return 'fake H200'

        def get_attribute(self, attr):
            return cu.device_sms

    drv.init, drv.Device, drv.Context, drv.own = (lambda: None), Device, Context, own
    drv.device_attribute = SimpleNamespace(MULTIPROCESSOR_COUNT='sms')
    return drv


@pytest.fixture
def fake(monkeypatch):
    cu = FakeDriver()
    drv = fake_pycuda(cu)
    package = types.ModuleType('pycuda')
    package.driver = drv
    monkeypatch.setitem(sys.modules, 'pycuda', package)
    monkeypatch.setitem(sys.modules, 'pycuda.driver', drv)
    monkeypatch.setattr(green_mod, 'driver_api', lambda: cu)
    return cu, drv


def test_the_slice_is_current_after_construction_and_inside_blocks(fake):
    cu, drv = fake
    green = green_mod.GreenContext(6)
    assert (green.sm_count, green.device_sm_count) == (8, 132)  # rounded up to the granule
    ctx = green_mod.SliceContext(green)
    assert ctx.sm_count == 8 and cu.stack == [SLICE] and len(drv.own) == 1
    with ctx:
        assert cu.stack == [SLICE]
        with ctx:
            assert cu.stack == [SLICE]
        assert cu.stack == [SLICE]
    assert cu.stack == [SLICE]  # the construction's level gets the slice back
    drv.Context.pop()
    assert cu.stack == [] and drv.own == []


def test_a_backend_lifecycle_leaves_nothing_current(fake):
    """CudaBackend: construct (prepare), pycuda's own pop, then ``with ctx`` per run."""
    cu, drv = fake
    green = green_mod.GreenContext(8)
    ctx = green_mod.SliceContext(green)
    drv.Context.pop()                      # the end of CudaBackend.prepare
    assert cu.stack == []
    for _ in range(2):                     # run(), timings
        with ctx:
            assert cu.stack == [SLICE]
        assert cu.stack == [] and drv.own == []


def test_green_context_releases_everything(fake):
    cu, drv = fake
    with green_mod.green_context(8) as ctx:
        assert cu.stack == [SLICE] and ctx.sm_count == 8
    assert cu.stack == [] and drv.own == [] and cu.destroyed == 1


def test_modules_are_unloaded_in_the_slice(fake):
    cu, _ = fake
    unloaded_in = []

    class Module:
        def __del__(self):
            unloaded_in.append(cu.stack[-1] if cu.stack else None)

    with green_mod.green_context(8) as ctx:
        ctx._modules['probe'] = Module()
    assert unloaded_in == [SLICE] and cu.stack == []


def test_a_smaller_slice_than_asked_is_refused(fake):
    cu, _ = fake
    cu.device_sms = 4
    with pytest.raises(Tx2InferError, match='4 SMs.*fewer than the 8'):
        green_mod.GreenContext(8)


@pytest.mark.parametrize('call', ['cuDevSmResourceSplitByCount', 'cuGreenCtxCreate',
                                  'cuCtxFromGreenCtx'])
def test_a_failed_driver_call_is_named(fake, call):
    cu, _ = fake
    cu.fail = call
    with pytest.raises(RuntimeError, match=f'{call} failed: CUDA error 801'):
        green_mod.GreenContext(8)
