"""Synthetic demo data: textured surfaces like magnetic tiles or sewer pipes, some with cracks and holes.

Every image is a grayscale surface: a base grey level, smooth low-frequency shading (a random gradient plus a
blurred coarse noise field), faint directional machining streaks and fine grain, all drawn afresh per image.
Damaged images carry thin curved dark cracks (cubic Bézier curves with a small sinusoidal wiggle, 1-3 px
wide, sometimes with a branch) and/or small dark elliptic holes. Damage darkens the surface by 20-45 %,
clearly above the grain but far from black, and covers 0.5-5 % of the image; it lies inside the central
``min(size, 224)`` square, so the evaluation centre crop of a 224-input model always sees it.

The ground-truth mask of every image is written next to it (0/255 PNG, empty for undamaged images), so the
demo can score segmentations as well as train the classifier. Everything is drawn from
``numpy.random.default_rng([seed, class, index])``: one seed gives the same files on every machine, and
changing the number of images does not change the others.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from lrpseg.core.labels import DAMAGED, UNDAMAGED, write_labels

__all__ = ["make_demo", "make_sample"]

_COVERAGE = (0.005, 0.05)
_CENTRE = 224


def _surface(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured grayscale surface in [0, 1] (float32, size × size)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * xx + np.sin(angle) * yy - 0.5) * rng.uniform(0.04, 0.12)
    coarse = rng.normal(size=(4, 4)).astype(np.float32)
    shading = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC) * rng.uniform(0.02, 0.05)
    streaks = rng.normal(size=(size, size)).astype(np.float32)
    streaks = cv2.GaussianBlur(streaks, (0, 0), sigmaX=size / 6, sigmaY=0.8) * rng.uniform(0.3, 1.0)
    if rng.random() < 0.5:
        streaks = streaks.T
    grain = cv2.GaussianBlur(rng.normal(size=(size, size)).astype(np.float32), (0, 0), 0.6)
    grain *= rng.uniform(0.015, 0.035) / max(float(grain.std()), 1e-6)
    return rng.uniform(0.42, 0.62) + gradient + shading + streaks * 0.01 + grain


def _bezier(rng: np.random.Generator, size: int, low: float, high: float) -> np.ndarray:
    """Points (x, y) of a curved crack path inside [low, high]²."""
    span = high - low
    length = rng.uniform(0.35, 0.8) * span
    start = rng.uniform(low, high, size=2)
    direction = rng.uniform(0, 2 * np.pi)
    end = start + length * np.array([np.cos(direction), np.sin(direction)])
    normal = np.array([-np.sin(direction), np.cos(direction)])
    c1 = start + (end - start) / 3 + normal * rng.normal(0, 0.25) * length
    c2 = start + 2 * (end - start) / 3 + normal * rng.normal(0, 0.25) * length
    t = np.linspace(0, 1, max(16, int(length)))[:, None]
    points = (1 - t) ** 3 * start + 3 * (1 - t) ** 2 * t * c1 + 3 * (1 - t) * t**2 * c2 + t**3 * end
    wiggle = rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * rng.uniform(2, 6) * t + rng.uniform(0, 2 * np.pi))
    points = points + wiggle * normal
    # Move (and if need be shrink) the whole curve into the square; clipping would draw lines along its edges.
    extent = float((points.max(axis=0) - points.min(axis=0)).max())
    if extent > span:
        centre = points.mean(axis=0)
        points = centre + (points - centre) * (span / extent)
    shift = np.maximum(low - points.min(axis=0), 0) - np.maximum(points.max(axis=0) - high, 0)
    return points + shift


def _draw_crack(rng: np.random.Generator, mask: np.ndarray, low: float, high: float) -> None:
    points = _bezier(rng, mask.shape[0], low, high)
    thickness = int(rng.integers(1, 4))
    cv2.polylines(mask, [np.rint(points * 16).astype(np.int32)], False, 255, thickness, cv2.LINE_8, shift=4)
    if rng.random() < 0.3:  # a short branch from somewhere along the crack
        origin = points[rng.integers(len(points) // 4, 3 * len(points) // 4)]
        angle = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(0.1, 0.25) * (high - low)
        t = np.linspace(0, 1, 24)[:, None]
        bend = np.sin(np.pi * t) * rng.normal(0, 0.2) * length
        branch = origin + t * length * np.array([np.cos(angle), np.sin(angle)])
        branch += bend * np.array([-np.sin(angle), np.cos(angle)])
        if branch.min() < low or branch.max() > high:
            return
        cv2.polylines(
            mask,
            [np.rint(branch * 16).astype(np.int32)],
            False,
            255,
            max(1, thickness - 1),
            cv2.LINE_8,
            shift=4,
        )


def _draw_hole(rng: np.random.Generator, mask: np.ndarray, low: float, high: float) -> None:
    scale = mask.shape[0] / 128
    margin = 6 * scale
    centre = rng.uniform(low + margin, high - margin, size=2)
    axes = np.maximum(1, np.rint(rng.uniform(2, 6, size=2) * max(1.0, scale))).astype(int)
    cv2.ellipse(
        mask,
        (int(centre[0]), int(centre[1])),
        (int(axes[0]), int(axes[1])),
        rng.uniform(0, 180),
        0,
        360,
        255,
        -1,
        cv2.LINE_8,
    )


def make_sample(rng: np.random.Generator, size: int, damaged: bool) -> tuple[np.ndarray, np.ndarray]:
    """Draw one demo image and its mask.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of all randomness.
    size : int
        Side length in pixels (at least 32).
    damaged : bool
        Draw cracks and/or holes.

    Returns
    -------
    image : numpy.ndarray
        uint8 (size, size) grayscale.
    mask : numpy.ndarray
        uint8 (size, size), 255 on damage, else 0 (all 0 when undamaged).
    """
    if size < 32:
        raise ValueError(f"demo images need size >= 32, got {size}")
    surface = _surface(rng, size)
    mask = np.zeros((size, size), np.uint8)
    if damaged:
        side = min(size, _CENTRE)
        low = (size - side) / 2 + 4
        high = low + side - 9
        kind = rng.choice(["crack", "holes", "both"], p=[0.5, 0.25, 0.25])
        while True:
            mask[:] = 0
            if kind in ("crack", "both"):
                _draw_crack(rng, mask, low, high)
            if kind in ("holes", "both"):
                for _ in range(int(rng.integers(1, 4))):
                    _draw_hole(rng, mask, low, high)
            while (mask > 0).mean() < _COVERAGE[0]:
                (_draw_crack if rng.random() < 0.6 else _draw_hole)(rng, mask, low, high)
            if (mask > 0).mean() <= _COVERAGE[1]:
                break
        # Darken a slightly soft version of the mask, so edges look worn rather than cut out.
        profile = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 0.7)
        profile = np.maximum(profile / max(float(profile.max()), 1e-6), mask / 255.0)
        surface = surface * (1 - rng.uniform(0.2, 0.45) * profile)
    image = np.rint(np.clip(surface, 0, 1) * 255).astype(np.uint8)
    return image, mask


def _write_png(path: Path, array: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"could not encode {path}")
    path.write_bytes(buf.tobytes())


def make_demo(
    out_dir: str | os.PathLike[str],
    n_damaged: int = 24,
    n_undamaged: int = 24,
    size: int = 128,
    seed: int = 0,
) -> Path:
    """Write a small synthetic data set with image-level labels and pixel masks.

    Layout::

        out_dir/images/damaged/damaged_000.png ...
        out_dir/images/undamaged/undamaged_000.png ...
        out_dir/masks/<stem>.png        (0/255, one per image, empty for undamaged)
        out_dir/labels.csv              (image,label; paths relative to out_dir/images)

    Earlier demo files in these folders (``damaged_*.png`` / ``undamaged_*.png``) are replaced; other files
    are left alone.

    Parameters
    ----------
    out_dir : path-like
        Created if missing.
    n_damaged, n_undamaged : int
        Number of images per class.
    size : int
        Side length of the square images.
    seed : int
        Same seed, same files.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    out = Path(out_dir)
    folders = {DAMAGED: out / "images" / DAMAGED, UNDAMAGED: out / "images" / UNDAMAGED}
    masks = out / "masks"
    for folder in (*folders.values(), masks):
        folder.mkdir(parents=True, exist_ok=True)
        for stale in [*folder.glob("damaged_*.png"), *folder.glob("undamaged_*.png")]:
            stale.unlink()
    labels = {}
    for label, count in ((DAMAGED, n_damaged), (UNDAMAGED, n_undamaged)):
        digits = max(3, len(str(count - 1)))
        for index in range(count):
            rng = np.random.default_rng([seed, int(label == DAMAGED), index])
            image, mask = make_sample(rng, size, damaged=label == DAMAGED)
            stem = f"{label}_{index:0{digits}d}"
            _write_png(folders[label] / f"{stem}.png", image)
            _write_png(masks / f"{stem}.png", mask)
            labels[f"{label}/{stem}.png"] = label
    write_labels(out / "labels.csv", labels)
    return out
