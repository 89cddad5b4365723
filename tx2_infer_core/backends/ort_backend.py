"""The ``ort`` CPU backend: our optimised graph, run by ONNX Runtime.

``prepare`` writes the graph the passes produced (folded constants, folded batch-norms,
``FusedConv`` nodes) as ONNX with ``onnx_export.to_onnx``, which expands each internal op into
the standard ops that compute the same thing (FusedConv -> Conv, its activation, the residual
Add), and builds one ``onnxruntime.InferenceSession`` on it: CPUExecutionProvider, every graph
optimisation on, one intra-op thread per physical core, and those threads sleep between runs
instead of spinning (``spinning``: ONNX Runtime's default keeps them spinning, which on a
robot takes the cores the camera driver and the rest of the stack need). ``run`` only feeds
the inputs and
fetches the outputs. ONNX Runtime keeps its own buffers: the memory plan is checked by the
engine but not used here (the numpy backend, the oracle, runs inside it).

onnxruntime is optional: ``ort_available()`` says whether it imports; ``OrtBackend()`` without
it raises ``BackendUnavailableError`` naming the package.
"""
import os
from pathlib import Path

from tx2_infer_core.backends.base import Backend, fill_outputs
from tx2_infer_core.errors import Tx2InferError

PACKAGE = 'onnxruntime'
DISABLED_OPTIMIZERS = ['WeightBiasQuantization']   # see prepare


class BackendUnavailableError(Tx2InferError):
    """A backend was asked for whose runtime is not installed."""


def import_onnxruntime():
    """The ``onnxruntime`` module; ``BackendUnavailableError`` naming the package if missing."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailableError(
            f"backend 'ort' needs the {PACKAGE} package, which is not installed "
            f"(pip install {PACKAGE}); backend 'cpu' falls back to the numpy backend "
            f'without it ({exc})') from exc
    return onnxruntime


def ort_available() -> bool:
    """True when onnxruntime imports (the ``cpu`` backend then means ``ort``)."""
    try:
        import_onnxruntime()
    except BackendUnavailableError:
        return False
    return True


def physical_cores(cpuinfo='/proc/cpuinfo') -> int:
    """Physical cores among the CPUs this process may run on (hyperthread siblings counted
    once); the number of usable CPUs when /proc/cpuinfo does not say (e.g. on ARM)."""
    allowed = os.sched_getaffinity(0)
    cores, cpu, package = set(), None, ''
    try:
        lines = Path(cpuinfo).read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        key, _, value = (part.strip() for part in line.partition(':'))
        if key == 'processor':
            cpu, package = int(value), ''
        elif key == 'physical id':
            package = value
        elif key == 'core id' and cpu in allowed:
            cores.add((package, value))
    return len(cores) or len(allowed)


class OrtBackend(Backend):
    """CPU backend running the optimised graph in ONNX Runtime (float32).

    ``threads``: intra-op threads (default: ``physical_cores()``); ``spinning``: let them
    spin-wait for work between runs (ONNX Runtime's default; off here). ``session`` is the
    InferenceSession, ``opset`` the ONNX opset the graph was exported at.
    """

    name = 'ort'

    def __init__(self, threads=None, spinning=False):
        self.ort = import_onnxruntime()
        self.threads = threads or physical_cores()
        self.spinning = bool(spinning)
        self.session = None

    def session_options(self):
        """SessionOptions: all graph optimisations, ``threads`` intra-op, sequential."""
        options = self.ort.SessionOptions()
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3      # errors only: no per-session warnings on stderr
        spin = '1' if self.spinning else '0'
        options.add_session_config_entry('session.intra_op.allow_spinning', spin)
        options.add_session_config_entry('session.inter_op.allow_spinning', spin)
        return options

    def prepare(self, graph, memory_plan) -> None:
        from tx2_infer_core.onnx_export import export_opset, to_onnx
        self.opset = export_opset(graph)
        model = to_onnx(graph, self.opset).SerializeToString()
        # WeightBiasQuantization would requantise the float weights between a
        # DequantizeLinear and a QuantizeLinear (QDQ models) on a grid of its own choosing
        self.session = self.ort.InferenceSession(model, self.session_options(),
                                                 providers=['CPUExecutionProvider'],
                                                 disabled_optimizers=DISABLED_OPTIMIZERS)
        self.outputs = list(graph.outputs)

    def run(self, feeds: dict, out=None) -> dict:
        return fill_outputs(dict(zip(self.outputs, self.session.run(self.outputs, feeds))), out)

    def close(self) -> None:
        self.session = None
