"""The analysis cache of a project: predicted probabilities and relevance maps, per image and model.

Maps are ``.npy`` files in ``.lrpseg/cache/``, written atomically and indexed in the project's SQLite store.
Cached predictions and maps remember the image file's size and modification time and are ignored once the file
changes. The map files are capped at ``limit_bytes`` in all (default :data:`CACHE_LIMIT_BYTES`): past it, the
maps stored longest ago are deleted first, down to 90 % of the cap.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from pathlib import Path

import numpy as np
from lrpseg.core.atomic import atomic_save_npy
from lrpseg.core.project_store import ProjectStore, from_db_path, to_db_path

__all__ = ["CACHE_LIMIT_BYTES", "AnalysisCache", "file_signature"]

CACHE_LIMIT_BYTES = 2 << 30
"""Default cap on the relevance-map files of one project (2 GiB: about 10,000 maps of 224²)."""


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def file_signature(path: Path) -> str | None:
    """``"size:mtime_ns"`` of a file (None if it cannot be read): cached results of a changed file are stale."""
    try:
        st = path.stat()
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}"


class AnalysisCache:
    """Cached predictions and relevance maps of one project.

    Parameters
    ----------
    store : ProjectStore
        The project's database (the index).
    folder : Path
        The image folder (for the file signatures).
    cache_dir : Path
        Where the map files go.
    limit_bytes : int
        Cap on the map files; the oldest are deleted past it.
    """

    def __init__(self, store: ProjectStore, folder: Path, cache_dir: Path, limit_bytes: int) -> None:
        self._store = store
        self.folder = folder
        self.cache_dir = cache_dir
        self.limit_bytes = limit_bytes
        self._lock = threading.Lock()
        self._bytes: int | None = None  # counted on the first store, then kept up to date

    def _sig(self, rel: str) -> str | None:
        return file_signature(self.folder / rel)

    def store_prediction(self, rel: str, model_id: str, prob: float) -> None:
        """Cache a model's damage probability for one image."""
        stored = to_db_path(rel)
        with self._store.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?)",
                (stored, model_id, float(prob), self._sig(rel), time.time()),
            )

    def predictions(self, model_id: str) -> dict[str, float]:
        """Cached probabilities of a model, for images unchanged since they were stored."""
        rows = self._store.query(
            "SELECT rel, prob, file_sig FROM predictions WHERE model_id=? ORDER BY rel", (model_id,)
        )
        found = ((from_db_path(rel), prob, sig) for rel, prob, sig in rows)
        return {rel: prob for rel, prob, sig in found if sig is None or sig == self._sig(rel)}

    def store_relevance(self, rel: str, model_id: str, rule_set: str, array: np.ndarray) -> None:
        """Cache a relevance (or any) map as an ``.npy`` file, written atomically, and index it."""
        stored = to_db_path(rel)
        digest = hashlib.sha256(f"{stored}\0{model_id}\0{rule_set}".encode()).hexdigest()[:32]
        name = f"{digest}.npy"
        atomic_save_npy(self.cache_dir / name, array)
        with self._store.write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO relevance VALUES (?, ?, ?, ?, ?, ?)",
                (stored, model_id, rule_set, name, self._sig(rel), time.time()),
            )
        with self._lock:
            if self._bytes is None:
                self._bytes = self.cache_bytes()
            else:
                self._bytes += _file_size(self.cache_dir / name)
            if self._bytes > self.limit_bytes:
                self._bytes = self._evict_oldest(int(0.9 * self.limit_bytes), keep=name)

    def cache_bytes(self) -> int:
        """Total size of the cached relevance-map files on disk."""
        with os.scandir(self.cache_dir) as entries:
            return sum(_file_size(Path(e.path)) for e in entries if e.name.endswith(".npy"))

    def _evict_oldest(self, target_bytes: int, keep: str) -> int:
        """Delete the maps stored longest ago until the files total at most ``target_bytes``; the new total."""
        total = self.cache_bytes()
        doomed = []
        for (name,) in self._store.query("SELECT file FROM relevance ORDER BY at"):
            if total <= target_bytes:
                break
            if name != keep:
                doomed.append(name)
                total -= _file_size(self.cache_dir / name)
        with self._store.write() as conn:
            conn.executemany("DELETE FROM relevance WHERE file=?", [(name,) for name in doomed])
        for name in doomed:
            with contextlib.suppress(FileNotFoundError):
                (self.cache_dir / name).unlink()
        return total

    def load_relevance(self, rel: str, model_id: str, rule_set: str) -> np.ndarray | None:
        """A cached map, or None if absent, unreadable, or the image file changed since."""
        rows = self._store.query(
            "SELECT file, file_sig FROM relevance WHERE rel=? AND model_id=? AND rule_set=?",
            (to_db_path(rel), model_id, rule_set),
        )
        if not rows or (rows[0][1] is not None and rows[0][1] != self._sig(rel)):
            return None
        try:
            return np.load(self.cache_dir / rows[0][0], allow_pickle=False)
        except (OSError, ValueError):
            return None

    def clear(self, model_id: str | None = None) -> None:
        """Forget cached predictions and relevance maps (of one model, or all) and delete their files."""
        where, params = ("WHERE model_id=?", (model_id,)) if model_id is not None else ("", ())
        with self._store.write() as conn:
            files = [row[0] for row in conn.execute(f"SELECT file FROM relevance {where}", params)]
            conn.execute(f"DELETE FROM relevance {where}", params)
            conn.execute(f"DELETE FROM predictions {where}", params)
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                (self.cache_dir / name).unlink()
        with self._lock:
            self._bytes = None
