"""A folder of bad and odd image files, generated from cv2, numpy, Pillow and raw bytes.

Used by the reader corpus test, the ``lrpseg segment`` corpus test and the GUI test. Every case says what a
user must see: ``"error"`` cases must be refused with a message naming the file and containing ``reason``
(case-insensitive); ``"ok"`` cases are odd but valid images that must decode (to ``shape``) and get a mask.
Cases with ``listed=False`` are not image candidates of a folder scan at all, or are reported by the scan
(``scan_reason``) rather than by the reader.

Nothing here needs the network; the decompression bomb is a genuine deflate bomb (a 144-megapixel 1-bit PNG of
zeros compressed to a few kilobytes), built in well under a second.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

BOMB_SIDE = 12_000  # 144 MP, above core.images.MAX_PIXELS (100 MP)


@dataclass
class Case:
    """One file of the corpus."""

    kind: str  #: what is odd about it, as reported in tests/RELIABILITY.md
    name: str  #: file name (str; non-UTF-8 names carry surrogate escapes, as os.listdir returns them)
    expect: str  #: "error" or "ok"
    reason: str = ""  #: for "error": text the message must contain
    shape: tuple[int, ...] | None = None  #: for "ok": the decoded shape
    listed: bool = True  #: whether scan_folder lists it as an image candidate
    scan_reason: str = ""  #: for files the scan itself reports as a problem


def _encode(array: np.ndarray, suffix: str, params: list[int] | None = None) -> bytes:
    ok, buffer = cv2.imencode(suffix, array, params or [])
    assert ok, suffix
    return buffer.tobytes()


def _picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A textured BGR image (noise over a gradient) so JPEG and PNG files are not trivial."""
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 200, width, dtype=np.float32)[None, :, None]
    noise = rng.normal(0, 25, size=(height, width, 3)).astype(np.float32)
    return np.clip(base + noise + 20, 0, 255).astype(np.uint8)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit gray PNG of ``side`` × ``side`` zeros: a few kB on disk, ``side**2`` bytes decoded."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", body) + _png_chunk(b"IEND", b"")


def _jpeg_with_size(data: bytes, width: int, height: int) -> bytes:
    """Patch the frame header (SOF0) of a baseline JPEG to claim another size."""
    pos = data.index(b"\xff\xc0")
    return data[: pos + 5] + struct.pack(">HH", height, width) + data[pos + 9 :]


def _pillow_bytes(image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


NON_UTF8_NAME = os.fsdecode(b"latin1-\xe9t\xe9-\xff.png")  # not valid UTF-8: surrogate escapes in str
LONG_NAME = "L" * 250 + ".png"  # 254 bytes: at the usual 255-byte limit of a file name
LONG_UTF8_NAME = "Prüfbild-" + "ü" * 110 + ".png"  # 234 bytes of UTF-8


def make_corpus(folder: Path, unreadable: bool = True) -> list[Case]:
    """Write every case into ``folder`` (flat) and return their descriptions.

    Parameters
    ----------
    folder
        Created if missing.
    unreadable
        Also write a mode-0 file (the caller must make it unreadable for itself when it runs as root, see
        ``reliability_helpers.without_dac_override``).
    """
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(case: Case, data: bytes | None = None) -> None:
        if data is not None:
            (folder / case.name).write_bytes(data)
        cases.append(case)

    bgr = _picture(48, 64, seed=1)
    png = _encode(bgr, ".png")
    jpg = _encode(bgr, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90])
    tif = _encode(bgr, ".tif")
    bmp = _encode(bgr, ".bmp")

    # ---------------------------------------------------------------- bad files: refused with a reason
    add(Case("zero bytes", "zero_bytes.png", "error", "empty file"), b"")
    add(Case("truncated JPEG", "truncated.jpg", "error", "truncated JPEG"), jpg[: len(jpg) // 2])
    add(Case("truncated PNG", "truncated.png", "error", "truncated PNG"), png[: len(png) * 2 // 3])
    add(Case("truncated TIFF", "truncated.tif", "error", "truncated"), tif[: len(tif) // 2])
    add(Case("truncated BMP", "truncated.bmp", "error", "truncated BMP"), bmp[: len(bmp) - 100])
    add(
        Case("text file with an image suffix", "notes.png", "error", "not an image file"),
        b"Inspection notes, not an image.\nPipe 12: crack at 3 o'clock.\n" * 20,
    )
    garbage = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    add(Case("binary garbage", "garbage.jpg", "error", "not an image file"), b"\x00" + garbage)
    add(Case("PNG signature then garbage", "fake_signature.png", "error", "PNG"), png[:8] + garbage)
    idat = png.index(b"IDAT")
    (length,) = struct.unpack(">I", png[idat - 4 : idat])
    broken = bytearray(png)
    broken[idat + 4 : idat + 4 + length] = garbage[:length].ljust(length, b"\x00")
    add(Case("PNG with corrupt pixel data", "corrupt_pixels.png", "error", "corrupt PNG"), bytes(broken))
    zero_width = png[:16] + struct.pack(">I", 0) + png[20:]
    add(Case("PNG header with zero width", "zero_width.png", "error", "empty image"), zero_width)
    add(
        Case("decompression bomb PNG (144 MP of zeros)", "bomb.png", "error", "too many pixels"),
        png_bomb(),
    )
    add(
        Case("JPEG header claiming 60000 × 60000", "bomb.jpg", "error", "too many pixels"),
        _jpeg_with_size(jpg, 60000, 60000),
    )
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "green", "blue")]
    gif = _pillow_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    add(Case("animated GIF named .png", "animated_gif.png", "error", "unsupported format GIF"), gif)
    add(
        Case(
            "animated GIF (.gif)",
            "animated.gif",
            "error",
            "unsupported format GIF",
            listed=False,
            scan_reason="unsupported format GIF",
        ),
        gif,
    )
    webp = _encode(bgr, ".webp")
    add(Case("WebP named .jpg", "webp_inside.jpg", "error", "unsupported format WebP"), webp)
    add(
        Case("PDF named .png", "document.png", "error", "unsupported format PDF"),
        b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n",
    )
    add(
        Case("32-bit float TIFF (scaled by its finite range)", "float32.tif", "ok", shape=(16, 16)),
        _encode(np.linspace(-3.5, 40.0, 256, dtype=np.float32).reshape(16, 16), ".tif"),
    )
    add(
        Case("32-bit float TIFF, all NaN", "float32_nan.tif", "error", "without a finite sample"),
        _encode(np.full((16, 16), np.nan, np.float32), ".tif"),
    )
    os.symlink("loop_b.png", folder / "loop_a.png")
    os.symlink("loop_a.png", folder / "loop_b.png")
    add(
        Case(
            "symlink loop (a -> b -> a)",
            "loop_a.png",
            "error",
            "symbolic link loop",
            listed=False,
            scan_reason="symbolic link loop",
        )
    )
    add(
        Case(
            "symlink loop (b -> a -> b)",
            "loop_b.png",
            "error",
            "symbolic link loop",
            listed=False,
            scan_reason="symbolic link loop",
        )
    )
    os.symlink("no_such_target.png", folder / "dangling.png")
    add(
        Case(
            "dangling symlink",
            "dangling.png",
            "error",
            "broken symbolic link",
            listed=False,
            scan_reason="broken symbolic link",
        )
    )
    os.mkfifo(folder / "fifo.png")
    add(
        Case(
            "named pipe with an image suffix",
            "fifo.png",
            "error",
            "not a regular file",
            listed=False,
            scan_reason="not a regular file",
        )
    )
    if unreadable:
        (folder / "unreadable.png").write_bytes(png)
        (folder / "unreadable.png").chmod(0)
        add(Case("unreadable file (mode 000)", "unreadable.png", "error", "permission denied"))

    # ---------------------------------------------------------------- odd but valid: decoded, get a mask
    add(Case("1×1 pixel", "one_pixel.png", "ok", shape=(1, 1, 3)), _encode(bgr[:1, :1], ".png"))
    add(Case("1×1 pixel gray JPEG", "one_pixel_gray.jpg", "ok", shape=(1, 1)), _encode(bgr[:1, :1, 0], ".jpg"))
    deep = bgr.astype(np.uint16) * 257  # BGR, as cv2 writes it
    add(Case("16-bit RGB PNG", "deep16.png", "ok", shape=(48, 64, 3)), _encode(deep, ".png"))
    add(Case("16-bit gray TIFF", "deep16_gray.tif", "ok", shape=(48, 64)), _encode(deep[:, :, 0], ".tif"))
    rgb = Image.fromarray(bgr[:, :, ::-1].copy())
    add(
        Case("palette PNG", "palette.png", "ok", shape=(48, 64, 3)),
        _pillow_bytes(rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG"),
    )
    add(Case("CMYK JPEG", "cmyk.jpg", "ok", shape=(48, 64, 3)), _pillow_bytes(rgb.convert("CMYK"), "JPEG"))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    add(
        Case("EXIF-rotated JPEG (orientation 6)", "exif_rotated.jpg", "ok", shape=(48, 64, 3)),
        _pillow_bytes(rgb, "JPEG", exif=exif.tobytes()),
    )
    pages = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT), rgb.resize((32, 24))]
    add(
        Case("multi-page TIFF (3 pages)", "multipage.tif", "ok", shape=(48, 64, 3)),
        _pillow_bytes(pages[0], "TIFF", save_all=True, append_images=pages[1:]),
    )
    add(Case("PNG with a .jpg suffix", "really_png.jpg", "ok", shape=(48, 64, 3)), png)
    add(Case("upper-case suffix", "SHOUTING.PNG", "ok", shape=(48, 64, 3)), png)
    rgba = np.dstack([bgr, np.full(bgr.shape[:2], 128, np.uint8)])
    add(Case("RGBA PNG (alpha dropped)", "alpha.png", "ok", shape=(48, 64, 3)), _encode(rgba, ".png"))
    add(
        Case("progressive JPEG", "progressive.jpg", "ok", shape=(48, 64, 3)),
        _encode(bgr, ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
    )
    add(Case("non-UTF-8 file name", NON_UTF8_NAME, "ok", shape=(48, 64, 3)), png)
    add(Case("254-byte file name", LONG_NAME, "ok", shape=(48, 64, 3)), png)
    add(Case("long non-ASCII file name", LONG_UTF8_NAME, "ok", shape=(48, 64, 3)), png)
    add(Case("2 × 96 strip", "strip.png", "ok", shape=(2, 96, 3)), _encode(_picture(2, 96, seed=3), ".png"))
    return cases


def kinds(cases: list[Case]) -> list[str]:
    """The distinct kinds of file in a corpus (the two links of one loop are one kind)."""
    return list(dict.fromkeys(case.kind.split(" (")[0] for case in cases))
