"""Errors raised by the engine. Every message names the problem and where it is."""


class Tx2InferError(Exception):
    """Base class of every error the engine raises on bad input."""


class ModelFormatError(Tx2InferError):
    """A model file is truncated, malformed or refers to data it may not read."""


class UnsupportedOpError(Tx2InferError):
    """A node uses an operator (or attribute value) the engine does not implement."""

    def __init__(self, op, node_name, supported, detail=''):
        self.op, self.node_name = op, node_name
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
