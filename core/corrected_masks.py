"""Masks corrected by hand, stored in the project: a lossless PNG per image and a database row beside it.

A corrected mask is the user's work, so nothing automatic (retraining, a new model, a new student, an export)
ever writes or deletes one; only :meth:`CorrectedMasks.save` and :meth:`CorrectedMasks.delete`, called for a
user's action, do.

Files and rows. Each save writes a NEW file ``.lrpseg/masks/<image hash>-<random>.png`` atomically (temporary
file, fsync, rename: :mod:`core.atomic`), then points the image's row at it in one committed transaction, and
only then deletes the file the row pointed to before. A crash or SIGKILL at any moment therefore leaves the row
on the previous complete file or on the new complete file, never on a torn one. A file written but never
committed (a kill between the two steps) is an orphan: :meth:`CorrectedMasks.remove_orphans` deletes such
files once they are older than :data:`ORPHAN_AGE_S` (younger ones may belong to another lrpseg instance that is
saving right now).

The row holds the author, the time of the first and of the latest save, the model, rule set, segmenter and
threshold of the automatic mask the correction started from (None when it started empty), the mask's size and
the SHA-256 of the PNG, which :meth:`CorrectedMasks.load` checks so a damaged file is reported, not used.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import math
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from lrpseg.core.atomic import atomic_write_bytes
from lrpseg.core.project import Project
from lrpseg.core.project_store import from_db_path, to_db_path

__all__ = ["MASKS_DIR", "CorrectedMaskError", "CorrectedMaskInfo", "CorrectedMasks", "default_author"]

MASKS_DIR = "masks"
ORPHAN_AGE_S = 600.0

_TABLE = """
CREATE TABLE IF NOT EXISTS corrected_masks (
    rel TEXT PRIMARY KEY, file TEXT NOT NULL, sha256 TEXT NOT NULL, height INTEGER NOT NULL,
    width INTEGER NOT NULL, pixels INTEGER NOT NULL, author TEXT NOT NULL, created_at REAL NOT NULL,
    saved_at REAL NOT NULL, model_id TEXT, rule_set TEXT, segmenter TEXT, threshold REAL)
"""
_COLUMNS = "rel, file, sha256, height, width, pixels, author, created_at, saved_at, model_id, rule_set, " \
           "segmenter, threshold"


class CorrectedMaskError(Exception):
    """A stored corrected mask cannot be read (missing, damaged or of the wrong size); the message says which."""


@dataclass(frozen=True)
class CorrectedMaskInfo:
    """One image's corrected mask as the database describes it."""

    rel: str
    file: str
    sha256: str
    height: int
    width: int
    pixels: int
    author: str
    created_at: float
    saved_at: float
    model_id: str | None
    rule_set: str | None
    segmenter: str | None
    threshold: float | None

    def provenance(self) -> dict:
        """What an export report says about this mask."""
        return {
            "source": "corrected", "author": self.author, "created_at": self.created_at,
            "saved_at": self.saved_at, "started_from_model": self.model_id, "rule_set": self.rule_set,
            "segmenter": self.segmenter, "started_from_threshold": self.threshold, "mask_sha256": self.sha256,
        }


def default_author() -> str:
    """The login name of the user running lrpseg (``"unknown"`` where the system cannot say)."""
    try:
        return getpass.getuser() or "unknown"
    except Exception:  # getpass raises OSError or KeyError when no user name is configured
        return "unknown"


def _encode(mask: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", np.where(mask, 255, 0).astype(np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("OpenCV could not encode the mask as PNG")
    return buffer.tobytes()


class CorrectedMasks:
    """The corrected masks of one open :class:`core.project.Project` (any thread; each uses its own connection).

    Parameters
    ----------
    project : Project
        The open project; the table is created in its database on first use, the files go to
        ``<folder>/.lrpseg/masks/``.
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        self.folder = project.store_dir / MASKS_DIR
        self._ready = False

    def _ensure(self) -> None:
        if self._ready:
            return
        exists = self.project.store.query("SELECT 1 FROM sqlite_master WHERE type='table' AND name='corrected_masks'")
        if not exists:
            with self.project.store.write() as conn:
                conn.execute(_TABLE)
        self._ready = True

    # ------------------------------------------------------------------ reading
    def info(self, rel: str) -> CorrectedMaskInfo | None:
        """The row of ``rel``'s corrected mask, or None when it has none."""
        self._ensure()
        rows = self.project.store.query(f"SELECT {_COLUMNS} FROM corrected_masks WHERE rel=?", (to_db_path(rel),))
        return self._info(rows[0]) if rows else None

    def infos(self) -> dict[str, CorrectedMaskInfo]:
        """Every corrected mask's row, by image (also of images no longer in the folder), sorted."""
        self._ensure()
        rows = self.project.store.query(f"SELECT {_COLUMNS} FROM corrected_masks ORDER BY rel")
        return {info.rel: info for info in map(self._info, rows)}

    def rels(self) -> set[str]:
        """The images that have a corrected mask."""
        return set(self.infos())

    @staticmethod
    def _info(row: tuple) -> CorrectedMaskInfo:
        return CorrectedMaskInfo(from_db_path(row[0]), *row[1:])

    def load(self, rel: str, shape: tuple[int, int] | None = None) -> np.ndarray | None:
        """``rel``'s corrected mask as a boolean array, or None when it has none.

        Parameters
        ----------
        shape : (height, width), optional
            The image's size; a mask of another size is refused (the image file was replaced).

        Raises
        ------
        CorrectedMaskError
            The file is missing, does not match its checksum, or has the wrong size.
        """
        info = self.info(rel)
        if info is None:
            return None
        path = self.folder / info.file
        try:
            data = path.read_bytes()
        except OSError as error:
            raise CorrectedMaskError(f"corrected mask of {rel} ({path}) cannot be read: {error}") from None
        if hashlib.sha256(data).hexdigest() != info.sha256:
            raise CorrectedMaskError(f"corrected mask of {rel} ({path}) is damaged: its checksum does not match")
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if decoded is None or decoded.shape != (info.height, info.width):
            raise CorrectedMaskError(f"corrected mask of {rel} ({path}) is not a {info.width}×{info.height} mask")
        if shape is not None and tuple(shape[:2]) != decoded.shape:
            raise CorrectedMaskError(
                f"corrected mask of {rel} is {info.width}×{info.height} but the image is now "
                f"{shape[1]}×{shape[0]}: the image file was replaced; correct it again or remove the correction"
            )
        return decoded > 0

    # ------------------------------------------------------------------ writing (user actions only)
    def save(
        self,
        rel: str,
        mask: np.ndarray,
        *,
        author: str | None = None,
        model_id: str | None = None,
        rule_set: str | None = None,
        segmenter: str | None = None,
        threshold: float | None = None,
    ) -> CorrectedMaskInfo:
        """Store ``mask`` as ``rel``'s corrected mask, durably, before returning (see the module docstring).

        ``model_id``, ``rule_set``, ``segmenter`` and ``threshold`` describe the automatic mask the correction
        started from; a later save of the same image keeps the first save's time (``created_at``).
        """
        self._ensure()
        stored = to_db_path(rel)
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2 or mask.size == 0:
            raise ValueError(f"a corrected mask must be a non-empty 2-D array, got shape {mask.shape}")
        if threshold is not None and not math.isfinite(float(threshold)):
            raise ValueError(f"threshold must be finite, got {threshold!r}")
        data = _encode(mask)
        digest = hashlib.sha256(stored.encode("utf-8")).hexdigest()[:24]
        name = f"{digest}-{secrets.token_hex(6)}.png"
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.folder / name, data, overwrite=False)
        now = time.time()
        try:
            with self.project.store.write() as conn:
                row = conn.execute("SELECT file, created_at FROM corrected_masks WHERE rel=?", (stored,)).fetchone()
                old_file, created = (row[0], row[1]) if row else (None, now)
                conn.execute(
                    f"INSERT OR REPLACE INTO corrected_masks ({_COLUMNS}) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (stored, name, hashlib.sha256(data).hexdigest(), mask.shape[0], mask.shape[1],
                     int(mask.sum()), author or default_author(), created, now, model_id, rule_set, segmenter,
                     None if threshold is None else float(threshold)),
                )
        except BaseException:
            with contextlib.suppress(OSError):
                (self.folder / name).unlink()
            raise
        if old_file and old_file != name:
            with contextlib.suppress(OSError):
                (self.folder / old_file).unlink()
        return self.info(rel)

    def delete(self, rel: str) -> bool:
        """Remove ``rel``'s corrected mask (row, then file); return whether it had one."""
        self._ensure()
        stored = to_db_path(rel)
        with self.project.store.write() as conn:
            row = conn.execute("SELECT file FROM corrected_masks WHERE rel=?", (stored,)).fetchone()
            conn.execute("DELETE FROM corrected_masks WHERE rel=?", (stored,))
        if row is None:
            return False
        with contextlib.suppress(OSError):
            (self.folder / row[0]).unlink()
        return True

    def remove_orphans(self, min_age_s: float = ORPHAN_AGE_S) -> list[str]:
        """Delete mask files (and temporary files) no row points to, older than ``min_age_s``; return names."""
        self._ensure()
        if not self.folder.is_dir():
            return []
        used = {row[0] for row in self.project.store.query("SELECT file FROM corrected_masks")}
        cutoff = time.time() - min_age_s
        removed = []
        with os.scandir(self.folder) as entries:
            for entry in entries:
                if entry.name in used or not entry.is_file():
                    continue
                with contextlib.suppress(OSError):
                    if entry.stat().st_mtime < cutoff:
                        Path(entry.path).unlink()
                        removed.append(entry.name)
        return removed
