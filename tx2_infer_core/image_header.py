"""The size a JPEG or PNG claims, read from its header without decoding; image files.

A 625-byte JPEG whose start-of-frame says 32000x32000 costs gigabytes to decode; the CLI
(``read_image``) and the ROS node read the claimed size here first and refuse an image over
the pixel limit (``Limits.max_image_pixels``). Pure functions over bytes, but ``read_image``.
"""
import struct
from pathlib import Path

from tx2_infer_core.errors import InputError
from tx2_infer_core.limits import DEFAULT_LIMITS

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they hold the size.
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                       0xCF))
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def jpeg_size(data: bytes):
    """(width, height) from a JPEG's first start-of-frame segment, or None if none is found
    before the scan data (then the decoder refuses the file)."""
    pos = 2
    while pos + 9 <= len(data):
        if data[pos] != 0xFF:                   # stray bytes: skip to the next marker
            pos = data.find(b'\xff', pos)
            if pos < 0:
                return None
            continue
        marker = data[pos + 1]
        if marker == 0xFF:                      # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:     # markers without a length
            pos += 2
            continue
        if marker in _JPEG_SOF:
            height, width = struct.unpack_from('>HH', data, pos + 5)
            return width, height
        if marker in (0xD9, 0xDA):              # end of image, start of scan
            return None
        pos += 2 + struct.unpack_from('>H', data, pos + 2)[0]
    return None


def header_size(data: bytes):
    """(format, width, height) that ``data``'s header claims: format 'jpeg', 'png' or None
    (neither); width and height None when the header holds no size."""
    if data[:2] == b'\xff\xd8':
        return ('jpeg',) + (jpeg_size(data) or (None, None))
    if data[:8] == PNG_SIGNATURE:
        if len(data) < 24 or data[12:16] != b'IHDR':
            return 'png', None, None
        return ('png',) + struct.unpack_from('>II', data, 16)
    return None, None, None


def pixel_problem(width, height, max_pixels, what):
    """Why an image of ``width`` x ``height`` is refused (more than ``max_pixels``), or None."""
    if width * height > max_pixels:
        return (f'{what} is {width}x{height} = {width * height} pixels, more than the limit '
                f'of {max_pixels}')
    return None


def read_image(path, limits=DEFAULT_LIMITS):
    """A photo file as a BGR uint8 array (the CLI's images); a missing file raises
    FileNotFoundError, an unreadable or oversized one ``InputError``. A JPEG or PNG whose
    header claims more than ``limits.max_image_pixels`` is refused before decoding; other
    formats are left to OpenCV."""
    import cv2
    import numpy as np
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'image not found: {path}')
    if path.stat().st_size > limits.max_file_bytes:
        raise InputError(f'image {path} is {path.stat().st_size} bytes, more than the limit '
                         f'of {limits.max_file_bytes}')
    data = path.read_bytes()
    fmt, width, height = header_size(data)
    if fmt is not None and width is None:
        raise InputError(f'cannot decode image {path}: its {fmt} header has no image size')
    problem = fmt and pixel_problem(width, height, limits.max_image_pixels, f'{fmt} image')
    if problem:
        raise InputError(f'image {path} refused before decoding: {problem}')
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise InputError(f'cannot decode image {path}: {str(exc).strip()}') from None
    if image is None or image.size == 0:
        raise InputError(f'cannot decode image {path}')
    return image
