"""A labelling project: an image folder plus a small SQLite store in ``<folder>/.lrpseg/``.

:class:`Project` puts together the parts that live in their own modules:

* :mod:`lrpseg.core.project_store`: the database (one connection per thread, fsync'ed transactions, locking
  and schema versions, the error types);
* :mod:`lrpseg.core.project_labels`: image-level labels with an undo/redo history;
* :mod:`lrpseg.core.project_cache`: cached predictions and relevance maps.

It adds the image list (the folder scan), settings and per-image threshold overrides. Every change is committed
before the method returns; several lrpseg instances may have one project open at once.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lrpseg.core.images import scan_folder
from lrpseg.core.project_cache import CACHE_LIMIT_BYTES, AnalysisCache
from lrpseg.core.project_labels import LabelEvent, LabelHistory
from lrpseg.core.project_store import (
    SCHEMA_VERSION,
    ProjectError,
    ProjectLockedError,
    ProjectStore,
    ProjectVersionError,
    from_db_path,
    to_db_path,
)

__all__ = [
    "CACHE_LIMIT_BYTES",
    "SCHEMA_VERSION",
    "LabelEvent",
    "Project",
    "ProjectError",
    "ProjectLockedError",
    "ProjectVersionError",
]

STORE_DIR = ".lrpseg"
DB_NAME = "project.sqlite"
CACHE_DIR = "cache"


class Project:
    """An open project; create with :meth:`Project.open`, finish with :meth:`close` (or use ``with``)."""

    def __init__(self, folder: Path, busy_timeout_s: float, cache_limit_bytes: int = CACHE_LIMIT_BYTES) -> None:
        self.folder = folder
        self.store_dir = folder / STORE_DIR
        self.db_path = self.store_dir / DB_NAME
        self.cache_dir = self.store_dir / CACHE_DIR
        self.busy_timeout_s = busy_timeout_s
        self.store = ProjectStore(self.db_path, folder, busy_timeout_s)
        self._images: list[str] = []
        self.scan_problems: list[tuple[Path, str]] = []
        self.history_store = LabelHistory(self.store, lambda: self._images)
        self.cache = AnalysisCache(self.store, folder, self.cache_dir, cache_limit_bytes)

    # ------------------------------------------------------------------------------------------- opening
    @classmethod
    def open(
        cls, folder: str | os.PathLike[str], busy_timeout_s: float = 5.0, cache_limit_bytes: int = CACHE_LIMIT_BYTES
    ) -> Project:
        """Open (creating if needed) the project of an image folder and scan the folder for images.

        Parameters
        ----------
        folder : path-like
            The image folder; the store goes to ``folder/.lrpseg/``.
        busy_timeout_s : float
            How long a write waits for another writer before :class:`ProjectLockedError`.
        cache_limit_bytes : int
            Cap on the cached relevance-map files; the oldest are deleted past it.

        Raises
        ------
        ProjectError
            Folder missing, store not creatable, database unreadable or not an lrpseg database.
        ProjectVersionError
            The database was written by a newer lrpseg.
        ProjectLockedError
            Another program holds the database locked.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise ProjectError(f"cannot open project: {folder} is not a folder")
        project = cls(folder, busy_timeout_s, cache_limit_bytes)
        try:
            project.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ProjectError(f"cannot create {project.cache_dir}: {error.strerror or error}") from None
        try:
            project.store.init_schema()
            project.rescan()
        except BaseException:
            project.close()
            raise
        return project

    def close(self) -> None:
        """Close all connections of this project (from any thread); later calls raise ProjectError."""
        self.store.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- images
    def rescan(self) -> list[str]:
        """Scan the folder again (new and removed files) and return :meth:`images`."""
        found, self.scan_problems = scan_folder(self.folder)
        self._images = [path.relative_to(self.folder).as_posix() for path in found]
        return list(self._images)

    def images(self) -> list[str]:
        """Relative posix paths of the images found by the last scan (on open or :meth:`rescan`), sorted."""
        return list(self._images)

    # ------------------------------------------------------------------------------------------- labels
    def label(self, rel: str) -> str | None:
        """The label of one image, or None."""
        return self.history_store.label(rel)

    def labels(self, include_missing: bool = False) -> dict[str, str]:
        """Labels of the images in the folder (also of vanished files with ``include_missing``), sorted."""
        return self.history_store.labels(include_missing)

    def set_label(self, rel: str, label: str | None) -> bool:
        """Label one image (None removes its label), committed at once and recorded as one undo step.

        ``label`` may be a synonym (see :func:`lrpseg.core.labels.normalise_label`). Returns whether it changed.
        """
        return self.history_store.set_labels({rel: label})

    def set_labels(self, labels: Mapping[str, str | None]) -> bool:
        """Set many labels in one transaction and one undo step (an import); returns whether any changed."""
        return self.history_store.set_labels(labels)

    def set_label_steps(self, steps: Sequence[Mapping[str, str | None]]) -> list[bool]:
        """Several label changes, each its own undo step, in one transaction (one fsync); per step whether it
        changed anything (:class:`~lrpseg.core.label_queue.LabelQueue` writes a backlog of clicks this way)."""
        return self.history_store.set_steps(steps)

    def undo(self) -> str | None:
        """Revert the latest label step that is not undone; returns its (first) image, or None."""
        return self.history_store.step(undo=True)

    def redo(self) -> str | None:
        """Re-apply the earliest undone step; returns its (first) image, or None if nothing to redo."""
        return self.history_store.step(undo=False)

    def history(self, limit: int = 100) -> list[LabelEvent]:
        """The latest label events, newest first (undone ones included, flagged)."""
        return self.history_store.history(limit)

    # ------------------------------------------------------------------------------------------- settings
    def get_setting(self, key: str, default: Any = None) -> Any:
        """A setting's JSON value, or ``default``."""
        rows = self.store.query("SELECT value FROM settings WHERE key=?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_setting(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable setting (None deletes it)."""
        with self.store.write() as conn:
            if value is None:
                conn.execute("DELETE FROM settings WHERE key=?", (key,))
            else:
                conn.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, json.dumps(value)))

    @property
    def model_path(self) -> Path | None:
        """The project's model checkpoint (stored relative to the folder when it lies inside it)."""
        value = self.get_setting("model_path")
        return None if value is None else self.folder / value

    @model_path.setter
    def model_path(self, path: str | os.PathLike[str] | None) -> None:
        if path is not None:
            path = Path(path)
            with contextlib.suppress(ValueError):
                path = path.resolve().relative_to(self.folder.resolve())
            path = path.as_posix()
        self.set_setting("model_path", path)

    # ------------------------------------------------------------------------------------------- thresholds
    def threshold_override(self, rel: str, key: str) -> float | None:
        """The user's threshold for one image and ``key`` (e.g. ``"ours/bmm"``), or None."""
        rows = self.store.query(
            "SELECT value FROM threshold_overrides WHERE rel=? AND key=?", (to_db_path(rel), key)
        )
        return rows[0][0] if rows else None

    def set_threshold_override(self, rel: str, key: str, value: float | None) -> None:
        """Store (or with None remove) a per-image threshold override."""
        stored = to_db_path(rel)
        with self.store.write() as conn:
            if value is None:
                conn.execute("DELETE FROM threshold_overrides WHERE rel=? AND key=?", (stored, key))
            else:
                if not math.isfinite(float(value)):
                    raise ValueError(f"threshold must be finite, got {value!r}")
                conn.execute(
                    "INSERT OR REPLACE INTO threshold_overrides VALUES (?, ?, ?)", (stored, key, float(value))
                )

    def threshold_keys(self) -> list[str]:
        """The keys that have overrides stored, sorted."""
        return [key for (key,) in self.store.query("SELECT DISTINCT key FROM threshold_overrides ORDER BY key")]

    def threshold_overrides(self, key: str) -> dict[str, float]:
        """All overrides for ``key``: image -> threshold."""
        rows = self.store.query("SELECT rel, value FROM threshold_overrides WHERE key=? ORDER BY rel", (key,))
        return {from_db_path(rel): value for rel, value in rows}

    # ------------------------------------------------------------------------------------------- cache
    def store_prediction(self, rel: str, model_id: str, prob: float) -> None:
        """Cache a model's damage probability for one image."""
        self.cache.store_prediction(rel, model_id, prob)

    def predictions(self, model_id: str) -> dict[str, float]:
        """Cached probabilities of a model, for images unchanged since they were stored."""
        return self.cache.predictions(model_id)

    def store_relevance(self, rel: str, model_id: str, rule_set: str, array: np.ndarray) -> None:
        """Cache a relevance (or any) map as an ``.npy`` file, written atomically, and index it."""
        self.cache.store_relevance(rel, model_id, rule_set, array)

    def load_relevance(self, rel: str, model_id: str, rule_set: str) -> np.ndarray | None:
        """A cached map, or None if absent, unreadable, or the image file changed since."""
        return self.cache.load_relevance(rel, model_id, rule_set)

    def cache_bytes(self) -> int:
        """Total size of the cached relevance-map files on disk."""
        return self.cache.cache_bytes()

    def clear_cache(self, model_id: str | None = None) -> None:
        """Forget cached predictions and relevance maps (of one model, or all) and delete their files."""
        self.cache.clear(model_id)
