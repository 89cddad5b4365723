"""The FP16 arena emulated on the numpy reference, without a GPU (test helper).

``run_fp16_storage(graph, feeds)`` runs ``graph`` node by node with what the CUDA backend
stores as FP16 rounded to FP16 (numpy's round to nearest even; past 65504: inf, as the kernels'
``__float2half_rn``): the graph inputs, every node output, and the weights of rank 2 or more
(conv and matmul weights: the FP16 weight image). Biases, scalar constants, epilogue
attributes and pointwise literals stay float32, as the kernels read them; inside a node the
reference computes in float32, as a fused kernel does in its registers.
"""
import numpy as np

from tx2_infer_core.ops import run_node


def fp16(x):
    """``x`` rounded to float16, back in its own float dtype (inf past the FP16 range)."""
    x = np.asarray(x)
    if x.dtype.kind != 'f':
        return x
    with np.errstate(over='ignore'):
        return x.astype(np.float16).astype(x.dtype)


def stored_weight(array):
    """A constant as the weight image holds it: rank 2 or more in FP16, else as it is."""
    return fp16(array) if np.ndim(array) >= 2 else np.asarray(array)


def run_fp16_storage(graph, feeds, keep_all=False) -> dict:
    """The outputs (``keep_all``: every value) of ``graph`` over an emulated FP16 arena."""
    env = {name: stored_weight(w) for name, w in graph.weights.items()}
    env.update({name: fp16(x) for name, x in feeds.items()})
    for node in graph.nodes:
        args = [env[name] if name else None for name in node.inputs]
        with np.errstate(over='ignore', invalid='ignore', divide='ignore'):
            results = run_node(node, args)
        env.update((name, fp16(value)) for name, value in zip(node.outputs, results) if name)
    names = [n for n in env if n not in graph.weights] if keep_all else graph.outputs
    return {name: env[name] for name in names}
