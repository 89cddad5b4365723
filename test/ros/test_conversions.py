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
