"""Image container headers: format, width and height of PNG, JPEG, BMP and TIFF files, read without decoding.

OpenCV has no header-only API, so this module parses the headers itself (a few dozen lines per format, no
Pillow). :func:`parse_header` is what lets :mod:`lrpseg.core.images` refuse images above its pixel limit
before any pixel memory is allocated (decompression bombs), and refuse truncated files (JPEG without an
end-of-image marker after the first scan, PNG without a complete IEND chunk, BMP or TIFF whose pixel data run
past the end of the file): libjpeg and libtiff may otherwise print a warning and return a partly grey image.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np

__all__ = [
    "READ_FORMATS",
    "SUPPORTED_SUFFIXES",
    "UNSUPPORTED_SUFFIXES",
    "HeaderError",
    "ImageInfo",
    "parse_header",
]

#: File name suffixes (lower case) that are treated as images.
SUPPORTED_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

#: Suffixes of image formats lrpseg does not read: :func:`lrpseg.core.image_folders.scan_folder` reports
#: such files as problems instead of passing over them in silence.
UNSUPPORTED_SUFFIXES: dict[str, str] = {
    ".gif": "GIF",
    ".webp": "WebP",
    ".jp2": "JPEG 2000",
    ".j2k": "JPEG 2000",
    ".heic": "HEIC",
    ".heif": "HEIF",
    ".avif": "AVIF",
    ".jxl": "JPEG XL",
    ".pbm": "PNM",
    ".pgm": "PNM",
    ".ppm": "PNM",
    ".pnm": "PNM",
    ".exr": "OpenEXR",
    ".hdr": "Radiance HDR",
    ".psd": "Photoshop",
    ".svg": "SVG",
    ".dng": "camera raw (DNG)",
}
READ_FORMATS = " (PNG, JPEG, BMP and TIFF are read)"

_OTHER_FORMATS = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"%PDF": "PDF",
    b"PK\x03\x04": "ZIP",
    b"\x00\x00\x00\x0cjP  ": "JPEG 2000",
}


class HeaderError(Exception):
    """The header is corrupt, truncated or of a format lrpseg does not read; ``str()`` says which."""


class ImageInfo(NamedTuple):
    """What the header of an image file says."""

    format: str  #: "PNG", "JPEG", "BMP" or "TIFF"
    width: int
    height: int


def _png(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise HeaderError("PNG header is truncated or has no IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        pos += 12 + length
        if pos > len(data):
            break
        if kind == b"IEND":
            return width, height
    raise HeaderError("truncated PNG (no complete IEND chunk)")


def _jpeg(data: bytes) -> tuple[int, int]:
    size = None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise HeaderError(f"corrupt JPEG (no marker at byte {pos})")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker == 0xD9:
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and pos + 9 <= len(data):
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            size = (width, height)
        if marker == 0xDA:
            if size is None:
                raise HeaderError("corrupt JPEG (scan before frame header)")
            # Entropy-coded data escapes 0xFF as 0xFF00, so an EOI after the first scan is the real end.
            if data.rfind(b"\xff\xd9") <= pos:
                raise HeaderError("truncated JPEG (no end-of-image marker)")
            return size
        pos += 2 + length
    raise HeaderError("truncated or corrupt JPEG header")


def _bmp(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise HeaderError("BMP header is truncated")
    offset, dib = struct.unpack("<II", data[10:18])
    if dib == 12:
        width, height, _planes, bpp = struct.unpack("<HHHH", data[18:26])
        compression, image_bytes = 0, 0
    else:
        if len(data) < 38:
            raise HeaderError("BMP header is truncated")
        width, height, _planes, bpp, compression, image_bytes = struct.unpack("<iiHHII", data[18:38])
    height = abs(height)  # negative height = rows stored top-down
    if width <= 0 or height == 0 or bpp == 0:
        raise HeaderError(f"BMP header gives an empty image ({width}×{height}, {bpp} bit)")
    if compression in (0, 3, 6):  # uncompressed / bit fields: rows padded to 4 bytes
        image_bytes = (bpp * width + 31) // 32 * 4 * height
    if offset + image_bytes > len(data):
        raise HeaderError("truncated BMP (pixel data run past the end of the file)")
    return width, height


_TIFF_TYPES = {1: "B", 3: "H", 4: "I", 16: "Q"}  # BYTE, SHORT, LONG, LONG8
_TIFF_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}


def _tiff(data: bytes) -> tuple[int, int]:
    end = "<" if data[:2] == b"II" else ">"
    (version,) = struct.unpack(end + "H", data[2:4])
    big = version == 43
    try:
        if big:
            (ifd,) = struct.unpack(end + "Q", data[8:16])
            (count,) = struct.unpack(end + "Q", data[ifd : ifd + 8])
            entry_fmt, entry_size, first = end + "HHQ8s", 20, ifd + 8
        else:
            (ifd,) = struct.unpack(end + "I", data[4:8])
            (count,) = struct.unpack(end + "H", data[ifd : ifd + 2])
            entry_fmt, entry_size, first = end + "HHI4s", 12, ifd + 2
        tags: dict[int, np.ndarray] = {}
        for i in range(count):
            start = first + i * entry_size
            tag, kind, n, inline = struct.unpack(entry_fmt, data[start : start + entry_size])
            if tag not in (256, 257, 273, 279, 324, 325) or kind not in _TIFF_TYPES:
                continue
            nbytes = n * _TIFF_SIZES[kind]
            if nbytes <= len(inline):
                raw = inline[:nbytes]
            else:
                (where,) = struct.unpack(end + ("Q" if big else "I"), inline)
                raw = data[where : where + nbytes]
                if len(raw) < nbytes:
                    raise HeaderError("truncated TIFF (tag data run past the end of the file)")
            dtype = np.dtype(_TIFF_TYPES[kind]).newbyteorder(end)
            tags[tag] = np.frombuffer(raw, dtype=dtype).astype(np.int64)
    except struct.error:
        raise HeaderError("truncated or corrupt TIFF header") from None
    if 256 not in tags or 257 not in tags:
        raise HeaderError("TIFF has no image width or length")
    width, height = int(tags[256][0]), int(tags[257][0])
    for offsets_tag, counts_tag in ((273, 279), (324, 325)):
        offsets, counts = tags.get(offsets_tag), tags.get(counts_tag)
        if offsets is not None and counts is not None and len(offsets) == len(counts) and len(offsets):
            if int((offsets + counts).max()) > len(data):
                raise HeaderError("truncated TIFF (pixel data run past the end of the file)")
    return width, height


def parse_header(data: bytes) -> ImageInfo:
    """Format and size of an image from its bytes.

    Raises
    ------
    HeaderError
        Unknown or unsupported format, or a truncated or corrupt file.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageInfo("PNG", *_png(data))
    if data.startswith(b"\xff\xd8\xff"):
        return ImageInfo("JPEG", *_jpeg(data))
    if data.startswith(b"BM"):
        return ImageInfo("BMP", *_bmp(data))
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return ImageInfo("TIFF", *_tiff(data))
    for magic, name in _OTHER_FORMATS.items():
        if data.startswith(magic):
            raise HeaderError(f"unsupported format {name}{READ_FORMATS}")
    if data[8:12] == b"WEBP" and data[:4] == b"RIFF":
        raise HeaderError(f"unsupported format WebP{READ_FORMATS}")
    raise HeaderError("not an image file (unknown format)")
