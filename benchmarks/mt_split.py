"""Magnetic Tile samples, their near-duplicate capture groups and the paper's 60/20/20 split (§3.4).

The dataset's authors photographed each tile region up to six times under different lighting (file names
``exp1`` ... ``exp6``) and cropped every capture by hand, so the copies of one region differ in brightness,
in crop extent (by up to ~25 % of a side) and by a few pixels of shift, but not in pixel scale. A fair split
keeps all copies of a region in one set. We find them by image similarity alone:

1. Fingerprint: the grey image shrunk by :data:`FINGERPRINT_FACTOR` (area averaging) minus its Gaussian blur
   (sigma :data:`FINGERPRINT_SIGMA`): a high-pass image that keeps the tile's scratches and grain but not the
   lighting, which differs from capture to capture.
2. Similarity of two images of the same class: the central :data:`TEMPLATE_FRACTION` of the smaller
   fingerprint (by area; its size set by the smaller extent of the two on each axis) is searched over every
   shift in the larger one with normalised cross-correlation (``cv2.matchTemplate``, ``TM_CCOEFF_NORMED``);
   the similarity is the best correlation. Shift search absorbs the different crop boxes; no resizing,
   because all captures share one camera scale.
3. Groups: complete-linkage agglomerative clustering (scipy) per class on ``1 - similarity``, cut at
   similarity :data:`GROUP_THRESHOLD`: every two members of a group correlate at least that well. Then any
   two groups that hold a pair correlating at :data:`MERGE_THRESHOLD` or better are joined: complete linkage
   splits a region when one of its captures matches another poorly (one MT_Free region: 0.27 for one pair,
   0.7-0.9 for the rest). Unrelated tiles reach 0.6-0.69 (vertical grinding marks align under shifts);
   0.7 and above we only saw within one region; lower merge thresholds chain hundreds of images together.

Checked against the capture numbers in the file names (``exp<k>_num_<frame>``; copies of one region have
nearby frame numbers), which the method never reads: on all 1124 images it recovers the runs of six
exposures, separates runs that the camera interleaved, and joins re-captures of one region that lie
hundreds of frames apart (details in ``benchmarks/results/magnetic_tile.md``).

The split assigns whole groups, class by class, to train / validation / test so that each class is divided
60/20/20 as closely as whole groups allow.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from lrpseg.core.images import read_image
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform

PAPER_CLASSES = {"MT_Blowhole": 1, "MT_Crack": 1, "MT_Free": 0}
"""The classes the paper uses (§3.4) and their targets (1 = damaged)."""
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
FINGERPRINT_FACTOR = 4
FINGERPRINT_SIGMA = 1.5
TEMPLATE_FRACTION = 0.6
GROUP_THRESHOLD = 0.35
MERGE_THRESHOLD = 0.7

_CAPTURE = re.compile(r"exp(\d+)_num_(\d+)")


@dataclass(frozen=True)
class Sample:
    """One Magnetic Tile image with its mask file, class folder and target (1 = damaged)."""

    image: Path
    mask: Path
    mt_class: str
    target: int

    @property
    def name(self) -> str:
        """``<class>/<stem>``, unique over the dataset."""
        return f"{self.mt_class}/{self.image.stem}"


def capture_number(path: Path) -> tuple[int, str]:
    """Sort key: the frame number in ``exp<k>_num_<frame>`` (copies of one region lie close), then the name."""
    match = _CAPTURE.search(Path(path).stem)
    return (int(match.group(2)) if match else -1, Path(path).name)


def list_samples(root: Path, classes: dict[str, int] | None = None, limit: int | None = None) -> list[Sample]:
    """The images of ``classes`` under ``root`` (``<class>/Imgs/<name>.jpg`` with ``<name>.png`` beside).

    Parameters
    ----------
    root
        The extracted Magnetic Tile dataset folder (one sub-folder per class, e.g. ``MT_Crack/Imgs``).
    classes
        Class folder -> target; default :data:`PAPER_CLASSES`.
    limit
        At most this many images per class, the first in capture-number order, so that the copies of a
        region mostly stay together (for quick runs).

    Raises
    ------
    FileNotFoundError
        A class folder or an image's mask is missing.
    """
    classes = PAPER_CLASSES if classes is None else classes
    samples = []
    for mt_class, target in classes.items():
        folder = Path(root) / mt_class / "Imgs"
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: class folder not found (is {root} the Magnetic Tile dataset?)")
        images = sorted(folder.glob("*.jpg"), key=capture_number)
        if limit is not None:
            images = images[:limit]
        for image in images:
            mask = image.with_suffix(".png")
            if not mask.is_file():
                raise FileNotFoundError(f"{image}: its mask {mask.name} is missing")
            samples.append(Sample(image, mask, mt_class, target))
    return samples


def fingerprint(image: np.ndarray, factor: int = FINGERPRINT_FACTOR, sigma: float = FINGERPRINT_SIGMA) -> np.ndarray:
    """High-pass thumbnail of a grey or RGB image (float32), the input of :func:`similarity`."""
    gray = image if image.ndim == 2 else image.mean(axis=2)
    gray = gray.astype(np.float32)
    height, width = gray.shape
    small = cv2.resize(
        gray, (max(8, round(width / factor)), max(8, round(height / factor))), interpolation=cv2.INTER_AREA
    )
    return small - cv2.GaussianBlur(small, (0, 0), sigma)


def similarity(a: np.ndarray, b: np.ndarray, fraction: float = TEMPLATE_FRACTION) -> float:
    """Best normalised cross-correlation of the centre of the smaller fingerprint over the larger one.

    Returns a value in [-1, 1]; 1 means one image is a brightness-scaled, shifted crop of the other.
    """
    small, large = (a, b) if a.size <= b.size else (b, a)
    th = max(4, int(min(small.shape[0], large.shape[0]) * fraction))
    tw = max(4, int(min(small.shape[1], large.shape[1]) * fraction))
    y0, x0 = (small.shape[0] - th) // 2, (small.shape[1] - tw) // 2
    template = small[y0 : y0 + th, x0 : x0 + tw]
    return float(cv2.matchTemplate(large, template, cv2.TM_CCOEFF_NORMED).max())


def similarity_matrix(prints: Sequence[np.ndarray], workers: int | None = None) -> np.ndarray:
    """Symmetric (n, n) matrix of :func:`similarity` (diagonal 1), computed row by row in threads."""
    n = len(prints)
    sims = np.eye(n, dtype=np.float32)

    def row(i: int) -> tuple[int, list[float]]:
        return i, [similarity(prints[i], prints[j]) for j in range(i + 1, n)]

    workers = workers or min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # OpenCV releases the GIL in matchTemplate
        for i, values in pool.map(row, range(n)):
            sims[i, i + 1 :] = values
            sims[i + 1 :, i] = values
    return sims


def capture_groups(
    images: Sequence[np.ndarray],
    labels: Sequence[str],
    threshold: float = GROUP_THRESHOLD,
    merge_threshold: float = MERGE_THRESHOLD,
    workers: int | None = None,
) -> np.ndarray:
    """Group near-duplicate captures: complete linkage on ``1 - similarity`` within each label, then merging.

    Parameters
    ----------
    images
        Decoded images (grey or RGB).
    labels
        Class of each image; images of different classes never share a group.
    threshold
        Complete-linkage cut: every two members of a cluster have similarity >= ``threshold``.
    merge_threshold
        Clusters holding a pair of at least this similarity are joined.

    Returns
    -------
    numpy.ndarray
        int (n,): group id per image, 0 .. n_groups - 1, numbered class by class.
    """
    labels = np.asarray(labels)
    groups = np.full(len(images), -1, dtype=int)
    next_id = 0
    for label in dict.fromkeys(labels.tolist()):
        idx = np.flatnonzero(labels == label)
        if len(idx) == 1:
            groups[idx] = next_id
            next_id += 1
            continue
        sims = similarity_matrix([fingerprint(images[i]) for i in idx], workers)
        distance = np.clip(1.0 - sims, 0.0, 2.0)
        np.fill_diagonal(distance, 0.0)
        tree = linkage(squareform(distance, checks=False), method="complete")
        local = fcluster(tree, t=1.0 - threshold, criterion="distance") - 1
        a, b = np.nonzero(np.triu(sims >= merge_threshold, k=1))
        n_clusters = int(local.max()) + 1
        links = coo_matrix((np.ones(len(a)), (local[a], local[b])), shape=(n_clusters, n_clusters))
        _, merged = connected_components(links, directed=False)
        _, local = np.unique(merged[local], return_inverse=True)
        groups[idx] = local + next_id
        next_id += int(local.max()) + 1
    return groups


def split_groups(
    groups: np.ndarray,
    strata: Sequence[str],
    seed: int = 0,
    fractions: Sequence[float] = SPLIT_FRACTIONS,
) -> np.ndarray:
    """Assign whole groups to train / val / test so that every stratum is split close to ``fractions``.

    Within a stratum the groups are shuffled (seeded), then taken largest first, and each goes to the set
    with the largest relative shortfall ``(target - filled) / target``, so with three or more groups every
    set gets at least one. A group whose members span several strata follows its first member.

    Returns
    -------
    numpy.ndarray
        str (n,): ``"train"``, ``"val"`` or ``"test"`` per image.
    """
    groups = np.asarray(groups)
    strata = np.asarray(strata)
    fractions = np.asarray(fractions, dtype=float) / np.sum(fractions)
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(groups), dtype=object)
    first_stratum = {}
    for g, s in zip(groups.tolist(), strata.tolist(), strict=True):
        first_stratum.setdefault(g, s)
    for stratum in dict.fromkeys(strata.tolist()):
        members = [g for g, s in first_stratum.items() if s == stratum]
        members = [members[i] for i in rng.permutation(len(members))]
        sizes = {g: int(np.count_nonzero(groups == g)) for g in members}
        members.sort(key=lambda g: -sizes[g])  # stable: ties keep the shuffled order
        total = sum(sizes.values())
        filled = np.zeros(len(fractions))
        for g in members:
            goal = fractions * total
            target = int(np.argmax((goal - filled) / goal))
            filled[target] += sizes[g]
            assignment[groups == g] = SPLITS[target]
    return assignment.astype(str)


def load_images(samples: Sequence[Sample]) -> list[np.ndarray]:
    """Decode every sample's image with :func:`core.images.read_image` (the product's reader)."""
    return [read_image(s.image) for s in samples]


def group_report(samples: Sequence[Sample], groups: np.ndarray, split: np.ndarray) -> dict:
    """Counts for the report: groups and group sizes per class, images per class and set."""
    classes = np.array([s.mt_class for s in samples])
    report: dict = {"n_images": len(samples), "n_groups": int(len(np.unique(groups))), "classes": {}}
    for mt_class in dict.fromkeys(classes.tolist()):
        mine = classes == mt_class
        sizes = np.bincount(np.unique(groups[mine], return_inverse=True)[1])
        report["classes"][mt_class] = {
            "images": int(mine.sum()),
            "groups": int(len(sizes)),
            "largest_group": int(sizes.max()),
            "singletons": int(np.count_nonzero(sizes == 1)),
            **{name: int(np.count_nonzero(mine & (split == name))) for name in SPLITS},
        }
    return report


def frame_run_check(samples: Sequence[Sample], groups: np.ndarray, gap: int = 150) -> dict:
    """Compare the groups with runs of nearby frame numbers (a check the grouping itself never reads).

    A run is a maximal sequence of one class's images, in frame-number order, whose neighbours lie at most
    ``gap`` frames apart. Runs are only a rough truth: the camera sometimes interleaved two regions in one
    run, and re-captured a region in a later run.

    Returns
    -------
    dict
        ``runs``; ``runs_in_one_group`` (all members in one group); ``groups_in_one_run``; ``groups``.
    """
    runs = np.full(len(samples), -1, dtype=int)
    run_id = 0
    for mt_class in dict.fromkeys(s.mt_class for s in samples):
        idx = [i for i, s in enumerate(samples) if s.mt_class == mt_class]
        idx.sort(key=lambda i: capture_number(samples[i].image))
        previous = None
        for i in idx:
            frame = capture_number(samples[i].image)[0]
            if previous is not None and (frame < 0 or frame - previous > gap):
                run_id += 1
            runs[i] = run_id
            previous = frame
        run_id += 1
    pairs = set(zip(runs.tolist(), np.asarray(groups).tolist(), strict=True))
    groups_per_run = np.bincount([r for r, _ in pairs])
    runs_per_group = np.bincount([g for _, g in pairs])
    return {
        "runs": int(len(np.unique(runs))),
        "runs_in_one_group": int(np.count_nonzero(groups_per_run == 1)),
        "groups": int(len(np.unique(groups))),
        "groups_in_one_run": int(np.count_nonzero(runs_per_group == 1)),
    }
