"""The ONNX graph torch gets in ``bench_zoo.py --torch`` (``zoo_torch_child.py``): the file ONNX
Runtime runs, its input dims fixed to the zoo shape (initializers no longer inputs),
constant-folded by ONNX Runtime's basic
optimiser (standard ops only: Constant nodes become initializers, shape arithmetic and
BatchNorm fold away, as onnxsim would) and SAME auto pads written out as pads (onnx2torch
refuses auto_pad SAME_*). The maths is unchanged (``test/core/test_zoo_torch.py`` runs both in
ONNX Runtime). Needs onnx and onnxruntime only.
"""
from pathlib import Path

import onnx
from onnx import helper

from tx2_infer_core.ops.conv import same_pads

AUTO_PAD_OPS = ('Conv', 'MaxPool', 'AveragePool')     # ConvTranspose's SAME means other pads


def fix_input_dims(model, feeds) -> None:
    """Each graph input fed in ``feeds`` gets its feed's shape as fixed dims."""
    for value in model.graph.input:
        if value.name in feeds:
            shape = value.type.tensor_type.shape
            del shape.dim[:]
            for size in feeds[value.name].shape:
                shape.dim.add().dim_value = int(size)


def drop_initializer_inputs(model) -> None:
    """Graph inputs that are initializers (old exporters) stop being inputs, so ORT folds
    them as the constants they are (onnx2torch treats them so too)."""
    weights = {w.name for w in model.graph.initializer}
    kept = [v for v in model.graph.input if v.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(kept)


def write_same_pads(model) -> int:
    """Conv/pool nodes with auto_pad SAME_UPPER/SAME_LOWER get the explicit pads it means (input
    sizes from shape inference); returns how many."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.input)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
    weights = {w.name: list(w.dims) for w in model.graph.initializer}
    count = 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        mode = attrs.get('auto_pad', b'NOTSET').decode()
        if node.op_type not in AUTO_PAD_OPS or mode not in ('SAME_UPPER', 'SAME_LOWER'):
            continue
        sizes = shapes[node.input[0]][2:]
        kernel = attrs.get('kernel_shape') or weights[node.input[1]][2:]
        ones = [1] * len(sizes)
        pads = same_pads(sizes, kernel, attrs.get('strides', ones), attrs.get('dilations', ones),
                         mode)
        kept = [a for a in node.attribute if a.name not in ('auto_pad', 'pads')]
        del node.attribute[:]
        node.attribute.extend(kept + [helper.make_attribute('pads', pads)])
        count += 1
    return count


def ort_folded(path, out) -> bool:
    """``path`` constant-folded by ONNX Runtime's basic optimiser into ``out``; False (``out``
    a plain copy) where the result holds an op outside the standard domain."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(out)
    options.log_severity_level = 3
    ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
    if all(n.domain in ('', 'ai.onnx') for n in onnx.load(str(out)).graph.node):
        return True
    Path(out).write_bytes(Path(path).read_bytes())
    return False


def torch_onnx(path, feeds, out, fold=True) -> dict:
    """The ONNX file torch gets (module docstring), written to ``out``; ``fold=False``: not
    folded (dims fixed, pads written). Returns {path, ort_folded, same_pads, nodes (before,
    after)}."""
    model = onnx.load(str(path))
    before = len(model.graph.node)
    fix_input_dims(model, feeds)
    drop_initializer_inputs(model)
    folded = False
    if fold:
        fixed = Path(out).with_suffix('.fixed.onnx')
        onnx.save(model, str(fixed))
        folded = ort_folded(fixed, out)
        fixed.unlink()
        model = onnx.load(str(out))
    pads = write_same_pads(model)
    onnx.save(model, str(out))
    return dict(path=str(out), ort_folded=folded, same_pads=pads,
                nodes=[before, len(model.graph.node)])
