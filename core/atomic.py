"""Atomic file writes: readers see the old file or the complete new one, never a torn one.

The data goes to a temporary file in the destination's folder (same file system, so the final rename is
atomic), is flushed and fsync'ed, and then replaces the destination with :func:`os.replace`. On POSIX the
folder is fsync'ed too, so the rename itself survives a power cut. If anything fails the temporary file is
removed and the destination is untouched.

Temporary files are created by :func:`tempfile.mkstemp`, which makes them mode 0600; the final file gets the
mode an ordinary ``open(path, "w")`` would give it (0666 minus the umask), or keeps the mode of the file it
replaces.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text", "atomic_save_npy", "remove_stale_temporaries"]

_UMASK: int | None = None
_TMP_NAME_BYTES = 100


def _umask() -> int:
    """The process umask, read once (``/proc`` on Linux avoids the racy set-and-restore dance)."""
    global _UMASK
    if _UMASK is None:
        try:
            with open("/proc/self/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("Umask:"):
                        _UMASK = int(line.split()[1], 8)
                        break
        except OSError:
            pass
        if _UMASK is None:
            _UMASK = os.umask(0o022)
            os.umask(_UMASK)
    return _UMASK


def _short(name: str, max_bytes: int = _TMP_NAME_BYTES) -> str:
    """``name`` cut to at most ``max_bytes`` in the file-system encoding: file names are limited to 255
    bytes, and the temporary file adds a dot, a random part and ``.tmp`` to the destination's name."""
    while len(os.fsencode(name)) > max_bytes:
        name = name[:-1]
    return name


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the data itself is already synced
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike[str],
    mode: str = "wb",
    overwrite: bool = True,
    encoding: str | None = None,
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open a temporary file that atomically becomes ``path`` when the ``with`` block ends without error.

    Parameters
    ----------
    path : path-like
        Destination file. Its folder must exist.
    mode : {"wb", "w"}
        Binary or text mode.
    overwrite : bool
        If False and ``path`` exists when the block ends, raise :class:`FileExistsError` and leave the
        existing file alone (checked race-free with a hard link where the file system supports it).
    encoding, newline : str, optional
        Passed to :func:`open` in text mode (``encoding`` defaults to UTF-8).

    Yields
    ------
    file object
        Write to it; do not close it yourself.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open supports modes 'wb' and 'w', not {mode!r}")
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists and overwrite=False")
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{_short(path.name)}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        if mode == "w":
            handle = open(fd, "w", encoding=encoding or "utf-8", newline=newline)
        else:
            handle = open(fd, "wb")
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        try:
            target_mode = path.stat().st_mode & 0o7777
        except OSError:
            target_mode = 0o666 & ~_umask()
        os.chmod(tmp, target_mode)
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_overwrite(tmp, path)
        _fsync_dir(folder)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _link_no_overwrite(tmp: Path, path: Path) -> None:
    try:
        os.link(tmp, path)  # fails with FileExistsError if path appeared meanwhile
    except FileExistsError:
        raise FileExistsError(f"{path} exists and overwrite=False") from None
    except OSError:
        # No hard links here (e.g. FAT, some network shares): check, then rename (a tiny race remains).
        if path.exists():
            raise FileExistsError(f"{path} exists and overwrite=False") from None
        os.replace(tmp, path)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb", overwrite=overwrite) as handle:
        handle.write(data)


def atomic_write_text(
    path: str | os.PathLike[str], text: str, encoding: str = "utf-8", overwrite: bool = True
) -> None:
    """Write ``text`` to ``path`` atomically (no newline translation; see :func:`atomic_open`)."""
    with atomic_open(path, "w", overwrite=overwrite, encoding=encoding, newline="") as handle:
        handle.write(text)


def atomic_save_npy(path: str | os.PathLike[str], array: np.ndarray, overwrite: bool = True) -> None:
    """Save ``array`` as a ``.npy`` file atomically (no pickles: object arrays are refused)."""
    with atomic_open(path, "wb", overwrite=overwrite) as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files :func:`atomic_open` leaves when its process is killed mid-write.

    They are hidden (``.<name>.<random>.tmp``) and never a finished file; a writer killed by SIGKILL cannot
    delete its own. Call it before writing into a folder that no other writer uses at the same time. Returns
    the files removed (in ``folder`` and its subfolders).
    """
    removed = []
    for path in Path(folder).rglob(".*.tmp"):
        if path.is_file():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed
