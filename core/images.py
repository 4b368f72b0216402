"""Find and decode the images of a folder: PNG, JPEG, BMP and TIFF, 8 or 16 bit, gray, RGB or RGBA.

Decoding uses OpenCV (``cv2.imdecode`` with ``IMREAD_UNCHANGED``): it is already a dependency, it reads
all four formats including 16-bit PNG and TIFF without converting them to 8 bit, and it is fast. The bytes are
read by Python and handed to ``imdecode`` rather than passing the path to ``cv2.imread``, because ``imread``
cannot open non-ASCII paths on every platform and gives no reason when it fails.

OpenCV has no header-only API, so before decoding this module parses the container header itself (a few dozen
lines per format, no Pillow) to

* refuse images above :data:`MAX_PIXELS` before any pixel memory is allocated (decompression bombs), and
* refuse truncated files (JPEG without an end-of-image marker after the first scan, PNG without a complete
  IEND chunk, BMP or TIFF whose pixel data run past the end of the file): libjpeg and libtiff may otherwise
  print a warning and return a partly grey image.

Images are returned as (H, W) gray or (H, W, 3) RGB arrays of dtype uint8 or uint16; alpha is dropped. EXIF
orientation is ignored on purpose: masks are delivered on the file's own pixel grid.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

__all__ = [
    "MAX_PIXELS",
    "SUPPORTED_SUFFIXES",
    "UNSUPPORTED_SUFFIXES",
    "FolderScan",
    "ImageInfo",
    "ImageReadError",
    "list_images",
    "probe_image",
    "read_image",
    "scan_folder",
]

#: File name suffixes (lower case) that are treated as images.
SUPPORTED_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

#: Largest image (width × height) that :func:`read_image` decodes: 100 megapixels, i.e. up to 600 MB for a
#: 16-bit RGB image. Larger files are refused from their header, before decoding.
MAX_PIXELS: int = 100_000_000

#: Suffixes of image formats lrpseg does not read: :func:`scan_folder` reports such files as problems
#: instead of passing over them in silence.
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
_READ_FORMATS = " (PNG, JPEG, BMP and TIFF are read)"

_OTHER_FORMATS = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"%PDF": "PDF",
    b"PK\x03\x04": "ZIP",
    b"\x00\x00\x00\x0cjP  ": "JPEG 2000",
}


class ImageReadError(Exception):
    """An image file could not be read; ``str()`` names the file and the reason.

    Attributes
    ----------
    path : pathlib.Path
    reason : str
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


class ImageInfo(NamedTuple):
    """What the header of an image file says."""

    format: str  #: "PNG", "JPEG", "BMP" or "TIFF"
    width: int
    height: int


class FolderScan(NamedTuple):
    """Result of :func:`scan_folder`; unpacks as ``images, problems``."""

    images: list[Path]
    problems: list[tuple[Path, str]]


class _Corrupt(Exception):
    pass


# ---------------------------------------------------------------------------------------------- headers
def _png(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise _Corrupt("PNG header is truncated or has no IHDR chunk")
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
    raise _Corrupt("truncated PNG (no complete IEND chunk)")


def _jpeg(data: bytes) -> tuple[int, int]:
    size = None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise _Corrupt(f"corrupt JPEG (no marker at byte {pos})")
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
                raise _Corrupt("corrupt JPEG (scan before frame header)")
            # Entropy-coded data escapes 0xFF as 0xFF00, so an EOI after the first scan is the real end.
            if data.rfind(b"\xff\xd9") <= pos:
                raise _Corrupt("truncated JPEG (no end-of-image marker)")
            return size
        pos += 2 + length
    raise _Corrupt("truncated or corrupt JPEG header")


def _bmp(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise _Corrupt("BMP header is truncated")
    offset, dib = struct.unpack("<II", data[10:18])
    if dib == 12:
        width, height, _planes, bpp = struct.unpack("<HHHH", data[18:26])
        compression, image_bytes = 0, 0
    else:
        if len(data) < 38:
            raise _Corrupt("BMP header is truncated")
        width, height, _planes, bpp, compression, image_bytes = struct.unpack("<iiHHII", data[18:38])
    height = abs(height)  # negative height = rows stored top-down
    if width <= 0 or height == 0 or bpp == 0:
        raise _Corrupt(f"BMP header gives an empty image ({width}×{height}, {bpp} bit)")
    if compression in (0, 3, 6):  # uncompressed / bit fields: rows padded to 4 bytes
        image_bytes = (bpp * width + 31) // 32 * 4 * height
    if offset + image_bytes > len(data):
        raise _Corrupt("truncated BMP (pixel data run past the end of the file)")
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
                    raise _Corrupt("truncated TIFF (tag data run past the end of the file)")
            dtype = np.dtype(_TIFF_TYPES[kind]).newbyteorder(end)
            tags[tag] = np.frombuffer(raw, dtype=dtype).astype(np.int64)
    except struct.error:
        raise _Corrupt("truncated or corrupt TIFF header") from None
    if 256 not in tags or 257 not in tags:
        raise _Corrupt("TIFF has no image width or length")
    width, height = int(tags[256][0]), int(tags[257][0])
    for offsets_tag, counts_tag in ((273, 279), (324, 325)):
        offsets, counts = tags.get(offsets_tag), tags.get(counts_tag)
        if offsets is not None and counts is not None and len(offsets) == len(counts) and len(offsets):
            if int((offsets + counts).max()) > len(data):
                raise _Corrupt("truncated TIFF (pixel data run past the end of the file)")
    return width, height


def _parse_header(data: bytes) -> ImageInfo:
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
            raise _Corrupt(f"unsupported format {name}{_READ_FORMATS}")
    if data[8:12] == b"WEBP" and data[:4] == b"RIFF":
        raise _Corrupt(f"unsupported format WebP{_READ_FORMATS}")
    raise _Corrupt("not an image file (unknown format)")


# ---------------------------------------------------------------------------------------------- reading
def _link_problem(path: Path) -> str | None:
    """Why a symbolic link cannot be followed (loop or missing target), or None."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop (the link leads back to itself)"
        if path.is_symlink():
            return f"broken symbolic link (to {os.readlink(path)})"
    return None


def _os_reason(error: OSError) -> str:
    if isinstance(error, IsADirectoryError):
        return "is a directory"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if error.errno == errno.ELOOP:
        return "symbolic link loop (the link leads back to itself)"
    return error.strerror or str(error)


def _read_bytes(path: Path) -> bytes:
    if path.is_symlink() and (problem := _link_problem(path)):
        raise ImageReadError(path, problem)
    try:
        # O_NONBLOCK: opening a named pipe must not wait for a writer; it is refused below as not a file.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as error:
        raise ImageReadError(path, _os_reason(error)) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise ImageReadError(path, "is a directory")
        if not stat.S_ISREG(mode):
            raise ImageReadError(path, "not a regular file (a pipe, socket or device)")
        with open(fd, "rb", closefd=False) as handle:
            data = handle.read()
    except OSError as error:
        raise ImageReadError(path, _os_reason(error)) from None
    finally:
        os.close(fd)
    if not data:
        raise ImageReadError(path, "empty file (zero bytes)")
    return data


def probe_image(path: str | os.PathLike[str]) -> ImageInfo:
    """Read format and size from the file header without decoding the pixels.

    Raises
    ------
    ImageReadError
        If the file cannot be opened, is not a PNG/JPEG/BMP/TIFF file, or is truncated.
    """
    path = Path(path)
    data = _read_bytes(path)
    try:
        return _parse_header(data)
    except _Corrupt as error:
        raise ImageReadError(path, str(error)) from None


def read_image(path: str | os.PathLike[str], max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file into a gray or RGB array, keeping 8 or 16 bits.

    Parameters
    ----------
    path : path-like
        A PNG, JPEG, BMP or TIFF file (the format is recognised from the content, not the suffix).
    max_pixels : int
        Refuse images with more pixels than this, judged from the header before decoding.

    Returns
    -------
    numpy.ndarray
        (H, W) for gray images, (H, W, 3) RGB otherwise; dtype uint8 or uint16. Alpha is dropped.

    Raises
    ------
    ImageReadError
        With the file and the reason: empty, unknown format, truncated or corrupt, too many pixels,
        unsupported sample type or channel layout, permission denied, is a directory, not a regular
        file (a named pipe is refused without waiting for a writer), broken link, link loop.
    """
    path = Path(path)
    data = _read_bytes(path)
    try:
        info = _parse_header(data)
    except _Corrupt as error:
        raise ImageReadError(path, str(error)) from None
    if info.width <= 0 or info.height <= 0:
        raise ImageReadError(path, f"header gives an empty image ({info.width}×{info.height})")
    if info.width * info.height > max_pixels:
        raise ImageReadError(
            path,
            f"too many pixels ({info.width}×{info.height} = {info.width * info.height / 1e6:.1f} MP; "
            f"the limit is {max_pixels / 1e6:g} MP)",
        )
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        raise ImageReadError(path, f"corrupt {info.format} data ({error.err})") from None
    if image is None:
        raise ImageReadError(path, f"corrupt {info.format} data (the decoder gave up)")
    return _normalise(path, image)


def _normalise(path: Path, image: np.ndarray) -> np.ndarray:
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(path, f"unsupported sample type {image.dtype} (8- and 16-bit integers are read)")
    if image.ndim == 3 and image.shape[2] in (1, 2):  # gray, gray + alpha
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ImageReadError(path, f"unsupported channel layout (array shape {image.shape})")


# ---------------------------------------------------------------------------------------------- folders
def scan_folder(folder: str | os.PathLike[str], recursive: bool = True) -> FolderScan:
    """List the candidate image files of a folder by suffix, without decoding them.

    Hidden files and folders (name starting with ``.``, e.g. the project store ``.lrpseg``) are skipped.
    Symbolic links are followed, but a folder reached twice (a link loop or two links to one folder) is
    listed once. Suffixes are matched case-insensitively against :data:`SUPPORTED_SUFFIXES`.

    Parameters
    ----------
    folder : path-like
        The folder to scan.
    recursive : bool
        Descend into sub-folders.

    Returns
    -------
    FolderScan
        ``images``: sorted by relative path, each ``folder / relative path``; ``problems``: ``(path, reason)``
        for candidates that cannot be read at all (broken links, link loops, non-regular files), files of an
        unsupported image format (:data:`UNSUPPORTED_SUFFIXES`) and unreadable folders.

    Raises
    ------
    NotADirectoryError
        If ``folder`` is not an existing folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    images: list[tuple[str, Path]] = []
    problems: list[tuple[Path, str]] = []
    root_stat = root.stat()
    seen = {(root_stat.st_dev, root_stat.st_ino)}

    def on_error(error: OSError) -> None:
        problems.append((Path(error.filename or root), f"cannot list folder: {error.strerror or error}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=True):
        keep = []
        for name in sorted(dirnames):
            if name.startswith(".") or not recursive:
                continue
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            suffix = os.path.splitext(name)[1].lower()
            if name.startswith(".") or not (suffix in SUPPORTED_SUFFIXES or suffix in UNSUPPORTED_SUFFIXES):
                continue
            path = Path(dirpath, name)
            if path.is_symlink() and (problem := _link_problem(path)):
                problems.append((path, problem.split(" (")[0]))
            elif not path.is_file():
                problems.append((path, "not a regular file"))
            elif suffix in UNSUPPORTED_SUFFIXES:
                problems.append((path, f"unsupported format {UNSUPPORTED_SUFFIXES[suffix]}{_READ_FORMATS}"))
            else:
                images.append((path.relative_to(root).as_posix(), path))
    images.sort(key=lambda item: item[0])
    problems.sort(key=lambda item: str(item[0]))
    return FolderScan([path for _, path in images], problems)


def list_images(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Sorted image files under ``folder`` (see :func:`scan_folder`; problem files are left out)."""
    return scan_folder(folder, recursive=recursive).images
