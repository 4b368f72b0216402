"""The recent-folders list of File ▸ Open recent, kept in the user's Qt settings (not in any project)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

RECENT_LIMIT = 8
RECENT_KEY = "recent_folders"


def _settings() -> QSettings:
    return QSettings("lrpseg", "lrpseg")


def recent_folders() -> list[Path]:
    """Folders opened before, most recent first; folders that no longer exist are left out."""
    stored = _settings().value(RECENT_KEY, []) or []
    if isinstance(stored, str):  # QSettings returns a one-element list as a plain string
        stored = [stored]
    return [Path(p) for p in stored if Path(p).is_dir()]


def remember_folder(folder: Path) -> None:
    """Put ``folder`` first in the list (at most :data:`RECENT_LIMIT` entries)."""
    folders = [str(folder)] + [str(p) for p in recent_folders() if p != folder]
    settings = _settings()
    settings.setValue(RECENT_KEY, folders[:RECENT_LIMIT])
    settings.sync()
