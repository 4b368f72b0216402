"""Writing masks, score maps, COCO JSON and provenance for a batch of analysed images.

Every file is written atomically (temporary file + rename, :mod:`lrpseg.core.atomic`), so an interrupted export
never leaves a half-written file under a final name, and existing files are kept unless ``overwrite`` is set: an
export never destroys masks a user already has. Keeping is decided by the atomic no-overwrite link itself, not
by a check before writing, so a file that appears meanwhile (another export into the same folder) is kept too.

Layout of an export folder (the naming rule is :mod:`lrpseg.core.export_layout`: it keeps the image folder's
tree, so ``<name>`` is the image's path relative to the image folder without its suffix, e.g. ``a/x``)::

    <name>.png               0/255 mask at the original image size (empty for images labelled undamaged and
                             for unlabelled images classified undamaged)
    scores/<name>.npy        score map in [0, 1] (float32) when ``write_scores``: for an image that gets a mask,
                             (score >= threshold) & (score > 0) is exactly its mask
    scores/<name>.png        the same, 8-bit, for a quick look
    annotations.coco.json    COCO instances with uncompressed RLE masks when ``write_coco`` (``file_name`` is the
                             image's path relative to the image folder)
    lrpseg-report.json       per-image probability, decision, label, threshold, files written (paths relative to the
                             export folder), errors
    provenance.json          model hash, rule set, segmenter, thresholds, lrpseg version
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from lrpseg.core import __version__
from lrpseg.core.atomic import atomic_write_bytes, remove_stale_temporaries
from lrpseg.core.export_layout import ExportNames, export_folder_problem, mask_file, relative_path, score_files
from lrpseg.core.image_folders import EXPORT_MARKER
from lrpseg.core.labels import is_damaged
from lrpseg.core.segment import score_to_uint8

REPORT_NAME = EXPORT_MARKER  # the scanner recognises export folders by it
PROVENANCE_NAME = "provenance.json"
COCO_NAME = "annotations.coco.json"


def encode_png(array: np.ndarray) -> bytes:
    """Encode a uint8 (H, W) array as PNG bytes."""
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(array, dtype=np.uint8))
    if not ok:
        raise ValueError("OpenCV could not encode the array as PNG")
    return buffer.tobytes()


def mask_to_uint8(mask: np.ndarray) -> np.ndarray:
    """A boolean mask as 0/255 uint8."""
    return np.where(mask, 255, 0).astype(np.uint8)


def rle_encode(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE of a boolean mask (column-major run lengths, starting with a run of zeros)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def rle_decode(rle: dict) -> np.ndarray:
    """Inverse of :func:`rle_encode`."""
    height, width = rle["size"]
    values = np.zeros(len(rle["counts"]), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, rle["counts"])
    return flat.reshape((height, width), order="F")


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (used to name the model an export came from)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class ExportedImage:
    """What the export did for one image."""

    image: str
    mask: str | None = None
    scores: str | None = None
    probability: float | None = None
    damaged: bool | None = None
    label: str | None = None
    threshold: float | None = None
    kept_existing: list[str] = field(default_factory=list)
    error: str | None = None
    mask_source: str = "automatic"
    correction: dict | None = None
    analysed: bool = True


class Exporter:
    """Writes one export folder; call :meth:`add` per image, then :meth:`finish`.

    Parameters
    ----------
    out_dir
        Created if missing.
    provenance
        Facts about the run (model, rule set, segmenter, ...) stored in ``provenance.json``.
    overwrite
        Replace existing files; otherwise they are kept and listed under ``kept_existing``.
    write_scores, write_coco
        Also write score maps / a COCO JSON.
    root
        The image folder: the export keeps its tree (:mod:`lrpseg.core.export_layout`), and COCO ``file_name``
        is the image's path relative to it (the file name alone when an image lies outside it or no folder is
        given).

    Raises
    ------
    ValueError
        When ``out_dir`` is the image folder itself.
    """

    def __init__(
        self,
        out_dir: Path,
        provenance: dict | None = None,
        overwrite: bool = False,
        write_scores: bool = True,
        write_coco: bool = False,
        root: Path | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.root = None if root is None else Path(root)
        if problem := export_folder_problem(self.out_dir, self.root):
            raise ValueError(problem)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.out_dir)  # left by an export that was killed mid-write
        self.overwrite = overwrite
        self.write_scores = write_scores
        self.write_coco = write_coco
        self.provenance = dict(provenance or {})
        self.records: list[ExportedImage] = []
        self.names = ExportNames(self.root)
        self._coco_images: list[dict] = []
        self._coco_annotations: list[dict] = []

    def _write(self, path: Path, data: bytes, record: ExportedImage) -> bool:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            atomic_write_bytes(path, data, overwrite=self.overwrite)
        except FileExistsError:
            record.kept_existing.append(path.relative_to(self.out_dir).as_posix())
            return False
        return True

    def add(
        self,
        image_path: Path,
        mask: np.ndarray | None = None,
        score: np.ndarray | None = None,
        probability: float | None = None,
        threshold: float | None = None,
        error: str | None = None,
        label: str | None = None,
    ) -> ExportedImage:
        """Export one image's mask (and score map); with ``error`` only the error is recorded.

        ``damaged`` in the record is the classifier's decision; ``label`` the user's, where it decided the mask.

        A file that cannot be written (full disk, permissions) is recorded as this image's error; the export
        goes on with the next image.
        """
        image_path = Path(image_path)
        record = ExportedImage(
            image=str(image_path),
            probability=probability,
            threshold=threshold,
            damaged=None if probability is None else bool(is_damaged(probability)),
            label=label,
            error=error,
        )
        self.records.append(record)
        if error is not None or mask is None:
            return record
        name = self.names.name_for(image_path)
        try:
            self._write_image_files(name, mask, score, record)
        except OSError as failure:
            record.error = f"{image_path}: could not write its mask: {failure}"
            return record
        if self.write_coco:
            self._add_coco(image_path, mask)
        return record

    def _files_of(self, name: str) -> list[Path]:
        files = [mask_file(self.out_dir, name)]
        return files + list(score_files(self.out_dir, name)) if self.write_scores else files

    def complete_images(self, image_paths: Iterable[Path]) -> set[Path]:
        """The images among ``image_paths`` whose files are all in the folder already.

        Without ``overwrite`` the export keeps such files, so a rerun of an interrupted export need not analyse
        these images again: record them with :meth:`keep_complete`. Give the images in the order they will be
        added, before adding any (names depend on that order).
        """
        if self.overwrite:
            return set()
        names = copy.deepcopy(self.names)
        complete = set()
        for image_path in image_paths:
            if all(path.exists() for path in self._files_of(names.name_for(image_path))):
                complete.add(Path(image_path))
        return complete

    def keep_complete(self, image_path: Path) -> ExportedImage:
        """Record an image :meth:`complete_images` found complete, without analysing it: its files are kept
        (``analysed`` is false, so no probability), and its existing mask goes into the COCO file."""
        image_path = Path(image_path)
        record = ExportedImage(image=str(image_path), analysed=False)
        self.records.append(record)
        files = self._files_of(self.names.name_for(image_path))
        record.kept_existing = [path.relative_to(self.out_dir).as_posix() for path in files]
        if self.write_coco:
            mask = cv2.imread(str(files[0]), cv2.IMREAD_GRAYSCALE)
            if mask is None:
                record.error = f"{image_path}: its existing mask {files[0]} cannot be read"
            else:
                self._add_coco(image_path, mask > 127)
        return record

    def _write_image_files(self, name: str, mask: np.ndarray, score: np.ndarray | None, record: ExportedImage):
        mask_path = mask_file(self.out_dir, name)
        if self._write(mask_path, encode_png(mask_to_uint8(mask)), record):
            record.mask = mask_path.relative_to(self.out_dir).as_posix()
        if self.write_scores and score is not None:
            npy_path, preview_path = score_files(self.out_dir, name)
            buffer = io.BytesIO()
            np.save(buffer, score.astype(np.float32, copy=False))
            if self._write(npy_path, buffer.getvalue(), record):
                record.scores = npy_path.relative_to(self.out_dir).as_posix()
            self._write(preview_path, encode_png(score_to_uint8(score)), record)

    def _add_coco(self, image_path: Path, mask: np.ndarray) -> None:
        image_id = len(self._coco_images) + 1
        height, width = mask.shape
        file_name = relative_path(image_path, self.root) or image_path.name
        self._coco_images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        if not mask.any():
            return
        ys, xs = np.nonzero(mask)
        bbox = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        self._coco_annotations.append(
            {
                "id": len(self._coco_annotations) + 1,
                "image_id": image_id,
                "category_id": 1,
                "segmentation": rle_encode(mask),
                "area": int(mask.sum()),
                "bbox": bbox,
                "iscrowd": 1,
            }
        )

    def _write_json(self, name: str, payload: dict) -> None:
        data = json.dumps(payload, indent=2).encode()
        atomic_write_bytes(self.out_dir / name, data)

    def finish(self) -> dict:
        """Write the report, provenance and COCO files; return the summary."""
        summary = {
            "images": len(self.records),
            "masks_written": sum(r.mask is not None for r in self.records),
            "errors": sum(r.error is not None for r in self.records),
            "kept_existing": sum(bool(r.kept_existing) for r in self.records),
            "corrected_masks": sum(r.mask_source == "corrected" for r in self.records),
        }
        provenance = {
            "lrpseg_version": __version__,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **self.provenance,
            "summary": summary,
        }
        self._write_json(PROVENANCE_NAME, provenance)
        self._write_json(REPORT_NAME, {"summary": summary, "images": [vars(r) for r in self.records]})
        if self.write_coco:
            self._write_json(
                COCO_NAME,
                {
                    "images": self._coco_images,
                    "annotations": self._coco_annotations,
                    "categories": [{"id": 1, "name": "damage"}],
                },
            )
        return summary
