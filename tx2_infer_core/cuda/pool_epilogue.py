"""A 2x2 stride-2 MaxPool after a convolution, applied in the convolution's epilogue, on the
graph the CUDA lowering sees (issue 14: one launch, not two; the map is not read back).

    x ──Conv──▶ y ──MaxPool 2x2/2──▶ z        becomes        x ──Conv──▶ (y, z)

The tensor-core conv (``kernels/conv_mma.cu``, ``conv_mma*_pool_*``) orders its GEMM rows by
2x2 window, so a CTA's tile holds whole windows: its epilogue takes each window's maximum and
writes the pooled map ``z`` (and ``y`` too where something else reads it: ``keep``). Making
``z`` an output of the conv node lets the memory planner see it written there, so it never
shares bytes with the conv's input. Only where such a conv runs on that kernel (sm_80+, the
tensor-core path, not depthwise or narrow-grouped: ``pick_kernel``), P and Q even and the
pool's windows exactly the 2x2 blocks (no leading pad, output P/2 x Q/2, no Indices).
A conv that ``mma_config`` splits along K (few CTAs) keeps its split where the splits sum in
a thread-block cluster (sm_90: ``..._pool_*_cl``), else runs in one pass;
$TX2_INFER_POOL_EPILOGUE=unsplit fuses only the convs it would not split, =off none. Only the
CUDA lowering runs this; the numpy backend and the plan file keep both nodes.
"""
import dataclasses

from tx2_infer_core.cuda.cluster import env_choice
from tx2_infer_core.cuda import lower_conv
from tx2_infer_core.cuda.lower_conv import POOL_ATTR as ATTR

CONV_OPS = ('Conv', 'FusedConv')
POOL_EPILOGUE = ('on', 'off', 'unsplit')


def pool_epilogue_mode() -> str:
    """$TX2_INFER_POOL_EPILOGUE: 'on' (the default), 'off' or 'unsplit'."""
    return env_choice('TX2_INFER_POOL_EPILOGUE', POOL_EPILOGUE)


def is_block_pool(node, in_shape, out_shape) -> bool:
    """A MaxPool whose windows are exactly the 2x2 blocks of an even-sized 4-D map."""
    a = node.attrs
    if node.op != 'MaxPool' or len(in_shape) != 4 or any(node.outputs[1:]):
        return False
    h, w = in_shape[2:]
    auto = a.get('auto_pad', 'NOTSET')
    auto = auto.decode() if isinstance(auto, bytes) else auto
    begin = list(a.get('pads') or [0, 0, 0, 0])[:2] if auto in ('NOTSET', 'VALID') else [0, 0]
    return (list(a.get('kernel_shape') or []) == [2, 2]
            and list(a.get('strides') or [1, 1]) == [2, 2]
            and list(a.get('dilations') or [1, 1]) == [1, 1]
            and begin == [0, 0] and h % 2 == 0 and w % 2 == 0
            and tuple(out_shape[2:]) == (h // 2, w // 2))


def runs_on_mma(graph, conv, arch: int) -> bool:
    """A conv with a constant 4-D weight that ``lower_conv`` sends to a conv_mma kernel on
    ``arch``'s tensor-core path (not depthwise; ``pick_kernel``, either loader)."""
    w = graph.weights.get(conv.inputs[1]) if len(conv.inputs) > 1 else None
    if w is None or w.ndim != 4:
        return False
    groups = int(conv.attrs.get('group', 1))
    if lower_conv.is_depthwise(w.shape[1], groups):
        return False
    kernel, _ = lower_conv.pick_kernel(arch, 'tc', w.shape[1], w.shape[0] // groups, groups,
                                       lambda n: True)
    return kernel.startswith('conv_mma')


def splits_k(graph, conv, arch: int, sm_count: int) -> bool:
    """Whether ``mma_config`` splits ``conv`` along K on ``sm_count`` SMs."""
    k, cg, r, s = graph.weights[conv.inputs[1]].shape
    n, _, p, q = graph.values[conv.outputs[0]].shape
    groups = int(conv.attrs.get('group', 1))
    bk = lower_conv.MMA_BK
    ktiles = r * s * -(-cg // bk) if cg % 8 == 0 else -(-r * s * cg // bk)
    config = lower_conv.mma_config(n * p * q, k // groups, ktiles, groups, sm_count, True, arch)
    return config[3] > 1


def fuse_pool_epilogue(graph, arch: int, conv_path: str, sm_count: int = 132) -> tuple:
    """(graph, count): each conv -> block MaxPool pair as one conv node with the outputs
    (y, z) and attribute ``ATTR``; the MaxPool removed. ``graph`` itself is not changed."""
    mode = pool_epilogue_mode()
    if conv_path != 'tc' or mode == 'off':
        return graph, 0
    producers = graph.producers()
    fused = {}  # conv name -> the MaxPool it takes
    for node in graph.nodes:
        x = node.inputs[0] if node.inputs else ''
        conv = producers.get(x)
        if conv is None or conv.op not in CONV_OPS or conv.name in fused or \
                len(conv.outputs) != 1:
            continue
        if x in graph.values and node.outputs[0] in graph.values \
                and runs_on_mma(graph, conv, arch) \
                and is_block_pool(node, graph.values[x].shape,
                                  graph.values[node.outputs[0]].shape) \
                and not (mode == 'unsplit' and splits_k(graph, conv, arch, sm_count)):
            fused[conv.name] = node
    pools = {pool.name for pool in fused.values()}
    nodes = []
    for node in graph.nodes:
        if node.name in pools:
            continue
        pool = fused.get(node.name)
        if pool is not None:
            node = dataclasses.replace(node, outputs=[node.outputs[0], pool.outputs[0]],
                                       attrs=dict(node.attrs, **{ATTR: pool.name}))
        nodes.append(node)
    return (dataclasses.replace(graph, nodes=nodes), len(fused)) if fused else (graph, 0)
