"""Pieces of the app on their own: overlay lookup tables, the byte-bounded cache, the thumbnail cache."""

from __future__ import annotations

import numpy as np
import pytest
from lrpseg.app.analysis import ByteLRU
from lrpseg.app.viewer import ZERO_INDEX, heatmap_lut, mask_lut, relevance_to_uint8, threshold_index
from lrpseg.core.segment import score_to_uint8
from PySide6.QtCore import QCoreApplication


def test_heatmap_is_symmetric_with_transparent_zero():
    relevance = np.array([[-2.0, -1.0, 0.0, 1.0, 2.0]], dtype=np.float32)
    index, scale = relevance_to_uint8(relevance)
    assert index[0, 2] == ZERO_INDEX
    assert int(index[0, 4]) - ZERO_INDEX == ZERO_INDEX - int(index[0, 0])  # symmetric about zero
    assert scale > 0
    lut = heatmap_lut()
    assert lut.shape == (256, 4) and lut.dtype == np.uint8
    assert lut[ZERO_INDEX, 3] == 0 and lut[255, 3] == 255 and lut[1, 3] > 200
    assert lut[ZERO_INDEX + 1 :, 0].min() > 200 and lut[:ZERO_INDEX, 2].min() > 200  # red for, blue against
    tenth, _ = relevance_to_uint8(np.array([[0.1, -0.1, 1.0]], dtype=np.float32))
    assert (lut[tenth[0, :2], 3] > 75).all()  # a tenth of the scale is clearly visible (the maps are sparse)


def test_mask_lut_matches_score_threshold():
    score = np.linspace(0, 1, 1001, dtype=np.float32).reshape(7, 143)
    index = score_to_uint8(score)
    for threshold in (0.0, 0.25, 0.5, 0.731, 1.0):
        shown = mask_lut(threshold)[index][..., 3] > 0
        exact = score >= threshold
        assert np.mean(shown != exact) < 0.005  # only uint8 rounding at the border
    assert threshold_index(0.0) == 0 and threshold_index(1.0) == 255
    assert not mask_lut(0.5, enabled=False)[..., 3].any()


def test_viewer_tick_changes_only_the_lookup_table(qtbot):
    from lrpseg.app.viewer import ImageViewer

    viewer = ImageViewer()
    qtbot.addWidget(viewer)
    rng = np.random.default_rng(0)
    viewer.set_image(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    viewer.set_relevance(rng.standard_normal((32, 32)).astype(np.float32))
    viewer.set_score(rng.random((32, 32)).astype(np.float32), 0.5)
    image = viewer.mask_item.image
    before = viewer.displayed_mask().copy()
    viewer.set_threshold(0.9)
    assert viewer.mask_item.image is image
    assert viewer.displayed_mask().sum() < before.sum()
    viewer.set_mask_style("outline")
    assert viewer.mask_item.image is not image and set(np.unique(viewer.mask_item.image)) <= {0, 1}
    with pytest.raises(ValueError):
        viewer.set_mask_style("dotted")


def test_byte_lru_evicts_least_recently_used():
    cache = ByteLRU(max_bytes=3000)
    for key in "abc":
        cache.put(key, np.zeros(1000, dtype=np.uint8))
    cache.get("a")
    cache.put("d", np.zeros(1000, dtype=np.uint8))
    assert "b" not in cache and {"a", "c", "d"} <= {k for k, _ in cache.items()}
    assert cache.bytes <= 3000


def test_thumbnail_cache_is_bounded(qtbot, tmp_path):
    import cv2
    from lrpseg.app.thumbnails import ThumbnailLoader

    for i in range(12):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((20, 30), i * 20, np.uint8))
    loader = ThumbnailLoader(tmp_path, capacity=5, size=16)
    loaded = []
    loader.loaded.connect(loaded.append)
    try:
        for i in range(12):
            loader.request(f"{i:02d}.png")
        qtbot.waitUntil(lambda: len(loaded) == 12, timeout=10000)
        assert loader.cached_count() == 5
        image = loader.get(loaded[-1])  # the last one decoded is still cached
        assert image is not None and max(image.width(), image.height()) == 16
    finally:
        assert loader.shutdown()


def _write_png(path, value: int, side: int = 20) -> None:
    import cv2

    assert cv2.imwrite(str(path), np.full((side, side), value, np.uint8))


def test_thumbnail_failures_are_remembered_until_the_file_changes(qtbot, tmp_path):
    import os

    from lrpseg.app.thumbnails import ThumbnailLoader

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    _write_png(tmp_path / "good.png", 200)
    loader = ThumbnailLoader(tmp_path, size=16)
    failures = []
    loader.failed.connect(lambda rel, message: failures.append(rel))
    try:
        for _ in range(50):  # every repaint of the rows asks again, before and after the results arrive
            loader.get("broken.png")
            loader.get("good.png")
            QCoreApplication.processEvents()
        qtbot.waitUntil(lambda: bool(failures) and loader.get("good.png") is not None, timeout=10000)
        for _ in range(50):
            assert loader.get("broken.png") is None
            assert loader.is_idle()  # nothing was queued again
        assert failures == ["broken.png"] and loader.decodes == 2  # once each

        broken.write_bytes(b"\x89PNG\r\n\x1a\nstill not an image")  # changed (size): tried once more
        for _ in range(20):
            loader.get("broken.png")
            QCoreApplication.processEvents()
        qtbot.waitUntil(lambda: len(failures) == 2 and loader.is_idle(), timeout=10000)
        loader.get("broken.png")
        assert loader.is_idle() and loader.decodes == 3

        stat = broken.stat()  # same size, new modification time: tried again
        os.utime(broken, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        loader.get("broken.png")
        qtbot.waitUntil(lambda: len(failures) == 3, timeout=10000)
        loader.forget_failures()  # a rescan: tried again
        loader.get("broken.png")
        qtbot.waitUntil(lambda: len(failures) == 4, timeout=10000)
        assert loader.decodes == 5

        _write_png(broken, 100)  # fixed: the thumbnail appears
        qtbot.waitUntil(lambda: loader.get("broken.png") is not None, timeout=10000)
        assert loader.decodes == 6 and len(failures) == 4
    finally:
        assert loader.shutdown()
