"""Helpers shared by the op modules."""


class AttributeNotSupported(Exception):
    """Raised by an op for an attribute value it does not implement.

    ``run_node`` turns it into ``errors.UnsupportedOpError`` naming the op and node.
    """


def unsupported(detail):
    """Fail loudly for an unimplemented attribute value, e.g. ``unsupported("mode='cubic'")``."""
    raise AttributeNotSupported(detail)


def axis_of(axis, rank):
    """A possibly negative ``axis`` as an index in ``range(rank)``."""
    if not -rank <= axis < max(rank, 1):
        unsupported(f'axis={axis} out of range for rank {rank}')
    return axis % rank if rank else 0


def ints(values):
    """A 1-D integer array or list (input tensor or attribute) as a list of Python ints."""
    return [int(v) for v in (values.reshape(-1) if hasattr(values, 'reshape') else values)]
