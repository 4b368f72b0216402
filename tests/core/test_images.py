"""core.images: decoding of every supported format/depth/layout and a clear refusal for every bad file."""

import os
import struct
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from lrpseg.core.images import (
    MAX_PIXELS,
    SUPPORTED_SUFFIXES,
    ImageReadError,
    list_images,
    probe_image,
    read_image,
    scan_folder,
)


def _encode(array: np.ndarray, suffix: str) -> bytes:
    ok, buf = cv2.imencode(suffix, array)
    assert ok
    return buf.tobytes()


def _rgb(h=21, w=34, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 65535
    return rng.integers(0, top + 1, size=(h, w, 3)).astype(dtype)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp"])
@pytest.mark.parametrize("layout", ["gray", "rgb", "rgba"])
def test_lossless_formats_round_trip_8bit(tmp_path, suffix, layout):
    rgb = _rgb()
    if layout == "gray":
        array, stored = rgb[:, :, 0], rgb[:, :, 0]
    elif layout == "rgb":
        array, stored = rgb, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    else:
        alpha = np.full(rgb.shape[:2] + (1,), 7, np.uint8)
        array, stored = rgb, np.concatenate([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), alpha], axis=2)
    path = tmp_path / f"x{suffix}"
    path.write_bytes(_encode(stored, suffix))
    out = read_image(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, array)  # RGB order, alpha dropped


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("gray", [True, False])
def test_16bit_kept(tmp_path, suffix, gray):
    rgb = _rgb(dtype=np.uint16)
    array = rgb[:, :, 1] if gray else rgb
    stored = array if gray else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    path = tmp_path / f"deep{suffix}"
    path.write_bytes(_encode(stored, suffix))
    out = read_image(path)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, array)


def test_jpeg_gray_and_color(tmp_path):
    gray = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1))
    (tmp_path / "g.JPG").write_bytes(_encode(gray, ".jpg"))
    out = read_image(tmp_path / "g.JPG")
    assert out.shape == (30, 40) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - gray).max() < 12
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 2] = 200  # BGR: red
    (tmp_path / "c.jpeg").write_bytes(_encode(red, ".jpeg"))
    out = read_image(tmp_path / "c.jpeg")
    assert out.shape == (16, 16, 3) and out[8, 8, 0] > 150 and out[8, 8, 2] < 50


def test_non_ascii_path_and_suffix_mismatch(tmp_path):
    folder = tmp_path / "Prüfung 日本"
    folder.mkdir()
    path = folder / "bild.tif"  # really a PNG: the content decides
    path.write_bytes(_encode(_rgb()[:, :, 0], ".png"))
    assert read_image(path).shape == (21, 34)
    assert probe_image(path) == ("PNG", 34, 21)


def _reason(path) -> str:
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(path) in str(info.value)
    return info.value.reason


def test_refusals_name_file_and_reason(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert "zero bytes" in _reason(tmp_path / "empty.png")
    (tmp_path / "text.png").write_bytes(b"hello, this is not an image at all")
    assert "unknown format" in _reason(tmp_path / "text.png")
    (tmp_path / "anim.png").write_bytes(b"GIF89a" + bytes(40))
    assert "GIF" in _reason(tmp_path / "anim.png")
    (tmp_path / "dir.png").mkdir()
    assert "directory" in _reason(tmp_path / "dir.png")
    assert "no such file" in _reason(tmp_path / "missing.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    assert "broken symbolic link" in _reason(tmp_path / "dangling.png")


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="needs POSIX permissions, non-root")
def test_permission_denied(tmp_path):
    path = tmp_path / "secret.png"
    path.write_bytes(_encode(_rgb(), ".png"))
    path.chmod(0)
    try:
        assert "permission denied" in _reason(path)
    finally:
        path.chmod(0o644)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif"])
def test_truncated_files_refused(tmp_path, suffix):
    data = _encode(_rgb(64, 80, seed=3), suffix)
    for keep in (0.5, 0.97):
        path = tmp_path / f"cut{keep}{suffix}"
        path.write_bytes(data[: int(len(data) * keep)])
        reason = _reason(path)
        assert "truncated" in reason or "corrupt" in reason


def test_truncated_tiff_with_leading_directory(tmp_path):
    """A TIFF whose directory precedes the pixels (as most cameras write) is refused by its strip table."""
    width, height = 40, 30
    pixels = _rgb(height, width, seed=5)[:, :, 0].tobytes()
    entries = [
        (256, 3, 1, width),
        (257, 3, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 0),
        (277, 3, 1, 1),
        (278, 3, 1, height),
        (279, 4, 1, len(pixels)),
    ]
    data_offset = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = data_offset if tag == 273 else value
        packed = struct.pack("<HI", value, 0)[:4] if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    blob = b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00\x00\x00\x00" + pixels
    (tmp_path / "ok.tif").write_bytes(blob)
    np.testing.assert_array_equal(read_image(tmp_path / "ok.tif").ravel(), np.frombuffer(pixels, np.uint8))
    (tmp_path / "cut.tif").write_bytes(blob[:-100])
    assert "truncated TIFF" in _reason(tmp_path / "cut.tif")


def test_too_many_pixels_refused_from_header(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(_encode(np.zeros((50, 60), np.uint8), ".png"))
    assert read_image(path, max_pixels=3000).shape == (50, 60)
    assert "too many pixels" in _reason_with(path, max_pixels=2999)
    # A forged header claiming 20000 × 20000 is refused without trying to allocate 400 MP.
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 20000, 20000)
    path.write_bytes(bytes(data))
    assert 20000 * 20000 > MAX_PIXELS
    assert "too many pixels" in _reason(path)


def _reason_with(path, **kwargs) -> str:
    with pytest.raises(ImageReadError) as info:
        read_image(path, **kwargs)
    return info.value.reason


def test_unsupported_sample_type(tmp_path):
    path = tmp_path / "signed.tif"
    path.write_bytes(_encode(np.ones((8, 8), np.int32), ".tif"))
    assert "sample type int32" in _reason(path)


def _touch_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_encode(np.zeros((4, 4), np.uint8), ".png"))


def test_scan_folder_suffixes_hidden_links_and_loops(tmp_path):
    for rel in [
        "b.PNG",
        "a/c.jpeg",
        "a/d.TIFF",
        "a/z/e.bmp",
        ".lrpseg/cache/f.png",
        "a/.hidden.png",
        ".dot/g.png",
        "notes.txt",
        "h.tif",
    ]:
        _touch_image(tmp_path / rel)
    (tmp_path / "a" / "loop").symlink_to(tmp_path, target_is_directory=True)  # link back to an ancestor
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "folder.png").mkdir()
    images, problems = scan_folder(tmp_path)
    rels = [p.relative_to(tmp_path).as_posix() for p in images]
    assert rels == ["a/c.jpeg", "a/d.TIFF", "a/z/e.bmp", "b.PNG", "h.tif"]
    assert [(p.name, reason) for p, reason in problems] == [("broken.jpg", "broken symbolic link")]
    assert list_images(tmp_path) == images
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["b.PNG", "h.tif"]
    assert set(SUPPORTED_SUFFIXES) == {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
    with pytest.raises(NotADirectoryError):
        scan_folder(tmp_path / "b.PNG")


def test_permission_denied_reported_even_as_root(tmp_path, monkeypatch):
    from lrpseg.core import images as images_module

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    path = tmp_path / "locked.png"
    path.write_bytes(_encode(_rgb(), ".png"))
    monkeypatch.setattr(images_module, "open", refuse, raising=False)
    assert _reason(path) == "permission denied"


def test_float32_tiff_is_scaled_by_its_finite_range(tmp_path):
    values = np.linspace(-2.0, 30.0, 64, dtype=np.float32).reshape(8, 8)
    values[0, 0] = np.nan
    values[0, 1] = np.inf
    path = tmp_path / "thermal.tif"
    assert cv2.imwrite(str(path), values)
    image = read_image(path)
    assert image.dtype == np.uint16 and image.shape == (8, 8)
    assert image[0, 0] == 0 and image[0, 1] == 0  # not finite
    finite = np.isfinite(values)
    assert image[finite].min() == 0 and image[finite].max() == 65535
    assert np.all(np.diff(image[finite].astype(np.int64)) >= 0)  # order kept


def test_scan_skips_lrpseg_export_folders(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 4), np.uint8))
    export = tmp_path / "masks"
    (export / "scores").mkdir(parents=True)
    cv2.imwrite(str(export / "a.png"), np.zeros((4, 4), np.uint8))
    cv2.imwrite(str(export / "scores" / "a.png"), np.zeros((4, 4), np.uint8))
    assert [p.name for p in scan_folder(tmp_path).images] == ["a.png", "a.png", "a.png"]
    (export / "lrpseg-report.json").write_text("{}")
    assert scan_folder(tmp_path).images == [tmp_path / "a.png"]
