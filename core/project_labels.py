"""Image-level labels of a project with an undo/redo history, kept in the project's SQLite store.

Every change is one transaction and one undo step (a label click, or an import of many labels). A new change
drops the redo tail; the history keeps the latest :data:`HISTORY_LIMIT` steps. Several lrpseg instances with
one project open share one history.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import NamedTuple

from lrpseg.core.labels import normalise_label
from lrpseg.core.project_store import ProjectStore, from_db_path, to_db_path

__all__ = ["HISTORY_LIMIT", "LabelEvent", "LabelHistory"]

#: Undo steps kept; older ones are forgotten.
HISTORY_LIMIT = 10_000


class LabelEvent(NamedTuple):
    """One label change in the history; ``step`` groups changes undone together."""

    step: int
    rel: str
    old_label: str | None
    new_label: str | None
    at: float
    undone: bool


class LabelHistory:
    """The labels and their history in one store.

    Parameters
    ----------
    store : ProjectStore
        The project's database.
    present : callable
        Returns the images currently in the folder; :meth:`labels` leaves out labels of vanished files.
    """

    def __init__(self, store: ProjectStore, present: Callable[[], Collection[str]]) -> None:
        self._store = store
        self._present = present

    def label(self, rel: str) -> str | None:
        """The label of one image, or None."""
        rows = self._store.query("SELECT label FROM labels WHERE rel=?", (to_db_path(rel),))
        return rows[0][0] if rows else None

    def labels(self, include_missing: bool = False) -> dict[str, str]:
        """Labels of the images in the folder (also of vanished files with ``include_missing``), sorted."""
        stored = self._store.query("SELECT rel, label FROM labels ORDER BY rel")
        rows = [(from_db_path(rel), label) for rel, label in stored]
        if include_missing:
            return dict(rows)
        present = set(self._present())
        return {rel: label for rel, label in rows if rel in present}

    def set_labels(self, labels: Mapping[str, str | None]) -> bool:
        """Set many labels (None removes one) in one transaction and one undo step; whether any changed.

        Labels may be synonyms (see :func:`lrpseg.core.labels.normalise_label`).
        """
        return self.set_steps([labels])[0]

    def set_steps(self, steps: Sequence[Mapping[str, str | None]]) -> list[bool]:
        """Apply several changes in order, each its own undo step, in one transaction (one fsync); per step,
        whether it changed anything. A queue of label clicks is written this way."""
        cleaned = [
            {to_db_path(rel): None if value is None else normalise_label(value) for rel, value in labels.items()}
            for labels in steps
        ]
        now = time.time()
        with self._store.write() as conn:
            return [_record_step(conn, clean, now) for clean in cleaned]

    def step(self, undo: bool) -> str | None:
        """Revert the latest step not undone (``undo``) or re-apply the earliest undone one; its first image."""
        now = time.time()
        with self._store.write() as conn:
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
                _apply(conn, rel, old if undo else new, now)
            conn.execute("UPDATE label_events SET undone=? WHERE step=?", (int(undo), row[0]))
        return from_db_path(events[0][0])

    def history(self, limit: int = 100) -> list[LabelEvent]:
        """The latest label events, newest first (undone ones included, flagged)."""
        rows = self._store.query(
            "SELECT step, rel, old_label, new_label, at, undone FROM label_events ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [LabelEvent(s, from_db_path(r), o, n, a, bool(u)) for s, r, o, n, a, u in rows]


def _record_step(conn: sqlite3.Connection, clean: Mapping[str, str | None], now: float) -> bool:
    """One undo step inside an open transaction: apply the changes of ``clean`` (database paths, normalised
    labels) and record them; whether anything changed."""
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
        _apply(conn, rel, new, now)
    conn.execute("DELETE FROM label_events WHERE step <= ?", (step - HISTORY_LIMIT,))
    return True


def _apply(conn: sqlite3.Connection, rel: str, label: str | None, now: float) -> None:
    if label is None:
        conn.execute("DELETE FROM labels WHERE rel=?", (rel,))
    else:
        conn.execute("INSERT OR REPLACE INTO labels (rel, label, updated_at) VALUES (?, ?, ?)", (rel, label, now))
