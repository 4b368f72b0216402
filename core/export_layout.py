"""Where an export puts each image's files: the one naming rule that writers and readers of exports share.

An export keeps the image folder's tree. Each image gets a *name*: its path relative to the image folder without
the suffix (``ROOT/a/x.png`` is ``a/x``), and its files are::

    OUT/<name>.png           the mask
    OUT/scores/<name>.npy    the score map, and OUT/scores/<name>.png its 8-bit preview

so ``ROOT/a/x.png`` and ``ROOT/b/x.png`` get ``OUT/a/x.png`` and ``OUT/b/x.png``. An image outside the image
folder (or exported without one) is named by its stem alone; when that name is taken, its last two parent folders
are put in front (``p__q__x``). An image under a top-level sub-folder called ``scores`` or ``evaluation``, which
would land among the score maps or :command:`lrpseg evaluate`'s output, gets its folders joined into a flat name
(``ROOT/scores/y.png`` is ``scores__y``). A name still taken (``x.png`` and ``x.jpg`` in one folder) gets ``_2``,
``_3``, ... appended.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath

from lrpseg.core.image_folders import EXPORT_MARKER

__all__ = [
    "EVALUATION_DIR",
    "SCORES_DIR",
    "ExportNames",
    "export_folder_problem",
    "export_masks",
    "mask_file",
    "relative_path",
    "score_files",
]

SCORES_DIR = "scores"
EVALUATION_DIR = "evaluation"
#: Top-level folders of an export that hold no masks.
RESERVED_DIRS = frozenset({SCORES_DIR, EVALUATION_DIR})
MAX_NAME_BYTES = 200


def _short_name(stem: str) -> str:
    """``stem`` if it fits file-name limits (255 bytes) with room for suffixes, else a cut plus a short hash."""
    encoded = stem.encode("utf-8", "surrogateescape")
    if len(encoded) <= MAX_NAME_BYTES:
        return stem
    digest = hashlib.sha256(encoded).hexdigest()[:12]
    cut = encoded[: MAX_NAME_BYTES - 13].decode("utf-8", "ignore")
    return f"{cut}~{digest}"


def relative_path(path: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> str | None:
    """``path`` relative to ``root`` in ``/`` form, or None when there is no root or ``path`` lies outside it."""
    if root is None:
        return None
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return None


def _tree_name(rel: str) -> str:
    """The name of the image at ``rel`` under the image folder (its folders joined by ``__`` under a reserved
    top-level folder, where the tree cannot be kept)."""
    folders, stem = PurePosixPath(rel).parts[:-1], PurePosixPath(rel).stem
    if folders and folders[0].casefold() in RESERVED_DIRS:
        return _short_name("__".join([*folders, stem]))
    return PurePosixPath(*folders, _short_name(stem)).as_posix()


class ExportNames:
    """Gives each image of one export its name (see the module docstring), never the same name twice.

    Parameters
    ----------
    root : path-like, optional
        The image folder whose tree the export keeps.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = None if root is None else Path(root)
        self._used: set[str] = set()

    def name_for(self, image_path: str | os.PathLike[str]) -> str:
        """The name of ``image_path``'s files, in ``/`` form without suffix; reserved for it from now on."""
        image_path = Path(image_path)
        rel = relative_path(image_path, self.root)
        if rel is not None:
            name = _tree_name(rel)
        else:
            name = _short_name(image_path.stem)
            if name in self._used:
                name = _short_name("__".join([*image_path.parent.parts[-2:], image_path.stem]))
        base, suffix = name, 2
        while name in self._used:
            name, suffix = f"{base}_{suffix}", suffix + 1
        self._used.add(name)
        return name


def export_folder_problem(out_dir: str | os.PathLike[str], root: str | os.PathLike[str] | None) -> str | None:
    """Why ``out_dir`` cannot take the export of the image folder ``root``, or None when it can.

    The image folder itself cannot: its tree would put each mask in the place of its image.
    """
    if root is not None and Path(out_dir).resolve() == Path(root).resolve():
        return f"{out_dir} is the image folder itself: its masks would take the images' places; export elsewhere"
    return None


def mask_file(out_dir: Path, name: str) -> Path:
    """The mask of the image named ``name``."""
    return Path(out_dir) / f"{name}.png"


def score_files(out_dir: Path, name: str) -> tuple[Path, Path]:
    """The score map (``.npy``) and its 8-bit preview (``.png``) of the image named ``name``."""
    base = Path(out_dir) / SCORES_DIR / name
    return base.parent / f"{base.name}.npy", base.parent / f"{base.name}.png"


def export_masks(out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Every mask in an export folder, by name, sorted: the ``.png`` files of its tree, without the score maps,
    :command:`lrpseg evaluate`'s output, hidden (temporary) files and export folders nested inside it."""
    out_dir = Path(out_dir)
    masks = {}
    for dirpath, dirnames, filenames in os.walk(out_dir):
        here = Path(dirpath)
        top = here == out_dir
        dirnames[:] = [
            d
            for d in dirnames
            if not d.startswith(".")
            and not (top and d.casefold() in RESERVED_DIRS)
            and not (here / d / EXPORT_MARKER).is_file()
        ]
        for file in filenames:
            if file.endswith(".png") and not file.startswith("."):
                path = here / file
                masks[path.relative_to(out_dir).with_suffix("").as_posix()] = path
    return dict(sorted(masks.items()))
