"""A host emulation of the logic and data movement lowerings (``cuda/lower_logic.py``,
``cuda/lower_movement.py``) for their CPU tests, and their ONNX node cases as graphs.

``emulate(graph, feeds, launched)`` lowers ``graph`` for sm_90 and walks its nodes over an
arena of float32 elements (NaN at first: an element never written shows) and the weight
buffer's FP16 values: a node whose op is in ``launched`` runs its launches, the copies as
``launch_emulator`` runs them (each element its View records name) and the generated pointwise
launches by their program (the numpy ops) over the index maths of ``codegen_pointwise``, as
``test_codegen_pointwise.emulate`` runs them, output rounded to FP16; any other node runs the
numpy op on its input slots and writes its result through its output slot.
"""
import contextlib
import os

import numpy as np
from launch_emulator import arena_memory, run_launch, slot_index, write_slot
from test_codegen_pointwise import emulate as emulate_pointwise

from tx2_infer_core.cuda import codegen_pointwise as cg
from tx2_infer_core.cuda.launch import Ref
from tx2_infer_core.cuda.lower_ops import io_launch
from tx2_infer_core.cuda.lowering import lower_graph
from tx2_infer_core.ir import Graph, Value
from tx2_infer_core.ops import run_node

COMPARE = ('Equal', 'Less', 'LessOrEqual', 'Greater', 'GreaterOrEqual')
LOGIC = ('And', 'Or', 'Xor')
LOGIC_OPS = COMPARE + LOGIC + ('Not', 'IsNaN', 'IsInf', 'Where', 'Mod', 'Sum', 'Mean')


@contextlib.contextmanager
def recorded_programs():
    """{id(launch): (steps, input slots, output slot)} of every generated pointwise launch
    made inside the block."""
    made, real = {}, cg.pointwise_launch

    def record(name, steps, ins, y):
        launch = real(name, steps, ins, y)
        made[id(launch)] = (steps, list(ins), y)
        return launch

    cg.pointwise_launch = record
    try:
        yield made
    finally:
        cg.pointwise_launch = real


def staged_outputs(graph, lowered, memory) -> dict:
    """The graph outputs as the backend downloads them: its ``from_arena_f32`` /
    ``from_arena_i32`` launches (``lower_ops.io_launch``) into an FP32 staging buffer."""
    memory['io'], outputs, start = np.full(0, np.nan, np.float32), {}, 0
    for name in graph.outputs:
        slot = lowered.slots[name]
        launch = io_launch('from_arena_f32', slot.ref, Ref('io', 4 * start), slot)
        n = int(np.prod(slot.shape, dtype=np.int64))
        memory['io'] = np.append(memory['io'], np.full(n, np.nan, np.float32))
        run_launch(memory, launch)
        outputs[name] = memory['io'][start:start + n].reshape(slot.shape)
        start += n
    return outputs


@contextlib.contextmanager
def node_by_node():
    """Lowerings that keep every node's own launches (no MaxPool in a conv epilogue, no
    one-launch squeeze-and-excite): ``emulate`` runs the nodes it does not emulate with numpy,
    node by node, into their slots."""
    names = ('TX2_INFER_POOL_EPILOGUE', 'TX2_INFER_SQUEEZE_EXCITE')
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: 'off' for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name)
            if value is not None:
                os.environ[name] = value


def emulate(graph, feeds, launched, arch=90, staged=False) -> tuple:
    """(outputs of ``graph`` as float32, the Lowered) over the emulated arena (module doc);
    ``staged``: the outputs through the backend's download launches (``staged_outputs``)."""
    with recorded_programs() as programs, node_by_node():
        lowered = lower_graph(graph, arch=arch)
    memory = arena_memory(lowered)

    def read(name):
        slot = lowered.slots[name]
        return memory['arena'][slot_index(slot)].reshape(slot.shape)

    def write(name, value):
        write_slot(memory, lowered.slots[name], np.asarray(value, np.float32))

    for name, x in feeds.items():
        write(name, x)
    for node in graph.nodes:
        if node.op not in launched:
            args = [read(n) if n in lowered.slots else graph.weights.get(n) if n else None
                    for n in node.inputs]
            for name, value in zip(node.outputs, run_node(node, args)):
                write(name, value)
            continue
        for launch in (k for k in lowered.launches if k.node == node.name):
            if launch.kernel == 'pointwise':
                with np.errstate(all='ignore'):
                    emulate_pointwise(*programs[id(launch)], memory)
            else:
                run_launch(memory, launch)
    if staged:
        return staged_outputs(graph, lowered, memory), lowered
    return {n: read(n) for n in graph.outputs}, lowered


def case_graph(node, proto, feeds, expected, activations=1, float_data=False):
    """(one-node Graph, activation feeds) of an ONNX node case with its real dtypes (with
    ``float_data`` its integers as float32): the first ``activations`` inputs are activations
    (graph inputs), the others constants; None when an array is of a dtype numpy does not hold
    here (bfloat16, float8 variants, 4-bit, strings)."""
    arrays = list(feeds.values()) + list(expected.values())
    if any(np.asarray(a).dtype.kind not in 'fbiu' for a in arrays):
        return None
    if float_data:
        feeds, expected = ({k: np.asarray(v, np.float32) if np.asarray(v).dtype.kind in 'iu'
                            else v for k, v in d.items()} for d in (feeds, expected))
    values, weights, acts = {}, {}, {}
    for i, name in enumerate(proto.input):
        if not name:
            continue
        arr = np.asarray(feeds[name])
        if i < activations:
            acts[name] = arr
            values[name] = Value(name, arr.shape, str(arr.dtype), '')
        else:
            weights[name] = arr
    for name, arr in expected.items():
        values[name] = Value(name, np.shape(arr), str(np.asarray(arr).dtype), '')
    return Graph([node], list(acts), list(expected), values, weights), acts
