"""The SQLite store under a project: one connection per thread, write transactions, schema and error messages.

Durability. Every change is one transaction, committed before the writing method returns. The database runs in
WAL mode with ``synchronous=FULL``: each commit is fsync'ed, so a label is on disk once it is set, even if the
process is killed or the machine loses power right after (NORMAL could lose the last commits on power loss). A
commit costs the disk's fsync: ~7 ms on a local disk, hundreds of milliseconds on a slow network share
(``benchmarks/label_commit.py``), so the GUI commits labels on a writer thread (:mod:`lrpseg.core.label_queue`).

Concurrency. Each thread gets its own connection (opened on first use), so the GUI thread can label while a
background worker stores predictions and relevance maps; SQLite serialises the writers. A writer that finds the
database locked (for instance by a second lrpseg instance in the middle of a write) waits up to
``busy_timeout_s`` and then raises :class:`ProjectLockedError`.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

__all__ = [
    "SCHEMA_VERSION",
    "ProjectError",
    "ProjectLockedError",
    "ProjectStore",
    "ProjectVersionError",
    "from_db_path",
    "to_db_path",
]

SCHEMA_VERSION = 1

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


def to_db_path(rel: str) -> str:
    """Check an image path and return it as stored in the database.

    File names that are not valid UTF-8 reach Python as strings with surrogate escapes, which SQLite text
    cannot hold; their undecodable bytes are stored as ``\\xHH`` escapes instead (unambiguous, because image
    paths never contain a backslash). :func:`from_db_path` reverses this.

    Raises
    ------
    ValueError
        ``rel`` is not a relative posix path inside the folder, or cannot be a file name.
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


def from_db_path(stored: str) -> str:
    """The image path of a database key written by :func:`to_db_path`."""
    if "\\" not in stored:
        return stored
    raw = re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m[1], 16)]), stored.encode("utf-8"))
    return raw.decode("utf-8", "surrogateescape")


class ProjectStore:
    """Connections to one project database; :meth:`write` and :meth:`query` are what the other parts use.

    Parameters
    ----------
    db_path : Path
        The database file (created with the schema on :meth:`init_schema`).
    folder : Path
        The project's image folder, named in error messages.
    busy_timeout_s : float
        How long a write waits for another writer before :class:`ProjectLockedError`.
    """

    def __init__(self, db_path: Path, folder: Path, busy_timeout_s: float) -> None:
        self.db_path = db_path
        self.folder = folder
        self.busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

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

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use.

        Raises
        ------
        ProjectError
            The store is closed or the database cannot be opened.
        """
        if self._closed:
            raise ProjectError(f"project {self.folder} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            with self.translate():
                conn = self._connect()
            with self._lock:
                self._connections.append(conn)
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def translate(self) -> Iterator[None]:
        """Turn SQLite errors raised in the block into :class:`ProjectError` messages a user can act on."""
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
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed (and fsync'ed) on leaving the block, rolled back on an error."""
        conn = self.connection()
        with self.translate():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """The rows of one read statement."""
        conn = self.connection()
        with self.translate():
            return conn.execute(sql, params).fetchall()

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> int | None:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone() is None:
            return None
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return None if row is None else int(row[0])

    def init_schema(self) -> None:
        """Create the tables of a new project; check the schema version of an existing one.

        Raises
        ------
        ProjectVersionError
            The database was written by a newer lrpseg.
        """
        with self.translate():
            current = self._schema_version(self.connection())
        if current == SCHEMA_VERSION:
            return  # nothing to write: opening works even while another program is writing
        with self.write() as conn:
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
        """Close all connections (from any thread); later use raises :class:`ProjectError`."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
