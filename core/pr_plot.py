"""Precision-recall curves (and other curves in [0, 1]) drawn into a PNG with OpenCV (matplotlib is not a
dependency).

The curves come from :func:`lrpseg.core.metrics.pr_curve`; this module only draws them.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

__all__ = ["plot_curves", "plot_pr_curves"]

_PALETTE_BGR = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
                (75, 86, 140), (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]
_REFERENCE_BGR = [(0, 0, 0), (128, 128, 128)]
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.45, color=(0, 0, 0),
          anchor: str = "left") -> None:
    (w, h), _ = cv2.getTextSize(text, _FONT, scale, 1)
    x, y = org
    if anchor == "center":
        x -= w // 2
    elif anchor == "right":
        x -= w
    cv2.putText(img, text, (x, y + h // 2), _FONT, scale, color, 1, cv2.LINE_AA)


def _vertical_text(img: np.ndarray, text: str, center: tuple[int, int], scale: float = 0.5) -> None:
    (w, h), base = cv2.getTextSize(text, _FONT, scale, 1)
    patch = np.full((h + base + 4, w + 4, 3), 255, np.uint8)
    cv2.putText(patch, text, (2, h + 2), _FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    patch = cv2.rotate(patch, cv2.ROTATE_90_COUNTERCLOCKWISE)
    ph, pw = patch.shape[:2]
    y0, x0 = max(center[1] - ph // 2, 0), max(center[0] - pw // 2, 0)
    region = img[y0:y0 + ph, x0:x0 + pw]
    region[...] = np.minimum(region, patch[:region.shape[0], :region.shape[1]])


def plot_pr_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], no_skill: float | None,
                   path: str | Path, size: tuple[int, int] = (640, 480), title: str | None = None) -> Path:
    """Draw precision-recall curves into a PNG with OpenCV.

    Parameters
    ----------
    curves : mapping of str to (precision, recall)
        One curve per name (e.g. the first two outputs of ``pr_curve``); at most 10 get distinct colours.
    no_skill : float or None
        Precision of the no-skill segmenter, drawn as a dashed horizontal line (None: not drawn).
    path : str or Path
        Output file (.png); its folder must exist.
    size : (int, int)
        Width and height in pixels.
    title : str, optional
        Text above the plot.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    OSError
        If OpenCV cannot write the file.
    """
    show_no_skill = no_skill is not None and bool(np.isfinite(no_skill))
    references = {f"no skill ({no_skill:.3g})": no_skill} if show_no_skill else {}
    return plot_curves(curves, path, x_label="Recall", y_label="Precision", references=references, size=size,
                       title=title)  # fmt: skip


def plot_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: str | Path,
    *,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] = (0.0, 1.0),
    references: Mapping[str, float] | None = None,
    markers: bool = False,
    size: tuple[int, int] = (640, 480),
    title: str | None = None,
) -> Path:
    """Draw curves ``name -> (y, x)`` with y in [0, 1] into a PNG with OpenCV (:func:`plot_pr_curves`' layout).

    ``references`` are dashed horizontal lines ``label -> y``; ``markers`` draws a dot at every point (for
    curves of a few measured points). Raises OSError if OpenCV cannot write ``path``.
    """
    width, height = size
    img = np.full((height, width, 3), 255, np.uint8)
    references = dict(references or {})
    names = list(references) + list(curves)
    legend_w = max((cv2.getTextSize(name, _FONT, 0.45, 1)[0][0] for name in names), default=0) + 45
    left, right, top, bottom = 70, legend_w + 15, 40 if title else 20, 55
    x0, x1, y0, y1 = left, width - right, top, height - bottom

    lo, hi = x_range

    def to_px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        xs = x0 + np.clip((x - lo) / (hi - lo), 0, 1) * (x1 - x0)
        ys = y1 - np.clip(y, 0, 1) * (y1 - y0)
        return np.round(np.stack([xs, ys], axis=1)).astype(np.int32)

    for tick in np.linspace(0, 1, 6):
        px = int(round(x0 + tick * (x1 - x0)))
        py = int(round(y1 - tick * (y1 - y0)))
        cv2.line(img, (px, y0), (px, y1), (230, 230, 230), 1)
        cv2.line(img, (x0, py), (x1, py), (230, 230, 230), 1)
        x_tick = lo + tick * (hi - lo)
        _text(img, f"{x_tick:.1f}" if hi - lo <= 1 else f"{x_tick:g}", (px, y1 + 14), anchor="center")
        _text(img, f"{tick:.1f}", (x0 - 8, py), anchor="right")
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    _text(img, x_label, ((x0 + x1) // 2, height - 15), scale=0.55, anchor="center")
    _vertical_text(img, y_label, (18, (y0 + y1) // 2), scale=0.55)
    if title:
        _text(img, title, (width // 2, 18), scale=0.55, anchor="center")

    legend: list[tuple[str, tuple[int, int, int], bool]] = []
    for i, (name, value) in enumerate(references.items()):
        color = _REFERENCE_BGR[i % len(_REFERENCE_BGR)]
        py = int(round(y1 - min(max(value, 0.0), 1.0) * (y1 - y0)))
        for xs in range(x0, x1, 12):
            cv2.line(img, (xs, py), (min(xs + 6, x1), py), color, 1, cv2.LINE_AA)
        legend.append((name, color, True))
    for i, (name, (ys, xs)) in enumerate(curves.items()):
        color = _PALETTE_BGR[i % len(_PALETTE_BGR)]
        pts = to_px(np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64))
        if len(pts):
            cv2.polylines(img, [pts[:, None, :]], False, color, 2, cv2.LINE_AA)
        for point in pts if markers else ():
            cv2.circle(img, (int(point[0]), int(point[1])), 4, color, -1, cv2.LINE_AA)
        legend.append((name, color, False))

    lx = x1 + 15
    ly = y0 + 8
    for name, color, dashed in legend:
        if dashed:
            cv2.line(img, (lx, ly), (lx + 8, ly), color, 1)
            cv2.line(img, (lx + 14, ly), (lx + 22, ly), color, 1)
        else:
            cv2.line(img, (lx, ly), (lx + 22, ly), color, 2, cv2.LINE_AA)
        _text(img, name, (lx + 30, ly))
        ly += 18
    path = Path(path)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write the PR plot to {path}")
    return path
