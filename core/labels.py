"""Image-level labels: from folder names, and to and from CSV / JSON files.

A label file maps an image path (relative to the image folder, ``/``-separated) to ``"damaged"`` or
``"undamaged"``:

* CSV: a header row with the columns ``image`` and ``label`` (any order, other columns ignored, UTF-8 with or
  without a byte-order mark);
* JSON: one object ``{"image path": "label", ...}``.

On reading, labels are case-insensitive and a few synonyms are accepted (:data:`SYNONYMS`): ``1``, ``true``,
``yes``, ``defect`` mean damaged; ``0``, ``false``, ``no``, ``ok`` mean undamaged (JSON ``true``/``false`` and
``1``/``0`` too). Backslashes in image paths are turned into ``/`` and a leading ``./`` is dropped, so files
written on Windows read the same. Files are always written with the canonical labels, sorted by image.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from lrpseg.core.atomic import atomic_write_text
from lrpseg.core.images import list_images

__all__ = [
    "DAMAGED",
    "DAMAGED_THRESHOLD",
    "LABELS",
    "SYNONYMS",
    "UNDAMAGED",
    "is_damaged",
    "gets_mask",
    "labels_from_folders",
    "normalise_label",
    "predicted_label",
    "read_labels",
    "write_labels",
]

DAMAGED = "damaged"
UNDAMAGED = "undamaged"
#: The classifier calls an image damaged when P(damaged) is at least this.
DAMAGED_THRESHOLD = 0.5


def is_damaged(probability: float) -> bool:
    """The classifier's decision: P(damaged) ≥ :data:`DAMAGED_THRESHOLD`."""
    return probability >= DAMAGED_THRESHOLD


def gets_mask(probability: float, label: str | None = None) -> bool:
    """Whether an image gets a mask: the user's label where there is one, else the classifier's decision.

    An inspector who labelled an image damaged expects its mask even where the classifier disagrees, and none on
    an image labelled undamaged.
    """
    return label == DAMAGED if label is not None else is_damaged(probability)


def predicted_label(probability: float) -> str:
    """:data:`DAMAGED` or :data:`UNDAMAGED`, as the classifier decides for ``probability``."""
    return DAMAGED if is_damaged(probability) else UNDAMAGED
#: The two labels, in class-index order (index 1 = damaged).
LABELS = (UNDAMAGED, DAMAGED)

#: Accepted spellings on read (lower case) and what they mean.
SYNONYMS: dict[str, str] = {
    "damaged": DAMAGED,
    "1": DAMAGED,
    "true": DAMAGED,
    "yes": DAMAGED,
    "defect": DAMAGED,
    "undamaged": UNDAMAGED,
    "0": UNDAMAGED,
    "false": UNDAMAGED,
    "no": UNDAMAGED,
    "ok": UNDAMAGED,
}


def normalise_label(value: object) -> str:
    """Map a label or one of its :data:`SYNONYMS` (or a bool / 0 / 1) to ``DAMAGED`` or ``UNDAMAGED``.

    Raises
    ------
    ValueError
        For anything else.
    """
    if isinstance(value, bool):
        return DAMAGED if value else UNDAMAGED
    if isinstance(value, int) and value in (0, 1):
        return DAMAGED if value else UNDAMAGED
    if isinstance(value, str):
        label = SYNONYMS.get(value.strip().lower())
        if label is not None:
            return label
    raise ValueError(f"unknown label {value!r} (expected {DAMAGED!r} or {UNDAMAGED!r})")


def _normalise_key(key: str) -> str:
    key = key.strip().replace("\\", "/")
    while key.startswith("./"):
        key = key[2:]
    return key


def labels_from_folders(root: str | os.PathLike[str]) -> dict[str, str]:
    """Label images by the folder they are in.

    An image below a sub-folder of ``root`` named ``damaged`` or ``undamaged`` (case-insensitive, at any
    depth) gets that label; the nearest such folder above the image decides. Other images are left out.

    Parameters
    ----------
    root : path-like
        The image folder (scanned with :func:`core.images.list_images`, hidden folders skipped).

    Returns
    -------
    dict
        Relative posix path -> label, sorted by path.
    """
    root = Path(root)
    labels: dict[str, str] = {}
    for path in list_images(root):
        rel = path.relative_to(root)
        for part in reversed(rel.parent.parts):
            if part.lower() in (DAMAGED, UNDAMAGED):
                labels[rel.as_posix()] = part.lower()
                break
    return labels


def _add(labels: dict[str, str], path: Path, where: str, image: object, label: object) -> None:
    if not isinstance(image, str) or not _normalise_key(image):
        raise ValueError(f"{path}: {where}: empty or missing image path")
    key = _normalise_key(image)
    try:
        value = normalise_label(label)
    except ValueError as error:
        raise ValueError(f"{path}: {where}: {error}") from None
    if labels.get(key, value) != value:
        raise ValueError(f"{path}: {where}: {key!r} is labelled both {labels[key]!r} and {value!r}")
    labels[key] = value


def _read_csv(path: Path, text: str) -> dict[str, str]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise ValueError(f"{path}: line 1: empty file (expected a header row 'image,label')")
    columns = [name.strip().lower() for name in header]
    for needed in ("image", "label"):
        if needed not in columns:
            raise ValueError(f"{path}: line 1: missing column {needed!r} (header is {header!r})")
    image_col, label_col = columns.index("image"), columns.index("label")
    labels: dict[str, str] = {}
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        where = f"line {reader.line_num}"
        if len(row) <= max(image_col, label_col):
            raise ValueError(f"{path}: {where}: expected {len(columns)} columns, got {len(row)}")
        _add(labels, path, where, row[image_col], row[label_col])
    return labels


def read_labels(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a ``.csv`` or ``.json`` label file.

    Parameters
    ----------
    path : path-like
        The file; its suffix selects the format.

    Returns
    -------
    dict
        Image path -> ``DAMAGED`` / ``UNDAMAGED``, sorted by image path.

    Raises
    ------
    ValueError
        Naming the file and the line (CSV) or entry (JSON): unknown suffix, missing column, unknown label,
        empty image path, an image labelled twice with different labels, malformed JSON.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ValueError(f"{path}: unknown label file type {path.suffix!r} (expected .csv or .json)")
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".csv":
        labels = _read_csv(path, text)
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: line {error.lineno}: invalid JSON ({error.msg})") from None
        if not isinstance(data, dict):
            kind = type(data).__name__
            raise ValueError(f'{path}: expected a JSON object {{"image": "label"}}, got {kind}')
        labels = {}
        for image, label in data.items():
            _add(labels, path, f"entry {image!r}", image, label)
    return dict(sorted(labels.items()))


def write_labels(path: str | os.PathLike[str], labels: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
    """Write labels to a ``.csv`` (columns ``image,label``) or ``.json`` file, atomically.

    Parameters
    ----------
    path : path-like
        Destination; its suffix selects the format.
    labels : mapping or iterable of (image, label)
        Labels may be synonyms; they are written canonical, sorted by image path.

    Raises
    ------
    ValueError
        For an unknown suffix or label.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ValueError(f"{path}: unknown label file type {path.suffix!r} (expected .csv or .json)")
    items = labels.items() if isinstance(labels, Mapping) else labels
    clean = dict(sorted((_normalise_key(image), normalise_label(label)) for image, label in items))
    if suffix == ".csv":
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["image", "label"])
        writer.writerows(clean.items())
        text = buffer.getvalue()
    else:
        text = json.dumps(clean, indent=2, ensure_ascii=False) + "\n"
    atomic_write_text(path, text)
