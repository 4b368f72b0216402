"""Decode image files: PNG, JPEG, BMP and TIFF, 8 or 16 bit, gray, RGB or RGBA.

Decoding uses OpenCV (``cv2.imdecode`` with ``IMREAD_UNCHANGED``): it is already a dependency, it reads
all four formats including 16-bit PNG and TIFF without converting them to 8 bit, and it is fast. The bytes are
read by Python and handed to ``imdecode`` rather than passing the path to ``cv2.imread``, because ``imread``
cannot open non-ASCII paths on every platform and gives no reason when it fails.

Before decoding, the container header is checked (:mod:`lrpseg.core.image_headers`): images above
:data:`MAX_PIXELS` and truncated files are refused. Folder scanning lives in :mod:`lrpseg.core.image_folders`;
its names are re-exported here.

Images are returned as (H, W) gray or (H, W, 3) RGB arrays of dtype uint8 or uint16; alpha is dropped. 32-bit
float TIFFs are scaled by their finite minimum and maximum to uint16 (NaN and infinite samples become 0). EXIF
orientation is ignored on purpose: masks are delivered on the file's own pixel grid.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import cv2
import numpy as np
from lrpseg.core.image_folders import FolderScan, link_problem, list_images, scan_folder
from lrpseg.core.image_headers import (
    SUPPORTED_SUFFIXES,
    UNSUPPORTED_SUFFIXES,
    HeaderError,
    ImageInfo,
    parse_header,
)

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

#: Largest image (width × height) that :func:`read_image` decodes: 100 megapixels, i.e. up to 600 MB for a
#: 16-bit RGB image. Larger files are refused from their header, before decoding.
MAX_PIXELS: int = 100_000_000


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
    if path.is_symlink() and (problem := link_problem(path)):
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
        return parse_header(data)
    except HeaderError as error:
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
        info = parse_header(data)
    except HeaderError as error:
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


def _float_to_uint16(path: Path, image: np.ndarray) -> np.ndarray:
    """A floating-point image (thermal, depth, microscopy exports) scaled by its finite minimum and maximum to
    the full 16-bit range; NaN and infinite samples become 0."""
    finite = np.isfinite(image)
    if not finite.any():
        raise ImageReadError(path, "floating-point image without a finite sample (all NaN or infinite)")
    low, high = float(image[finite].min()), float(image[finite].max())
    span = high - low if high > low else 1.0
    scaled = np.where(finite, (np.clip(image, low, high) - low) / span * 65535.0, 0.0)
    return np.rint(scaled).astype(np.uint16)


def _normalise(path: Path, image: np.ndarray) -> np.ndarray:
    if image.dtype in (np.float32, np.float64):
        image = _float_to_uint16(path, image)
    if image.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(
            path, f"unsupported sample type {image.dtype} (8- and 16-bit integers and 32-bit floats are read)"
        )
    if image.ndim == 3 and image.shape[2] in (1, 2):  # gray, gray + alpha
        image = image[:, :, 0]
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise ImageReadError(path, f"unsupported channel layout (array shape {image.shape})")
