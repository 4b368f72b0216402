"""Thumbnails for the image list, decoded on a small thread pool into a bounded LRU cache.

Requests are served newest first (the rows on screen now) and only the last ``max_pending`` are kept, so
scrolling fast through 10,000 images never builds a backlog; the cache holds ``capacity`` thumbnails, so
memory does not grow with the folder.

A file that cannot be decoded is remembered with its size and modification time: the list repaints its row
often (hover, selection, label changes), and each repaint asks for the thumbnail again. It is decoded again
only once the file changes, or after :meth:`ThumbnailLoader.forget_failures` (a rescan; opening a folder makes
a new loader).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
from lrpseg.app.workers import lower_thread_priority, track
from lrpseg.core.images import ImageReadError, read_image
from lrpseg.core.preprocess import to_float_rgb
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage

THUMB_SIZE = 48

FileSignature = tuple[int, int] | None


def file_signature(path: Path) -> FileSignature:
    """``(size, mtime_ns)`` of ``path``, or ``None`` when it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def display_rgb8(image: np.ndarray) -> np.ndarray:
    """An image as contiguous (H, W, 3) uint8 RGB for display (gray replicated, 16 bit scaled)."""
    return np.ascontiguousarray(np.round(to_float_rgb(image) * 255.0).astype(np.uint8))


def rgb8_to_qimage(rgb: np.ndarray) -> QImage:
    """Copy an (H, W, 3) uint8 array into a QImage that owns its memory."""
    height, width = rgb.shape[:2]
    return QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def make_thumbnail(path: Path, size: int = THUMB_SIZE) -> QImage:
    """Decode ``path`` and shrink it to fit ``size`` x ``size`` (raises :class:`ImageReadError`)."""
    rgb = display_rgb8(read_image(path))
    height, width = rgb.shape[:2]
    scale = size / max(height, width)
    if scale < 1:
        rgb = cv2.resize(
            rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
    return rgb8_to_qimage(np.ascontiguousarray(rgb))


class _LoaderSignals(QObject):
    loaded = Signal(object, QImage)  # paths as object: Signal(str) drops surrogate escapes
    failed = Signal(object, object, object)  # rel, message, file signature taken before decoding


class _ThumbnailTask(QRunnable):
    def __init__(self, loader: ThumbnailLoader) -> None:
        super().__init__()
        self._loader = loader

    def run(self) -> None:
        lower_thread_priority()
        rel = self._loader._next_request()
        if rel is None:
            return
        path = self._loader.root / rel
        signature = file_signature(path)
        try:
            image = make_thumbnail(path, self._loader.size)
        except ImageReadError as error:
            self._loader.signals.failed.emit(rel, str(error), signature)
        except Exception as error:  # a broken file must never take the list down
            self._loader.signals.failed.emit(rel, f"{rel}: {type(error).__name__}: {error}", signature)
        else:
            self._loader.signals.loaded.emit(rel, image)


class ThumbnailLoader(QObject):
    """Decode thumbnails on a thread pool, newest request first, into a bounded LRU cache.

    Parameters
    ----------
    root
        Folder the relative paths are resolved against.
    capacity
        Thumbnails kept in memory.
    max_pending
        Requests kept waiting; older ones (rows scrolled past) are dropped.
    """

    loaded = Signal(object)
    failed = Signal(object, object)

    def __init__(
        self,
        root: Path,
        capacity: int = 1500,
        max_pending: int = 256,
        threads: int = 2,
        size: int = THUMB_SIZE,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.root = Path(root)
        self.size = size
        self.capacity = capacity
        self._cache: OrderedDict[str, QImage] = OrderedDict()
        self._pending: deque[str] = deque(maxlen=max_pending)
        self._queued: set[str] = set()  # waiting or being decoded, until the GUI thread has the result
        self._failed: dict[str, FileSignature] = {}
        self.decodes = 0  # decodes started (tests and benchmarks count them)
        self._lock = threading.Lock()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._pool.setObjectName("thumbnails")
        track(self._pool)
        self._closed = False
        self.signals = _LoaderSignals()
        self.signals.loaded.connect(self._on_loaded)
        self.signals.failed.connect(self._on_failed)

    def get(self, rel: str) -> QImage | None:
        """The cached thumbnail of ``rel``, or ``None`` after queueing it for loading."""
        image = self._cache.get(rel)
        if image is not None:
            self._cache.move_to_end(rel)
            return image
        self.request(rel)
        return None

    def request(self, rel: str) -> None:
        """Queue ``rel`` for decoding unless it is cached, already queued, or failed and unchanged since."""
        if self._closed or rel in self._cache or self.failed_unchanged(rel):
            return
        with self._lock:
            if rel in self._queued:
                return
            if len(self._pending) == self._pending.maxlen:
                self._queued.discard(self._pending[0])
            self._pending.append(rel)
            self._queued.add(rel)
        self._pool.start(_ThumbnailTask(self))

    def _next_request(self) -> str | None:
        with self._lock:
            if self._closed or not self._pending:
                return None
            self.decodes += 1
            return self._pending.pop()  # stays in _queued until the result reaches the GUI thread

    def failed_unchanged(self, rel: str) -> bool:
        """Whether ``rel`` failed to decode and has the same size and modification time as then."""
        if rel not in self._failed:
            return False
        if file_signature(self.root / rel) == self._failed[rel]:
            return True
        del self._failed[rel]
        return False

    def forget_failures(self, rels: Iterable[str] | None = None) -> None:
        """Try ``rels`` (default: every file that failed) again on their next request."""
        if rels is None:
            self._failed.clear()
        for rel in rels or ():
            self._failed.pop(rel, None)

    def is_idle(self) -> bool:
        """Whether every requested thumbnail has been decoded and its result delivered to the GUI thread."""
        with self._lock:
            return not self._queued

    def _done(self, rel: str) -> None:
        with self._lock:
            self._queued.discard(rel)

    def _on_loaded(self, rel: str, image: QImage) -> None:
        self._done(rel)
        if self._closed:
            return
        self._failed.pop(rel, None)
        self._cache[rel] = image
        self._cache.move_to_end(rel)
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        self.loaded.emit(rel)

    def _on_failed(self, rel: str, message: str, signature: FileSignature) -> None:
        self._done(rel)
        self._failed[rel] = signature
        if not self._closed:
            self.failed.emit(rel, message)

    def cached_count(self) -> int:
        """Thumbnails held in memory."""
        return len(self._cache)

    def shutdown(self, timeout_ms: int = 10000) -> bool:
        """Drop pending requests and wait for the pool's threads; return whether they finished."""
        self._closed = True
        with self._lock:
            self._pending.clear()
            self._queued.clear()
        return self._pool.waitForDone(timeout_ms)
