"""Resource limits: how big a model, plan, image or file the engine agrees to handle.

A robot runs unattended on models, plans and frames from elsewhere; a value over a limit is
refused with the project's error (naming the value and the limit) before anything that size is
allocated or read. The defaults fit every real model of the zoo many times over; a user with a
bigger one raises them::

    engine = Engine.build('big.onnx', limits=Limits(max_tensor_elements=1 << 30))

No dependencies: the ROS package and the importers read their defaults from here.
"""
from dataclasses import dataclass

from tx2_infer_core.errors import ModelFormatError


@dataclass(frozen=True)
class Limits:
    """Largest tensor (elements), arena (bytes), decoded image (width * height) and file read
    (bytes: plan, labels) the engine accepts."""

    max_tensor_elements: int = 1 << 28      # 1 GiB of float32
    max_arena_bytes: int = 8 << 30
    max_image_pixels: int = 50_000_000
    max_file_bytes: int = 4 << 30

    def __post_init__(self):
        for name, value in self.__dict__.items():
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ModelFormatError(f'Limits.{name} must be a positive integer, '
                                       f'got {value!r}')

    def check_elements(self, shape, what) -> None:
        """Raise ``ModelFormatError`` naming ``what`` if a tensor of ``shape`` would have more
        than ``max_tensor_elements`` elements (or a negative dimension)."""
        dims = [int(d) for d in shape]
        if any(d < 0 for d in dims):
            raise ModelFormatError(f'{what} has a negative dimension: shape {tuple(dims)}')
        count = 1
        for d in dims:
            count *= d
        if count > self.max_tensor_elements:
            raise ModelFormatError(
                f'{what} of shape {tuple(dims)} has {count} elements, more than the limit '
                f'max_tensor_elements={self.max_tensor_elements} (Limits)')

    def check_arena(self, nbytes, what) -> None:
        """Raise ``ModelFormatError`` if ``what`` needs more than ``max_arena_bytes``."""
        if int(nbytes) > self.max_arena_bytes:
            raise ModelFormatError(
                f'{what} needs {int(nbytes)} bytes of activations, more than the limit '
                f'max_arena_bytes={self.max_arena_bytes} (Limits)')


DEFAULT_LIMITS = Limits()
