"""Folder scanning: the candidate image files of a folder, by suffix, without decoding them."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import NamedTuple

from lrpseg.core.image_headers import READ_FORMATS, SUPPORTED_SUFFIXES, UNSUPPORTED_SUFFIXES

__all__ = ["EXPORT_MARKER", "FolderScan", "link_problem", "list_images", "scan_folder"]

#: The report every lrpseg export folder holds: a sub-folder with this file is lrpseg's own output (masks and
#: score maps), not images to label, and is skipped.
EXPORT_MARKER = "lrpseg-report.json"


class FolderScan(NamedTuple):
    """Result of :func:`scan_folder`; unpacks as ``images, problems``."""

    images: list[Path]
    problems: list[tuple[Path, str]]


def link_problem(path: Path) -> str | None:
    """Why a symbolic link cannot be followed (loop or missing target), or None."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop (the link leads back to itself)"
        if path.is_symlink():
            return f"broken symbolic link (to {os.readlink(path)})"
    return None


def scan_folder(folder: str | os.PathLike[str], recursive: bool = True) -> FolderScan:
    """List the candidate image files of a folder by suffix, without decoding them.

    Hidden files and folders (name starting with ``.``, e.g. the project store ``.lrpseg``) are skipped, and so are
    sub-folders holding an lrpseg export (:data:`EXPORT_MARKER`), whose masks would otherwise come back as images.
    Symbolic links are followed, but a folder reached twice (a link loop or two links to one folder) is
    listed once. Suffixes are matched case-insensitively against :data:`SUPPORTED_SUFFIXES`.

    Parameters
    ----------
    folder : path-like
        The folder to scan.
    recursive : bool
        Descend into sub-folders.

    Returns
    -------
    FolderScan
        ``images``: sorted by relative path, each ``folder / relative path``; ``problems``: ``(path, reason)``
        for candidates that cannot be read at all (broken links, link loops, non-regular files), files of an
        unsupported image format (:data:`UNSUPPORTED_SUFFIXES`) and unreadable folders.

    Raises
    ------
    NotADirectoryError
        If ``folder`` is not an existing folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    images: list[tuple[str, Path]] = []
    problems: list[tuple[Path, str]] = []
    root_stat = root.stat()
    seen = {(root_stat.st_dev, root_stat.st_ino)}

    def on_error(error: OSError) -> None:
        problems.append((Path(error.filename or root), f"cannot list folder: {error.strerror or error}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=True):
        keep = []
        for name in sorted(dirnames):
            if name.startswith(".") or not recursive:
                continue
            try:
                st = os.stat(os.path.join(dirpath, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen and not os.path.isfile(os.path.join(dirpath, name, EXPORT_MARKER)):
                seen.add((st.st_dev, st.st_ino))
                keep.append(name)
        dirnames[:] = keep
        for name in filenames:
            suffix = os.path.splitext(name)[1].lower()
            if name.startswith(".") or not (suffix in SUPPORTED_SUFFIXES or suffix in UNSUPPORTED_SUFFIXES):
                continue
            path = Path(dirpath, name)
            if path.is_symlink() and (problem := link_problem(path)):
                problems.append((path, problem.split(" (")[0]))
            elif not path.is_file():
                problems.append((path, "not a regular file"))
            elif suffix in UNSUPPORTED_SUFFIXES:
                problems.append((path, f"unsupported format {UNSUPPORTED_SUFFIXES[suffix]}{READ_FORMATS}"))
            else:
                images.append((path.relative_to(root).as_posix(), path))
    images.sort(key=lambda item: item[0])
    problems.sort(key=lambda item: str(item[0]))
    return FolderScan([path for _, path in images], problems)


def list_images(folder: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Sorted image files under ``folder`` (see :func:`scan_folder`; problem files are left out)."""
    return scan_folder(folder, recursive=recursive).images
