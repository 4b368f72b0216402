"""Editing a binary mask by hand: brush and eraser strokes, fill-holes, clear, replace, undo and redo.

Qt-free, so the viewer, the tests and the latency benchmark share one implementation. The mask lives at the
image's own resolution; a stroke is a polyline through the pixels the pointer crossed, and it paints (or
erases) exactly the pixels whose centres lie within ``size / 2`` of that polyline, with the pointer's
positions snapped to the pixel under it (so a size-1 brush paints the pixel under the pointer, and nothing
else). :func:`stroke_footprint` is that rule for one segment.

History. Every stroke, fill, clear or replacement is one step. A step keeps only the bounding box it changed,
before and after (a stroke over a 2048² mask costs its bounding box, not 4 MiB), so undo and redo restore the
mask byte for byte. The oldest steps are forgotten beyond ``history_bytes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["MIN_SIZE", "MAX_SIZE", "Box", "MaskEdit", "stroke_footprint"]

MIN_SIZE = 1
MAX_SIZE = 512
HISTORY_BYTES = 256 << 20

Box = tuple[int, int, int, int]
"""``(y0, y1, x0, x1)``: the rows ``y0:y1`` and columns ``x0:x1`` of a change."""


def clamp_size(size: float) -> int:
    """A brush size (diameter in image pixels) within :data:`MIN_SIZE` .. :data:`MAX_SIZE`."""
    return int(np.clip(round(size), MIN_SIZE, MAX_SIZE))


def stroke_footprint(
    shape: tuple[int, int], start: tuple[int, int], end: tuple[int, int], size: int
) -> tuple[Box, np.ndarray] | None:
    """Pixels within ``size / 2`` of the segment from pixel ``start`` to pixel ``end`` (``(x, y)`` indices).

    Returns
    -------
    (box, footprint) or None
        ``footprint`` is a boolean array over ``box`` (clipped to ``shape``); None when the segment's
        neighbourhood lies outside the image.
    """
    height, width = shape
    radius = size / 2.0
    reach = int(math.floor(radius + 1e-9))
    (x0, y0), (x1, y1) = start, end
    bx0, bx1 = max(0, min(x0, x1) - reach), min(width, max(x0, x1) + reach + 1)
    by0, by1 = max(0, min(y0, y1) - reach), min(height, max(y0, y1) + reach + 1)
    if bx0 >= bx1 or by0 >= by1:
        return None
    ys = np.arange(by0, by1, dtype=np.float64)[:, None]
    xs = np.arange(bx0, bx1, dtype=np.float64)[None, :]
    dx, dy = float(x1 - x0), float(y1 - y0)
    length2 = dx * dx + dy * dy
    if length2 == 0:
        t = 0.0
    else:
        t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / length2, 0.0, 1.0)
    distance2 = (xs - (x0 + t * dx)) ** 2 + (ys - (y0 + t * dy)) ** 2
    # The tolerance keeps pixels exactly on the circle (e.g. size 2: the four neighbours) in the footprint.
    return (by0, by1, bx0, bx1), distance2 <= radius * radius + 1e-9


@dataclass
class _Step:
    box: Box
    before: np.ndarray
    after: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.before.nbytes + self.after.nbytes


def _union(a: Box | None, b: Box) -> Box:
    if a is None:
        return b
    return min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3])


def _changed_box(old: np.ndarray, new: np.ndarray) -> Box | None:
    diff = old != new
    rows, cols = np.flatnonzero(diff.any(axis=1)), np.flatnonzero(diff.any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


class MaskEdit:
    """One image's mask under edit.

    Parameters
    ----------
    mask : (H, W) array
        The starting mask (anything non-zero counts as mask); copied.
    history_bytes : int
        Memory kept for undo; the oldest steps are forgotten beyond it.

    Attributes
    ----------
    mask : (H, W) bool array
        The current mask. Edited in place (a viewer may show it by reference); replace it only through the
        methods here, which keep the history.
    """

    def __init__(self, mask: np.ndarray, history_bytes: int = HISTORY_BYTES) -> None:
        self.mask = np.array(mask, dtype=bool, copy=True)
        if self.mask.ndim != 2:
            raise ValueError(f"a mask must be two-dimensional, got shape {self.mask.shape}")
        self.history_bytes = history_bytes
        self._undo: list[_Step] = []
        self._redo: list[_Step] = []
        self._stroke_value: bool | None = None
        self._stroke_size = 1
        self._stroke_last: tuple[int, int] | None = None
        self._stroke_box: Box | None = None
        self._snapshot: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the mask."""
        return self.mask.shape

    # ------------------------------------------------------------------ strokes
    def begin_stroke(self, value: bool, size: int) -> None:
        """Start a stroke that sets pixels to ``value`` (True: brush, False: eraser) with diameter ``size``."""
        if self._stroke_value is not None:
            self.end_stroke()
        self._stroke_value = bool(value)
        self._stroke_size = clamp_size(size)
        self._stroke_last = None
        self._stroke_box = None
        self._snapshot = self.mask.copy()

    def add_point(self, x: float, y: float) -> Box | None:
        """Extend the stroke to image position ``(x, y)`` (continuous: pixel ``(i, j)`` spans ``[i, i + 1)``);
        return the box it changed, or None."""
        if self._stroke_value is None:
            raise RuntimeError("add_point outside a stroke: call begin_stroke first")
        point = (int(math.floor(x)), int(math.floor(y)))
        start = self._stroke_last if self._stroke_last is not None else point
        self._stroke_last = point
        found = stroke_footprint(self.shape, start, point, self._stroke_size)
        if found is None:
            return None
        box, footprint = found
        region = self.mask[box[0] : box[1], box[2] : box[3]]
        region[footprint] = self._stroke_value
        self._stroke_box = _union(self._stroke_box, box)
        return box

    def end_stroke(self) -> bool:
        """Finish the stroke: one undo step if it changed anything; return whether it did."""
        if self._stroke_value is None:
            return False
        box, snapshot = self._stroke_box, self._snapshot
        self._stroke_value, self._stroke_box, self._snapshot, self._stroke_last = None, None, None, None
        if box is None:
            return False
        before = snapshot[box[0] : box[1], box[2] : box[3]]
        after = self.mask[box[0] : box[1], box[2] : box[3]]
        if np.array_equal(before, after):
            return False
        self._push(_Step(box, before.copy(), after.copy()))
        return True

    @property
    def in_stroke(self) -> bool:
        """Whether a stroke is under way."""
        return self._stroke_value is not None

    # ------------------------------------------------------------------ whole-mask steps
    def replace(self, mask: np.ndarray) -> Box | None:
        """Make ``mask`` the current mask as one undo step; return the box that changed (None: no change)."""
        new = np.asarray(mask, dtype=bool)
        if new.shape != self.shape:
            raise ValueError(f"mask shape {new.shape} differs from the edited mask's {self.shape}")
        self.end_stroke()
        box = _changed_box(self.mask, new)
        if box is None:
            return None
        y0, y1, x0, x1 = box
        step = _Step(box, self.mask[y0:y1, x0:x1].copy(), new[y0:y1, x0:x1].copy())
        self.mask[y0:y1, x0:x1] = step.after
        self._push(step)
        return box

    def clear(self) -> Box | None:
        """Empty the mask (one undo step)."""
        return self.replace(np.zeros(self.shape, dtype=bool))

    def fill_holes(self) -> Box | None:
        """Fill every background region the mask encloses completely (one undo step)."""
        return self.replace(ndimage.binary_fill_holes(self.mask))

    # ------------------------------------------------------------------ history
    def _push(self, step: _Step) -> None:
        self._undo.append(step)
        self._redo.clear()
        total = sum(s.nbytes for s in self._undo)
        while total > self.history_bytes and len(self._undo) > 1:
            total -= self._undo.pop(0).nbytes

    def can_undo(self) -> bool:
        """Whether a step can be undone."""
        return bool(self._undo)

    def can_redo(self) -> bool:
        """Whether an undone step can be redone."""
        return bool(self._redo)

    def undo(self) -> Box | None:
        """Revert the latest step; return the box it touched (None: nothing to undo)."""
        self.end_stroke()
        if not self._undo:
            return None
        step = self._undo.pop()
        y0, y1, x0, x1 = step.box
        self.mask[y0:y1, x0:x1] = step.before
        self._redo.append(step)
        return step.box

    def redo(self) -> Box | None:
        """Re-apply the latest undone step; return the box it touched (None: nothing to redo)."""
        self.end_stroke()
        if not self._redo:
            return None
        step = self._redo.pop()
        y0, y1, x0, x1 = step.box
        self.mask[y0:y1, x0:x1] = step.after
        self._undo.append(step)
        return step.box

    def steps(self) -> int:
        """Steps that can be undone."""
        return len(self._undo)
