"""Import-time rewrites of ops whose meaning depends on the opset: ``settle_forms`` gives one
meaning per op in the graph, whatever the model's opset, so that the passes and the ONNX
export need not know it: RoiAlign's ``coordinate_transformation_mode`` default is written out
(``output_half_pixel`` before opset 16, ``half_pixel`` from it), as is
MeanVarianceNormalization's ``axes``; GridSample's opset 16 modes get their opset 20 names
(bilinear -> linear, bicubic -> cubic); an opset 18 GroupNormalization's per-group scale and
bias become per-channel (the opset 21 form). (Inputs that must be known at build time, e.g.
MaxUnpool's output_shape, are the traits' ``fixed_inputs``, checked by ``shape_limits``.)
"""
import numpy as np

from tx2_infer_core.errors import UnsupportedOpError
from tx2_infer_core.ops import OPS

GRID_MODES_16 = {'bilinear': 'linear', 'bicubic': 'cubic'}   # GridSample's opset 20 names


def settle_forms(graph, opset) -> None:
    """Rewrite opset-dependent op forms into one (see the module doc); ``graph.values`` must
    hold the static shapes."""
    for node in graph.nodes:
        if node.op == 'RoiAlign':
            node.attrs.setdefault('coordinate_transformation_mode',
                                  'output_half_pixel' if opset < 16 else 'half_pixel')
        if node.op == 'GridSample' and node.attrs.get('mode') in GRID_MODES_16:
            node.attrs['mode'] = GRID_MODES_16[node.attrs['mode']]
        if node.op == 'MeanVarianceNormalization':  # (ONNX's checker needs it spelled out)
            node.attrs.setdefault('axes', [0, 2, 3])
        if node.op == 'GroupNormalization':
            _per_channel(graph, node)


def _per_channel(graph, node):
    channels = graph.values[node.inputs[0]].shape[1]
    groups = int(node.attrs['num_groups'])
    for k in (1, 2):
        name = node.inputs[k]
        array = graph.weights.get(name)
        if array is None:
            size = int(np.prod(graph.values[name].shape))
            if size != channels:
                raise UnsupportedOpError(node.op, node.name, OPS,
                                         'a per-group scale or bias must be a constant')
            continue
        if array.size != channels:
            per_channel = np.repeat(array.reshape(-1), channels // groups)
            node.inputs[k] = f'{node.name}/{"scale" if k == 1 else "bias"}_per_channel'
            graph.weights[node.inputs[k]] = per_channel
