"""Check, identify and (optionally) re-encode one image.

The real format comes from the bytes, never from the file name (a PNG named ``.jpg`` is
stored as ``image0.png``). ``header`` reads only the header; ``full`` decodes the image the
way the training loader does (``Image.open(...).convert("RGB")``) and checks the PNG chunk
structure, which Pillow alone does not.
"""

from __future__ import annotations

import io
import struct
import threading
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Literal, Union

from PIL import Image, UnidentifiedImageError

from shardify.errors import MediaError
from shardify.rejects import IMAGE_TOO_LARGE, UNREADABLE_IMAGE

# Pillow format name -> member extension. Anything else: the lower-cased format name.
_EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif",
               "BMP": "bmp", "TIFF": "tiff", "AVIF": "avif", "JPEG2000": "jp2", "ICO": "ico"}  # fmt: skip
_SAVE_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckedImage:
    """An image that passed its checks, with the bytes and extension to store."""

    data: bytes
    ext: str
    width: int
    height: int
    source_format: str


def image_extension(pillow_format: str) -> str:
    """The member extension for a Pillow format name (``JPEG`` -> ``jpg``)."""
    return _EXTENSIONS.get(pillow_format, pillow_format.lower())


def check_image(
    data: bytes,
    *,
    decode: Literal["full", "header"] = "full",
    max_pixels: int = 89_478_485,
    reencode: Union[Literal[False], str] = False,
    quality: int = 95,
) -> CheckedImage:
    """Check one image's bytes; raise MediaError(unreadable_image | image_too_large)."""
    image = _open(data, max_pixels)
    width, height = image.size
    if width * height > max_pixels:
        raise MediaError(
            IMAGE_TOO_LARGE,
            f"{width}x{height} = {width * height} pixels, above validation.max_image_pixels="
            f"{max_pixels}",
        )
    source_format = str(image.format)
    if decode == "full" or reencode:
        if source_format == "PNG":
            check_png_chunks(data)
        rgb = _decode_rgb(image, copy=bool(reencode))
    if not reencode:
        return CheckedImage(data=data, ext=image_extension(source_format), width=width,
                            height=height, source_format=source_format)  # fmt: skip
    out = io.BytesIO()
    rgb.save(out, format=_SAVE_FORMATS[reencode], quality=quality)
    return CheckedImage(data=out.getvalue(), ext=reencode, width=width, height=height,
                        source_format=source_format)  # fmt: skip


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Identify the image; shardify's own pixel limit is checked by the caller.

    Pillow's process-wide ``Image.MAX_IMAGE_PIXELS`` is never changed (a build in the same
    process as a reader must not change what the reader accepts). Pillow's guard fires at
    its own limit; when ``max_pixels`` is higher, an image between the two is identified
    again with Pillow's guard off for that one call (``_pillow_guard_off``).
    """
    try:
        return _identify(data, max_pixels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        pillow_limit = Image.MAX_IMAGE_PIXELS
        if pillow_limit is None or max_pixels <= pillow_limit:
            raise MediaError(
                IMAGE_TOO_LARGE, f"above validation.max_image_pixels={max_pixels}: {exc}"
            ) from None
        with _pillow_guard_off():
            return _identify(data, max_pixels)


def _identify(data: bytes, max_pixels: int) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise
        except UnidentifiedImageError:
            raise MediaError(UNREADABLE_IMAGE, f"not an image Pillow can identify ({_magic(data)})") from None
        except Exception as exc:  # Pillow raises many types on corrupt headers
            raise MediaError(UNREADABLE_IMAGE, f"cannot read the image header: {exc}") from None


_GUARD_LOCK = threading.Lock()


@contextmanager
def _pillow_guard_off() -> Iterator[None]:
    """Pillow's bomb guard off for one identification (only for limits above Pillow's own);
    restored at once, under a lock, so no other check sees it changed for longer."""
    with _GUARD_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _decode_rgb(image: Image.Image, *, copy: bool = True) -> Image.Image:
    """Decode every pixel and convert to RGB as the training loader does.

    With ``copy=False`` an image that is already RGB is returned as loaded: its
    ``convert("RGB")`` would only copy the pixels (a quarter of a full-decode build).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # e.g. "palette with transparency"
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image.load()
            if not copy and image.mode == "RGB":
                return image
            return image.convert("RGB")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise MediaError(IMAGE_TOO_LARGE, str(exc)) from None
        except Exception as exc:
            raise MediaError(UNREADABLE_IMAGE, f"cannot decode the image: {exc}") from None


def check_png_chunks(data: bytes) -> None:
    """Walk a PNG's chunks: every CRC must match and the file must end with IEND."""
    if not data.startswith(_PNG_SIGNATURE):
        raise MediaError(UNREADABLE_IMAGE, "PNG signature missing")
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):  # a chunk header: length and type
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise MediaError(UNREADABLE_IMAGE, _truncated(kind, len(data) - pos - 8, length))
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(data[pos + 4 : end - 4]) != crc:
            raise MediaError(UNREADABLE_IMAGE, f"PNG {_chunk(kind)} chunk has a bad CRC (corrupt file)")
        if kind == b"IEND":
            return
        pos = end
    raise MediaError(UNREADABLE_IMAGE, "PNG truncated: no IEND chunk at the end")


def _truncated(kind: bytes, have: int, length: int) -> str:
    """Where a PNG ends early: inside a chunk's data, or after all of it (only its CRC and
    what follows are missing)."""
    if have >= length:
        return (f"PNG truncated after the {_chunk(kind)} chunk's data: all {length} bytes of it are "
                "there, its CRC and the end of the file (IEND) are missing")
    return f"PNG truncated inside the {_chunk(kind)} chunk ({have} of its {length} data bytes)"


def _chunk(kind: bytes) -> str:
    return kind.decode("latin-1")


def _magic(data: bytes) -> str:
    if not data:
        return "the file is empty"
    return f"starts with {data[:8].hex(' ')}"
