"""One decoder for every path: orientation, bit depth, alpha, palettes and hostile bytes."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dsnet_export import DsnetError
from dsnet_export.imaging import decode_image, list_images


def _asymmetric(width=6, height=4):
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[0, :, 0] = 255      # a red top row
    pixels[:, 0, 1] = 255      # a green left column
    return pixels


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: the viewer rotates 90 degrees clockwise
    Image.fromarray(_asymmetric()).save(tmp_path / "a.png", exif=exif)
    decoded = decode_image(tmp_path / "a.png")
    assert decoded.size == (4, 6)  # width and height swapped
    np.testing.assert_array_equal(np.asarray(decoded), np.rot90(_asymmetric(), k=-1))


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64, dtype=np.uint16).reshape(8, 8)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").convert("RGB").getextrema()[0][1] == 255  # PIL's own: clipped
    decoded = np.asarray(decode_image(tmp_path / "deep.png"))
    assert decoded.shape == (8, 8, 3)
    np.testing.assert_array_equal(decoded[..., 0], np.round(values / 257.0).astype(np.uint8))
    assert len(np.unique(decoded[..., 0])) > 32  # a gradient, not a saturated block


def test_alpha_is_dropped_keeping_the_colour_beneath(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 0  # fully transparent red
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    np.testing.assert_array_equal(np.asarray(decode_image(tmp_path / "t.png"))[..., 0], 200)
    grey_alpha = Image.fromarray(np.full((4, 4, 2), 90, np.uint8), "LA")
    assert decode_image(grey_alpha).mode == "RGB" and np.asarray(decode_image(grey_alpha)).max() == 90


def test_palette_and_cmyk_and_grey_convert(tmp_path):
    palette = Image.fromarray(_asymmetric()).convert("P")
    palette.info["transparency"] = 0
    palette.save(tmp_path / "p.png")
    assert decode_image(tmp_path / "p.png").mode == "RGB"
    Image.new("CMYK", (5, 5), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    red = np.asarray(decode_image(tmp_path / "c.jpg"))
    assert red[..., 0].min() > 200 and red[..., 1].max() < 60
    assert decode_image(Image.new("L", (3, 3), 7), channels=1).mode == "L"
    assert decode_image(Image.new("RGB", (3, 3)), channels=1).mode == "L"


def test_decompression_bombs_are_refused(tmp_path, monkeypatch):
    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DsnetError, match="too many pixels"):
        decode_image(tmp_path / "big.png")


def test_unreadable_files_name_themselves(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"not an image")
    with pytest.raises(DsnetError, match="x.jpg: not a readable image"):
        decode_image(tmp_path / "x.jpg")
    with pytest.raises(DsnetError, match="no such file|not a readable"):
        decode_image(tmp_path / "missing.png")


def test_list_images_skips_hidden_and_other_files(tmp_path):
    for name in ("b.png", "a.JPG", ".hidden.png", "notes.txt", "sub/c.webp", ".cache/d.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path)] == ["a.JPG", "b.png", "sub/c.webp"]


def _png_bytes():
    buffer = io.BytesIO()
    Image.fromarray(_asymmetric()).save(buffer, "PNG")
    return buffer.getvalue()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=512),
                 st.builds(lambda cut, flip: _flip(_png_bytes()[:cut], flip),
                           st.integers(0, 400), st.integers(0, 400))))
def test_hostile_bytes_decode_or_raise_a_user_error(data):
    """Random or damaged bytes: an image or a DsnetError, never another exception."""
    try:
        image = decode_image(io.BytesIO(data))
    except DsnetError:
        return
    assert image.mode == "RGB" and image.size[0] > 0


def _flip(data: bytes, position: int) -> bytes:
    if not data:
        return data
    position %= len(data)
    return data[:position] + bytes([data[position] ^ 0x5A]) + data[position + 1:]
