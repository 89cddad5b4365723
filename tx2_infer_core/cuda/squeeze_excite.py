"""Squeeze-and-excite blocks in one launch, on the graph the CUDA lowering sees (issue 14:
MobileNetV3 / PP-LCNet-style backbones spend three launches a block on a few hundred values).

    x ──GlobalAveragePool──▶ m ──FusedConv 1x1 (act1)──▶ h ──FusedConv 1x1 (act2)──▶ s

becomes one GlobalAveragePool node with the outputs ``s`` and attribute ``ATTR`` (the two
convolution nodes), lowered to ``kernels/pool.cu``'s ``squeeze_excite``: the pixel sums of a
global average pool, then, in each image's last block, both products. The channel Mul that
applies ``s`` stays a launch. ``s`` becomes an output of the pool node, so the memory planner
sees it written there. Only where both convolutions are 1x1 products of the pooled vector
(group 1, a constant weight and bias, no residual, not PRelu), each read only by the next,
with at most ``MAX_C`` channels, ``MAX_HIDDEN`` hidden values and ``MAX_PRODUCTS`` products.
$TX2_INFER_SQUEEZE_EXCITE=off keeps the three launches. Only the CUDA lowering runs this; the
numpy backend and the plan file keep the three nodes.
"""
import dataclasses

from tx2_infer_core.cuda.cluster import env_choice
from tx2_infer_core.cuda.lower_nn import EXCITE as ATTR, SPLIT_CELLS, SPLIT_PARTIAL_BYTES

MAX_C, MAX_HIDDEN = 2048, 512  # SE_MAX_C, SE_MAX_C1 of kernels/pool.cu
# Products per image (C x hidden) at most: one block runs them, a warp per output, so a large
# block's products cost more than the two launches they replace. H200, each launch timed alone
# (bench/results/squeeze_excite_ab_h200.json, 'v1'; ppocr-cls, ppocr-rec): 8.3-13.3 us for
# 16-2,704 products against 17-19 us for the pool and two launches, 19.6 vs 20.0 at 10,000,
# 26.8 vs 19.0 at 14,400, 52.9 vs 19.5 at 57,600.
MAX_PRODUCTS = 8192
CHOICES = ('on', 'off')


def squeeze_excite_on() -> bool:
    """$TX2_INFER_SQUEEZE_EXCITE: 'on' (the default) or 'off'."""
    return env_choice('TX2_INFER_SQUEEZE_EXCITE', CHOICES) == 'on'


def is_vector_product(graph, node, channels) -> bool:
    """A FusedConv/Conv that is a plain product of an N x ``channels`` x 1 x 1 vector: a 1x1
    constant weight, group 1, constant bias or none, no residual, no PRelu."""
    if node.op not in ('Conv', 'FusedConv') or len(node.inputs) < 2 or len(node.inputs) > 3:
        return False
    w = graph.weights.get(node.inputs[1])
    if w is None or w.ndim != 4 or tuple(w.shape[1:]) != (channels, 1, 1):
        return False
    if len(node.inputs) == 3 and node.inputs[2] and node.inputs[2] not in graph.weights:
        return False
    out = graph.values.get(node.outputs[0])
    return (int(node.attrs.get('group', 1)) == 1 and out is not None
            and tuple(out.shape[1:]) == (w.shape[0], 1, 1)
            and node.attrs.get('activation', '') != 'PRelu')


def excite_pair(graph, gap, readers) -> tuple:
    """(first conv, second conv) of the squeeze-and-excite block that ``gap`` starts, or
    None."""
    x, m = gap.inputs[0], gap.outputs[0]
    if x not in graph.values or len(graph.values[x].shape) != 4 or m in graph.outputs:
        return None
    n, c = graph.values[x].shape[:2]
    first = readers.get(m, [])
    if len(first) != 1 or not is_vector_product(graph, first[0], c):
        return None
    hidden = graph.weights[first[0].inputs[1]].shape[0]
    second = readers.get(first[0].outputs[0], [])
    if first[0].outputs[0] in graph.outputs or len(second) != 1 or \
            not is_vector_product(graph, second[0], hidden):
        return None
    if graph.weights[second[0].inputs[1]].shape[0] != c or c > MAX_C or hidden > MAX_HIDDEN \
            or c * hidden > MAX_PRODUCTS:
        return None
    if n > SPLIT_CELLS or 4 * n * -(-c // 32) * 32 > SPLIT_PARTIAL_BYTES:
        return None  # the unsplit sums alone must fit the reduce workspace
    return first[0], second[0]


def fuse_squeeze_excite(graph) -> tuple:
    """(graph, count): each squeeze-and-excite block as one GlobalAveragePool node writing the
    second conv's output, with ``ATTR``; ``graph`` itself is not changed."""
    if not squeeze_excite_on():
        return graph, 0
    readers = graph.consumers()
    pairs = {}
    for node in graph.nodes:
        if node.op == 'GlobalAveragePool':
            pair = excite_pair(graph, node, readers)
            if pair is not None:
                pairs[node.name] = pair
    if not pairs:
        return graph, 0
    gone = {conv.name for pair in pairs.values() for conv in pair}
    nodes = []
    for node in graph.nodes:
        if node.name in gone:
            continue
        if node.name in pairs:
            first, second = pairs[node.name]
            node = dataclasses.replace(node, outputs=[second.outputs[0]],
                                       attrs=dict(node.attrs, **{ATTR: (first, second)}))
        nodes.append(node)
    return dataclasses.replace(graph, nodes=nodes), len(pairs)
