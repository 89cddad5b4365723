"""Reference operators: one small numpy function per ONNX op type, one registry line each."""
from tx2_infer_core.ops.registry import OPS, run_node, supported_ops

__all__ = ['OPS', 'run_node', 'supported_ops']
