"""Synthetic relevance maps with a known damage mask, for tests, benchmarks and demos.

A map is background relevance (signed, spatially correlated noise) plus positive relevance on a damage
region (a disk or a thin curve, like blow-holes and cracks). ``interior`` < 1 imitates the LRP habit seen in
the paper (§4.1) of giving the border of a small damage much more relevance than its inside.
"""

from __future__ import annotations

import cv2
import numpy as np

KINDS = ("blob", "curve", "none")
BACKGROUNDS = ("laplace", "gaussian", "beta")


def _damage_mask(shape: tuple[int, int], kind: str, size: float | None,
                 rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    canvas = np.zeros(shape, dtype=np.uint8)
    if kind == "blob":
        radius = max(1, round(size if size is not None else 0.08 * min(h, w)))
        cy = int(rng.integers(h // 4, max(h // 4 + 1, 3 * h // 4)))
        cx = int(rng.integers(w // 4, max(w // 4 + 1, 3 * w // 4)))
        cv2.circle(canvas, (cx, cy), radius, 1, thickness=-1)
    elif kind == "curve":
        thickness = max(1, round(size if size is not None else 3))
        n = 40
        step = 0.8 * min(h, w) / n
        angle = rng.uniform(0, 2 * np.pi)
        points = [np.array([w / 2, h / 2]) - 0.4 * min(h, w) * np.array([np.cos(angle), np.sin(angle)])]
        for _ in range(n):
            angle += rng.normal(0, 0.25)
            points.append(points[-1] + step * np.array([np.cos(angle), np.sin(angle)]))
        poly = np.round(np.array(points)).astype(np.int32)[:, None, :]
        cv2.polylines(canvas, [poly], False, 1, thickness=thickness)
    elif kind != "none":
        raise ValueError(f"unknown kind {kind!r}; choose one of {KINDS}")
    return canvas.astype(bool)


def synthetic_relevance(shape: tuple[int, int] = (224, 224), kind: str = "blob", seed: int = 0, *,
                        size: float | None = None, noise: float = 0.05, contrast: float = 1.0,
                        interior: float = 1.0, background: str = "laplace",
                        smooth: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Draw a relevance map and its damage mask.

    Parameters
    ----------
    shape : (int, int)
        (H, W).
    kind : {"blob", "curve", "none"}
        Disk of radius ``size`` (default 8 % of the short side), a random smooth curve ``size`` pixels thick
        (default 3), or no damage.
    seed : int
        Seed of ``numpy.random.default_rng``.
    noise : float
        Standard deviation of the background relevance (after smoothing).
    contrast : float
        Mean relevance added on the damage (multiplied by Gamma(8, 1/8) noise of mean 1).
    interior : float
        Fraction of ``contrast`` inside the damage; its one-pixel border always gets the full contrast.
    background : {"laplace", "gaussian", "beta"}
        Laplace or Gaussian noise of mean 0 (signed, like LRP), or Beta(2, 8) noise (positive only).
    smooth : float
        Sigma in pixels of the Gaussian blur that makes the background spatially correlated (0: none).

    Returns
    -------
    relevance : np.ndarray
        float64 (H, W).
    truth : np.ndarray
        bool (H, W) damage mask.
    """
    rng = np.random.default_rng(seed)
    if background == "laplace":
        bg = rng.laplace(0.0, 1.0, shape)
    elif background == "gaussian":
        bg = rng.standard_normal(shape)
    elif background == "beta":
        bg = rng.beta(2.0, 8.0, shape)
    else:
        raise ValueError(f"unknown background {background!r}; choose one of {BACKGROUNDS}")
    if smooth > 0:
        bg = cv2.GaussianBlur(bg, (0, 0), smooth, borderType=cv2.BORDER_REFLECT)
    std = float(bg.std())
    if background == "beta":
        bg = bg * (noise / std) if std > 0 else bg
    else:
        bg = (bg - bg.mean()) * (noise / std) if std > 0 else bg
    truth = _damage_mask(shape, kind, size, rng)
    if truth.any():
        eroded = cv2.erode(truth.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        level = np.where(truth & ~eroded, 1.0, interior) * truth
        bg = bg + contrast * level * rng.gamma(8.0, 1.0 / 8.0, shape)
    return bg, truth
