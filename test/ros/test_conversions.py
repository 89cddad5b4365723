"""Image / CompressedImage <-> numpy conversions, with real photos and real sensor_msgs."""
import cv2
import numpy as np
import pytest

pytest.importorskip('sensor_msgs', reason='sensor_msgs is not installed (ros-sensor-msgs)')
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from tx2_infer_core import assets  # noqa: E402
from tx2_infer_ros import conversions as conv  # noqa: E402


@pytest.fixture(scope='module')
def photo():
    return cv2.imread(str(assets.fetch('dog.jpg')))  # 768x576, real photo


def _grey_bgr(image):
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


@pytest.mark.parametrize('encoding', ['bgr8', 'rgb8', 'bgra8', 'rgba8'])
@pytest.mark.parametrize('padding', [0, 13])
def test_colour_encodings_round_trip_exactly(photo, encoding, padding):
    msg = conv.fill_image(Image(), photo, encoding, row_padding=padding)
    assert msg.step == photo.shape[1] * (4 if 'a' in encoding else 3) + padding
    np.testing.assert_array_equal(conv.image_to_bgr(msg), photo)


def test_bgr8_without_padding_is_a_zero_copy_view(photo):
    msg = conv.fill_image(Image(), photo, 'bgr8')
    out = conv.image_to_bgr(msg)
    assert not out.flags.owndata


@pytest.mark.parametrize('encoding', ['mono8', 'mono16'])
def test_mono_encodings_give_the_grey_photo(photo, encoding):
    msg = conv.fill_image(Image(), photo, encoding, row_padding=6)
    np.testing.assert_array_equal(conv.image_to_bgr(msg), _grey_bgr(photo))


def test_mono16_big_endian_keeps_the_high_byte():
    grey = np.array([[0x1234, 0xff00], [0x0001, 0x8080]], '>u2')
    msg = Image(height=2, width=2, encoding='mono16', is_bigendian=1, step=4,
                data=grey.tobytes())
    np.testing.assert_array_equal(conv.image_to_bgr(msg)[..., 0], [[0x12, 0xff], [0, 0x80]])


@pytest.mark.parametrize('encoding,code', [('yuv422', cv2.COLOR_BGR2YUV_UYVY),
                                           ('yuv422_yuy2', cv2.COLOR_BGR2YUV_YUY2)])
def test_yuv422_matches_opencv_and_stays_close_to_the_photo(photo, encoding, code):
    msg = conv.fill_image(Image(), photo, encoding, row_padding=8)
    out = conv.image_to_bgr(msg)
    back = cv2.cvtColor(cv2.cvtColor(photo, code), code=getattr(
        cv2, 'COLOR_YUV2BGR_' + ('UYVY' if encoding == 'yuv422' else 'YUY2')))
    np.testing.assert_array_equal(out, back)
    assert np.abs(out.astype(int) - photo).mean() < 6  # chroma subsampling only


def test_yuv422_byte_order_is_uyvy():
    # One white and one black pixel: U Y0 V Y1 = 128 235 128 16 (video range) in UYVY.
    msg = Image(height=1, width=2, encoding='yuv422', step=4, data=bytes([128, 235, 128, 16]))
    out = conv.image_to_bgr(msg)
    assert out[0, 0].min() > 240 and out[0, 1].max() < 10


@pytest.mark.parametrize('fmt', ['jpeg', 'png'])
def test_compressed_matches_opencv_decode(photo, fmt):
    msg = conv.fill_compressed(CompressedImage(), photo, fmt)
    expected = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(conv.compressed_to_bgr(msg), expected)
    if fmt == 'png':
        np.testing.assert_array_equal(expected, photo)


@pytest.mark.parametrize('fields,cause', [
    (dict(height=4, width=4, step=12, encoding='32FC1', data=bytes(48)), 'encoding'),
    (dict(height=4, width=4, step=12, encoding='bgr8', data=bytes(47)), 'size'),
    (dict(height=4, width=4, step=10, encoding='bgr8', data=bytes(40)), 'size'),
    (dict(height=0, width=4, step=12, encoding='bgr8', data=b''), 'empty'),
    (dict(height=4, width=0, step=0, encoding='rgb8', data=b''), 'empty'),
])
def test_malformed_images_raise_with_their_cause(fields, cause):
    with pytest.raises(conv.ConversionError) as err:
        conv.image_to_bgr(Image(**fields))
    assert err.value.cause == cause


@pytest.mark.parametrize('data,cause', [(b'', 'empty'), (b'\xff\xd8garbage' * 50, 'decode')])
def test_malformed_compressed_raise_with_their_cause(data, cause):
    with pytest.raises(conv.ConversionError) as err:
        conv.compressed_to_bgr(CompressedImage(format='jpeg', data=data))
    assert err.value.cause == cause


@pytest.mark.parametrize('encoding', ['yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv'])
def test_odd_width_yuv422_is_a_size_error(encoding):
    msg = Image(height=4, width=5, step=10, encoding=encoding, data=bytes(40))
    with pytest.raises(conv.ConversionError, match='odd width 5') as err:
        conv.image_to_bgr(msg)
    assert err.value.cause == 'size'


def test_an_opencv_error_becomes_a_conversion_error(photo, monkeypatch):
    def broken(*args):
        raise cv2.error('simulated OpenCV failure')
    msg = conv.fill_image(Image(), photo, 'rgb8')
    monkeypatch.setattr(conv.cv2, 'cvtColor', broken)
    with pytest.raises(conv.ConversionError, match='simulated') as err:
        conv.image_to_bgr(msg)
    assert err.value.cause == 'decode'
    monkeypatch.setattr(conv.cv2, 'imdecode', broken)
    with pytest.raises(conv.ConversionError, match='simulated'):
        conv.compressed_to_bgr(conv.fill_compressed(CompressedImage(), photo[:8, :8]))


def _claiming(fmt, width, height):
    """A tiny real JPEG/PNG whose header is patched to claim ``width`` x ``height``."""
    small = np.full((8, 8, 3), 127, np.uint8)
    data = bytearray(conv.fill_compressed(CompressedImage(), small, fmt).data)
    if fmt == 'png':
        data[16:24] = width.to_bytes(4, 'big') + height.to_bytes(4, 'big')
    else:
        sof = data.index(b'\xff\xc0')
        data[sof + 5:sof + 9] = height.to_bytes(2, 'big') + width.to_bytes(2, 'big')
    return bytes(data)


@pytest.mark.parametrize('fmt,width,height', [('jpeg', 32000, 32000), ('png', 100000, 100000),
                                              ('png', 2**31 - 1, 1)])
def test_huge_compressed_images_are_refused_before_decoding(fmt, width, height, monkeypatch):
    data = _claiming(fmt, width, height)
    assert len(data) < 1000

    def forbidden(*args):
        raise AssertionError('decoded an image whose header is over the limit')
    monkeypatch.setattr(conv.cv2, 'imdecode', forbidden)
    with pytest.raises(conv.ConversionError, match=f'{width}x{height}') as err:
        conv.compressed_to_bgr(CompressedImage(format=fmt, data=data))
    assert err.value.cause == 'size'


def test_the_pixel_limit_is_a_parameter(photo):
    msg = conv.fill_compressed(CompressedImage(), photo, 'png')
    assert conv.image_size(bytes(msg.data)) == ('png', 768, 576)
    assert conv.compressed_to_bgr(msg, max_pixels=768 * 576).shape == photo.shape
    with pytest.raises(conv.ConversionError, match='limit of 1000'):
        conv.compressed_to_bgr(msg, max_pixels=1000)
    with pytest.raises(conv.ConversionError, match='limit of 1000'):
        conv.image_to_bgr(conv.fill_image(Image(), photo), max_pixels=1000)


def test_a_jpeg_with_stray_bytes_before_a_marker_still_decodes(photo):
    data = bytes(conv.fill_compressed(CompressedImage(), photo, 'jpeg').data)
    stray = data[:2] + b'\x00\x17' + data[2:]
    assert conv.image_size(stray) == ('jpeg', 768, 576)


@pytest.mark.parametrize('data', [b'\xff\xd8', b'\x89PNG\r\n\x1a\n', b'BM' + bytes(60),
                                  b'GIF89a' + bytes(40)])
def test_headers_without_a_size_and_other_formats_are_decode_errors(data):
    with pytest.raises(conv.ConversionError) as err:
        conv.compressed_to_bgr(CompressedImage(format='jpeg', data=data))
    assert err.value.cause == 'decode'
