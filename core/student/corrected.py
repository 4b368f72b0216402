"""Mixed supervision: the project's hand-corrected masks as exact pixel targets of a distillation.

A corrected mask (:mod:`lrpseg.core.corrected_masks`) is the user's word on every pixel of its image, so the
student learns it as it is: no ignore band, every pixel counting with :attr:`DistilConfig.corrected_weight
<lrpseg.core.student.distil.DistilConfig.corrected_weight>` (measured by ``benchmarks/mixed_weight.py``) where
pseudo-label pixels count with 1. The CLI (``lrpseg distil`` on a project folder) and the GUI ("Refine masks")
both collect them here, so they use the same masks and report the same problems.

A corrected mask that cannot be used (its file is missing or damaged, its image is gone, unreadable, or has
another size now) is named in a message and skipped. Nothing here writes or deletes a corrected mask.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from lrpseg.core.corrected_masks import CorrectedMaskError, CorrectedMasks
from lrpseg.core.images import ImageReadError, probe_image
from lrpseg.core.project import DB_NAME, STORE_DIR, Project

__all__ = ["CorrectedTargets", "corrected_targets", "merge_paths", "project_at"]


@dataclass
class CorrectedTargets:
    """The usable corrected masks of a project and why the others were skipped.

    Attributes
    ----------
    masks : dict
        ``{image path relative to the project folder: boolean mask (H, W) at the image's size}``.
    skipped : list of str
        One message per corrected mask that was not used, naming the image, the file and the reason.
    """

    masks: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def exact(self, root: Path, weight: float) -> dict[Path, tuple[np.ndarray, float]]:
        """``{root / rel: (mask, weight)}``: the ``exact`` argument of
        :func:`~lrpseg.core.student.distil.distil_to_file`."""
        return {Path(root) / rel: (mask, float(weight)) for rel, mask in self.masks.items()}

    def summary(self, weight: float) -> dict:
        """What the student's training summary (and so its provenance) records about the corrected masks."""
        return {"used": len(self.masks), "weight": float(weight), "images": sorted(self.masks),
                "skipped": list(self.skipped)}  # fmt: skip


def project_at(folder: Path) -> Project | None:
    """The lrpseg project of an image folder, opened, or None when the folder has none (nothing is created)."""
    return Project.open(folder) if (Path(folder) / STORE_DIR / DB_NAME).is_file() else None


def corrected_targets(project: Project, rels: Iterable[str] | None = None) -> CorrectedTargets:
    """Load the corrected masks of ``project`` (of the images in ``rels`` only, when given).

    Each mask is checked against its image's current size (read from the file header) and against its stored
    checksum; one that fails is skipped with a message, and its file and row are left as they are.

    Parameters
    ----------
    project
        The open project.
    rels
        Images (relative to the project folder) to consider; default: every image of the folder's last scan.
    """
    store = CorrectedMasks(project)
    wanted = set(project.images() if rels is None else rels)
    found = CorrectedTargets()
    for rel, info in store.infos().items():
        if rel not in wanted:
            continue
        where = store.folder / info.file
        try:
            image = probe_image(project.folder / rel)
        except ImageReadError as error:
            found.skipped.append(f"corrected mask of {rel} ({where}) skipped: its image cannot be read: {error}")
            continue
        try:
            found.masks[rel] = store.load(rel, shape=(image.height, image.width))
        except CorrectedMaskError as error:
            found.skipped.append(f"{error} (skipped; the file is kept)")
    return found


def merge_paths(labels: Mapping[str, str | None], corrected: CorrectedTargets) -> list[str]:
    """The images a distillation uses: the labelled ones and every one with a usable corrected mask, sorted."""
    return sorted(set(labels) | set(corrected.masks))
