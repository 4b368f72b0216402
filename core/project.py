"""A labelling project: an image folder plus a small SQLite store in ``<folder>/.lrpseg/``.

The store keeps image-level labels with an undo/redo history, settings, per-image threshold overrides and a
cache of predictions and relevance maps (arrays as ``.npy`` files in ``.lrpseg/cache/``, written atomically).

Durability. Every change is one transaction, committed before the method returns. The database runs in WAL
mode with ``synchronous=FULL``: each commit is fsync'ed, so a label is on disk once :meth:`Project.set_label`
returns, even if the process is killed or the machine loses power right after (NORMAL could lose the last
commits on power loss; a commit costs a few milliseconds either way, far below a click).

Concurrency. Each thread gets its own connection (opened on first use), so the GUI thread can label while
a background worker stores predictions and relevance maps; SQLite serialises the writers. A writer that finds
the database locked (for instance by a second lrpseg instance in the middle of a write) waits up to
``busy_timeout_s`` and then raises :class:`ProjectLockedError`. Several instances may have a project open at
once; they share one label history.

Cached predictions and relevance maps remember the image file's size and modification time and are ignored
once the file changes. The map files are capped at ``cache_limit_bytes`` in all (default
:data:`CACHE_LIMIT_BYTES`): past it, the maps stored longest ago are deleted first, down to 90 % of the cap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import numpy as np
from lrpseg.core.atomic import atomic_save_npy
from lrpseg.core.images import scan_folder
from lrpseg.core.labels import normalise_label

__all__ = [
    "SCHEMA_VERSION",
    "LabelEvent",
    "Project",
    "ProjectError",
    "ProjectLockedError",
    "ProjectVersionError",
]

SCHEMA_VERSION = 1
STORE_DIR = ".lrpseg"
DB_NAME = "project.sqlite"
CACHE_DIR = "cache"
#: Undo steps kept; older ones are forgotten.
HISTORY_LIMIT = 10_000
CACHE_LIMIT_BYTES = 2 << 30
"""Default cap on the relevance-map files of one project (2 GiB: about 10,000 maps of 224²)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    rel TEXT PRIMARY KEY, label TEXT NOT NULL CHECK (label IN ('damaged', 'undamaged')),
    updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS label_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, step INTEGER NOT NULL, rel TEXT NOT NULL,
    old_label TEXT, new_label TEXT, at REAL NOT NULL, undone INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS label_events_step ON label_events (step);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS threshold_overrides (
    rel TEXT NOT NULL, key TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (rel, key));
CREATE TABLE IF NOT EXISTS predictions (
    rel TEXT NOT NULL, model_id TEXT NOT NULL, prob REAL NOT NULL, file_sig TEXT, at REAL NOT NULL,
    PRIMARY KEY (rel, model_id));
CREATE TABLE IF NOT EXISTS relevance (
    rel TEXT NOT NULL, model_id TEXT NOT NULL, rule_set TEXT NOT NULL, file TEXT NOT NULL, file_sig TEXT,
    at REAL NOT NULL, PRIMARY KEY (rel, model_id, rule_set));
"""


class ProjectError(Exception):
    """A project cannot be opened or used; the message says which and why."""


class ProjectLockedError(ProjectError):
    """Another program kept the project's database locked for longer than the busy timeout."""


class ProjectVersionError(ProjectError):
    """The project was written by a newer lrpseg with a database schema this version does not know."""


class LabelEvent(NamedTuple):
    """One label change in the history; ``step`` groups changes undone together."""

    step: int
    rel: str
    old_label: str | None
    new_label: str | None
    at: float
    undone: bool


def _db_rel(rel: str) -> str:
    """Check an image path and return it as stored in the database.

    File names that are not valid UTF-8 reach Python as strings with surrogate escapes, which SQLite text
    cannot hold; their undecodable bytes are stored as ``\\xHH`` escapes instead (unambiguous, because image
    paths never contain a backslash). :func:`_from_db` reverses this.
    """
    path = PurePosixPath(rel) if isinstance(rel, str) else None
    if path is None or not rel or "\\" in rel or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"not a relative posix image path: {rel!r}")
    if path.as_posix() != rel:
        raise ValueError(f"not a relative posix image path: {rel!r}")
    try:
        rel.encode("utf-8")
        return rel
    except UnicodeEncodeError:
        pass
    try:
        raw = rel.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise ValueError(f"image path {rel!r} cannot be stored (it is not a file name)") from None
    return raw.decode("utf-8", "backslashreplace")


def _from_db(stored: str) -> str:
    """The image path of a database key written by :func:`_db_rel`."""
    if "\\" not in stored:
        return stored
    raw = re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m[1], 16)]), stored.encode("utf-8"))
    return raw.decode("utf-8", "surrogateescape")


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class Project:
    """An open project; create with :meth:`Project.open`, finish with :meth:`close` (or use ``with``)."""

    def __init__(self, folder: Path, busy_timeout_s: float, cache_limit_bytes: int = CACHE_LIMIT_BYTES) -> None:
        self.folder = folder
        self.cache_limit_bytes = cache_limit_bytes
        self.store_dir = folder / STORE_DIR
        self.db_path = self.store_dir / DB_NAME
        self.cache_dir = self.store_dir / CACHE_DIR
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._images: list[str] = []
        self._cache_bytes: int | None = None  # counted on the first store, then kept up to date
        self.scan_problems: list[tuple[Path, str]] = []

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
            project._init_schema()
            project.rescan()
        except BaseException:
            project.close()
            raise
        return project

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.db_path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL, retrying until the busy timeout: SQLite does not wait for the exclusive lock this
        needs, so two programs creating one project at the same moment would otherwise fail at once."""
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL").fetchall()
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise ProjectError(f"project {self.folder} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self._translate():
                conn = self._connect()
            with self._lock:
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as error:
            code = getattr(error, "sqlite_errorcode", 0) & 0xFF
            if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(error):
                raise ProjectLockedError(
                    f"project {self.folder} is locked by another program (another lrpseg window or "
                    f"command?); waited {self.busy_timeout_s:g} s. Close it and try again."
                ) from None
            raise ProjectError(f"project database {self.db_path}: {error}") from None
        except sqlite3.DatabaseError as error:
            raise ProjectError(
                f"{self.db_path} is not a readable lrpseg project database ({error})"
            ) from None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed (and fsync'ed) on leaving the block."""
        conn = self._conn()
        with self._translate():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        conn = self._conn()
        with self._translate():
            return conn.execute(sql, params).fetchall()

    def _schema_version(self, conn: sqlite3.Connection) -> int | None:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
            return None
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return None if row is None else int(row[0])

    def _init_schema(self) -> None:
        with self._translate():
            current = self._schema_version(self._conn())
        if current == SCHEMA_VERSION:
            return  # nothing to write: opening works even while another program is writing
        with self._write() as conn:
            current = self._schema_version(conn)  # again: another process may have created it meanwhile
            if current is not None and current > SCHEMA_VERSION:
                raise ProjectVersionError(
                    f"project {self.folder} was written by a newer lrpseg (database schema {current}; "
                    f"this version reads up to {SCHEMA_VERSION}). Update lrpseg to open it."
                )
            # Not executescript(): it would commit the open transaction first.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        """Close all connections of this project (from any thread); later calls raise ProjectError."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

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

    def _file_sig(self, rel: str) -> str | None:
        try:
            st = (self.folder / rel).stat()
        except OSError:
            return None
        return f"{st.st_size}:{st.st_mtime_ns}"

    # ------------------------------------------------------------------------------------------- labels
    def label(self, rel: str) -> str | None:
        """The label of one image, or None."""
        rows = self._query("SELECT label FROM labels WHERE rel=?", (_db_rel(rel),))
        return rows[0][0] if rows else None

    def labels(self, include_missing: bool = False) -> dict[str, str]:
        """Labels of the images in the folder (also of vanished files with ``include_missing``), sorted."""
        stored = self._query("SELECT rel, label FROM labels ORDER BY rel")
        rows = [(_from_db(rel), label) for rel, label in stored]
        if include_missing:
            return dict(rows)
        present = set(self._images)
        return {rel: label for rel, label in rows if rel in present}

    def set_label(self, rel: str, label: str | None) -> bool:
        """Label one image (None removes its label), committed at once and recorded as one undo step.

        ``label`` may be a synonym (see :func:`core.labels.normalise_label`). Returns whether it changed.
        """
        return self.set_labels({rel: label})

    def set_labels(self, labels: Mapping[str, str | None]) -> bool:
        """Set many labels in one transaction and one undo step (an import); returns whether any changed."""
        clean = {
            _db_rel(rel): None if value is None else normalise_label(value)
            for rel, value in labels.items()
        }
        now = time.time()
        with self._write() as conn:
            changes = []
            for rel, new in clean.items():
                row = conn.execute("SELECT label FROM labels WHERE rel=?", (rel,)).fetchone()
                old = row[0] if row else None
                if old != new:
                    changes.append((rel, old, new))
            if not changes:
                return False
            conn.execute("DELETE FROM label_events WHERE undone=1")  # a new change drops the redo tail
            step = conn.execute("SELECT COALESCE(MAX(step), 0) + 1 FROM label_events").fetchone()[0]
            conn.executemany(
                "INSERT INTO label_events (step, rel, old_label, new_label, at) VALUES (?, ?, ?, ?, ?)",
                [(step, rel, old, new, now) for rel, old, new in changes],
            )
            for rel, _, new in changes:
                self._apply(conn, rel, new, now)
            conn.execute("DELETE FROM label_events WHERE step <= ?", (step - HISTORY_LIMIT,))
        return True

    @staticmethod
    def _apply(conn: sqlite3.Connection, rel: str, label: str | None, now: float) -> None:
        if label is None:
            conn.execute("DELETE FROM labels WHERE rel=?", (rel,))
        else:
            conn.execute(
                "INSERT OR REPLACE INTO labels (rel, label, updated_at) VALUES (?, ?, ?)", (rel, label, now)
            )

    def _step(self, undo: bool) -> str | None:
        now = time.time()
        with self._write() as conn:
            if undo:
                row = conn.execute("SELECT MAX(step) FROM label_events WHERE undone=0").fetchone()
            else:
                row = conn.execute("SELECT MIN(step) FROM label_events WHERE undone=1").fetchone()
            if row[0] is None:
                return None
            events = conn.execute(
                "SELECT rel, old_label, new_label FROM label_events WHERE step=? ORDER BY id", (row[0],)
            ).fetchall()
            for rel, old, new in reversed(events) if undo else events:
                self._apply(conn, rel, old if undo else new, now)
            conn.execute("UPDATE label_events SET undone=? WHERE step=?", (int(undo), row[0]))
        return _from_db(events[0][0])

    def undo(self) -> str | None:
        """Revert the latest label step that is not undone; returns its (first) image, or None."""
        return self._step(undo=True)

    def redo(self) -> str | None:
        """Re-apply the earliest undone step; returns its (first) image, or None if nothing to redo."""
        return self._step(undo=False)

    def history(self, limit: int = 100) -> list[LabelEvent]:
        """The latest label events, newest first (undone ones included, flagged)."""
        rows = self._query(
            "SELECT step, rel, old_label, new_label, at, undone FROM label_events ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [LabelEvent(s, _from_db(r), o, n, a, bool(u)) for s, r, o, n, a, u in rows]

    # ------------------------------------------------------------------------------------------- settings
    def get_setting(self, key: str, default: Any = None) -> Any:
        """A setting's JSON value, or ``default``."""
        rows = self._query("SELECT value FROM settings WHERE key=?", (key,))
        return json.loads(rows[0][0]) if rows else default

    def set_setting(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable setting (None deletes it)."""
        with self._write() as conn:
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
        rows = self._query(
            "SELECT value FROM threshold_overrides WHERE rel=? AND key=?", (_db_rel(rel), key)
        )
        return rows[0][0] if rows else None

    def set_threshold_override(self, rel: str, key: str, value: float | None) -> None:
        """Store (or with None remove) a per-image threshold override."""
        stored = _db_rel(rel)
        with self._write() as conn:
            if value is None:
                conn.execute("DELETE FROM threshold_overrides WHERE rel=? AND key=?", (stored, key))
            else:
                if not math.isfinite(float(value)):
                    raise ValueError(f"threshold must be finite, got {value!r}")
                conn.execute(
                    "INSERT OR REPLACE INTO threshold_overrides VALUES (?, ?, ?)", (stored, key, float(value))
                )

    def threshold_overrides(self, key: str) -> dict[str, float]:
        """All overrides for ``key``: image -> threshold."""
        rows = self._query("SELECT rel, value FROM threshold_overrides WHERE key=? ORDER BY rel", (key,))
        return {_from_db(rel): value for rel, value in rows}

    # ------------------------------------------------------------------------------------------- cache
    def store_prediction(self, rel: str, model_id: str, prob: float) -> None:
        """Cache a model's damage probability for one image."""
        stored = _db_rel(rel)
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?)",
                (stored, model_id, float(prob), self._file_sig(rel), time.time()),
            )

    def predictions(self, model_id: str) -> dict[str, float]:
        """Cached probabilities of a model, for images unchanged since they were stored."""
        rows = self._query(
            "SELECT rel, prob, file_sig FROM predictions WHERE model_id=? ORDER BY rel", (model_id,)
        )
        found = ((_from_db(rel), prob, sig) for rel, prob, sig in rows)
        return {rel: prob for rel, prob, sig in found if sig is None or sig == self._file_sig(rel)}

    def store_relevance(self, rel: str, model_id: str, rule_set: str, array: np.ndarray) -> None:
        """Cache a relevance (or any) map as an ``.npy`` file, written atomically, and index it."""
        stored = _db_rel(rel)
        digest = hashlib.sha256(f"{stored}\0{model_id}\0{rule_set}".encode()).hexdigest()[:32]
        name = f"{digest}.npy"
        atomic_save_npy(self.cache_dir / name, array)
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO relevance VALUES (?, ?, ?, ?, ?, ?)",
                (stored, model_id, rule_set, name, self._file_sig(rel), time.time()),
            )
        with self._lock:
            if self._cache_bytes is None:
                self._cache_bytes = self.cache_bytes()
            else:
                self._cache_bytes += _file_size(self.cache_dir / name)
            if self._cache_bytes > self.cache_limit_bytes:
                self._cache_bytes = self._evict_oldest(int(0.9 * self.cache_limit_bytes), keep=name)

    def cache_bytes(self) -> int:
        """Total size of the cached relevance-map files on disk."""
        with os.scandir(self.cache_dir) as entries:
            return sum(_file_size(Path(e.path)) for e in entries if e.name.endswith(".npy"))

    def _evict_oldest(self, target_bytes: int, keep: str) -> int:
        """Delete the maps stored longest ago until the files total at most ``target_bytes``; the new total."""
        total = self.cache_bytes()
        doomed = []
        for (name,) in self._query("SELECT file FROM relevance ORDER BY at"):
            if total <= target_bytes:
                break
            if name != keep:
                doomed.append(name)
                total -= _file_size(self.cache_dir / name)
        with self._write() as conn:
            conn.executemany("DELETE FROM relevance WHERE file=?", [(name,) for name in doomed])
        for name in doomed:
            with contextlib.suppress(FileNotFoundError):
                (self.cache_dir / name).unlink()
        return total

    def load_relevance(self, rel: str, model_id: str, rule_set: str) -> np.ndarray | None:
        """A cached map, or None if absent, unreadable, or the image file changed since."""
        rows = self._query(
            "SELECT file, file_sig FROM relevance WHERE rel=? AND model_id=? AND rule_set=?",
            (_db_rel(rel), model_id, rule_set),
        )
        if not rows or (rows[0][1] is not None and rows[0][1] != self._file_sig(rel)):
            return None
        try:
            return np.load(self.cache_dir / rows[0][0], allow_pickle=False)
        except (OSError, ValueError):
            return None

    def clear_cache(self, model_id: str | None = None) -> None:
        """Forget cached predictions and relevance maps (of one model, or all) and delete their files."""
        where, params = ("WHERE model_id=?", (model_id,)) if model_id is not None else ("", ())
        with self._write() as conn:
            files = [row[0] for row in conn.execute(f"SELECT file FROM relevance {where}", params)]
            conn.execute(f"DELETE FROM relevance {where}", params)
            conn.execute(f"DELETE FROM predictions {where}", params)
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                (self.cache_dir / name).unlink()
        with self._lock:
            self._cache_bytes = None
