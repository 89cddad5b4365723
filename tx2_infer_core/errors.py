"""Errors raised by the engine. Every message names the problem and where it is."""


class Tx2InferError(Exception):
    """Base class of every error the engine raises on bad input."""


class ModelFormatError(Tx2InferError):
    """A model file is truncated, malformed or refers to data it may not read."""


_DATA_SHAPED = 'its output size depends on the input data, and shapes are fixed at build'
# What to do about an op no backend will run, said where it is refused.
HINTS = {
    'NonMaxSuppression': f'{_DATA_SHAPED}: export the model without its NMS (Ultralytics: '
                         'nms=False); the detector decodes the raw head and runs NMS itself',
    'Unique': _DATA_SHAPED,
    'Compress': _DATA_SHAPED,
    **{op: 'random values differ from run to run: export the model for inference (eval mode)'
       for op in ('RandomNormal', 'RandomUniform', 'RandomNormalLike', 'RandomUniformLike',
                  'Bernoulli', 'Multinomial')},
    **{op: 'sequence types are not supported: export the model with tensors only'
       for op in ('SequenceConstruct', 'SequenceAt', 'SequenceEmpty', 'SequenceInsert',
                  'SequenceLength', 'SplitToSequence', 'ConcatFromSequence', 'SequenceMap')},
}


class UnsupportedOpError(Tx2InferError):
    """A node uses an operator (or attribute value) the engine does not implement."""

    def __init__(self, op, node_name, supported, detail=''):
        self.op, self.node_name = op, node_name
        detail = detail or HINTS.get(op, '')
        extra = f' ({detail})' if detail else ''
        super().__init__(
            f"unsupported operator '{op}' at node '{node_name}'{extra}; "
            f"supported: {', '.join(sorted(supported))}")


class InputError(Tx2InferError):
    """Inputs given to an engine do not match its input specs (name, shape or dtype)."""


class PlanFileError(Tx2InferError):
    """A .tx2plan file is corrupted, truncated, of another format version or tampered with."""


class MemoryPlanError(Tx2InferError, ValueError):
    """A memory plan is inconsistent with its graph (overlap, missing value, bad slice)."""


class Fp16RangeError(Tx2InferError):
    """A value the model computes lies past FP16's range and no exact rescale can fit it."""
