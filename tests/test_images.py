"""Image checks on generated images: real format, decode modes, bombs, truncation."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from shardify.datagen import make_image
from shardify.errors import MediaError
from shardify.media.images import check_image, check_png_chunks


def test_jpeg_passes_through_byte_for_byte() -> None:
    data = make_image(40, 30, fmt="JPEG")
    checked = check_image(data)
    assert checked.data == data and checked.ext == "jpg" and (checked.width, checked.height) == (40, 30)


@pytest.mark.parametrize(("fmt", "ext"), [("PNG", "png"), ("WEBP", "webp"), ("GIF", "gif"), ("BMP", "bmp"), ("TIFF", "tiff")])
def test_extension_comes_from_the_bytes(fmt: str, ext: str) -> None:
    assert check_image(make_image(16, 16, fmt=fmt)).ext == ext


def test_truncated_jpeg_fails_full_but_passes_header() -> None:
    data = make_image(200, 150, fmt="JPEG")[:1500]
    assert check_image(data, decode="header").ext == "jpg"
    with pytest.raises(MediaError) as info:
        check_image(data, decode="full")
    assert info.value.code == "unreadable_image" and "truncated" in info.value.detail


def test_truncated_png_is_caught_by_the_chunk_walk() -> None:
    data = make_image(64, 64, fmt="PNG")
    with pytest.raises(MediaError, match="IEND|truncated"):
        check_png_chunks(data[:-12])
    corrupt = bytearray(data)
    corrupt[40] ^= 0xFF
    with pytest.raises(MediaError):
        check_image(bytes(corrupt), decode="full")


def test_not_an_image() -> None:
    with pytest.raises(MediaError) as info:
        check_image(b"hello world, not an image")
    assert info.value.code == "unreadable_image" and "68 65 6c" in info.value.detail
    with pytest.raises(MediaError, match="empty"):
        check_image(b"")


def test_pixel_limit_is_the_configured_one() -> None:
    data = make_image(100, 100)
    with pytest.raises(MediaError) as info:
        check_image(data, max_pixels=9_999)
    assert info.value.code == "image_too_large" and "max_image_pixels=9999" in info.value.detail
    assert check_image(data, max_pixels=10_000).width == 100


def test_reencode_to_jpeg() -> None:
    data = make_image(32, 24, fmt="PNG")
    checked = check_image(data, reencode="jpg", quality=80)
    assert checked.ext == "jpg" and checked.data != data
    assert Image.open(io.BytesIO(checked.data)).format == "JPEG"


def test_pillow_global_limit_is_never_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build in the same process as a reader must not change what Pillow accepts."""
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's own guard, set low
    out = io.BytesIO()
    Image.new("RGB", (32, 32)).save(out, format="PNG")
    checked = check_image(out.getvalue(), decode="header", max_pixels=10_000)  # above Pillow's
    assert (checked.width, checked.height) == (32, 32)
    assert Image.MAX_IMAGE_PIXELS == 100
    with pytest.raises(MediaError) as info:
        check_image(out.getvalue(), decode="header", max_pixels=50)  # below both
    assert info.value.code == "image_too_large"
    assert Image.MAX_IMAGE_PIXELS == 100


def test_a_png_cut_after_its_image_data_says_so() -> None:
    """Only the last chunk's CRC and IEND missing: the detail says the data is all there;
    cut inside the data, it says how much of it is there."""
    png = make_image(8, 8, fmt="PNG")
    idat = png.index(b"IDAT")
    length = int.from_bytes(png[idat - 4 : idat], "big")
    after_data = png[: idat + 4 + length]
    with pytest.raises(MediaError, match=f"after the IDAT chunk's data: all {length} bytes of it are there"):
        check_png_chunks(after_data)
    with pytest.raises(MediaError, match=rf"inside the IDAT chunk \(3 of its {length} data bytes\)"):
        check_png_chunks(png[: idat + 4 + 3])
