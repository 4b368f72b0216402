"""The image viewer: the image, a signed relevance heatmap and a mask overlay in one pyqtgraph ViewBox.

Both overlays are uint8 images coloured by a 256-entry lookup table, so Qt draws them as indexed images. The
score map is converted to uint8 once per image (:meth:`ImageViewer.set_score`); moving the threshold only
swaps the mask's lookup table (entries at or above the threshold coloured, the rest transparent), which
keeps a slider tick within a few milliseconds even at 2048² (measured offscreen: 0.7 ms per tick, against
7.6 ms for recomputing and re-setting the mask image). The outline style needs the
mask's border, which no lookup table can give: a pixel is on the border when it is in the mask and the lowest
score in its neighbourhood is not, so the neighbourhood minimum is computed once per score map
(:func:`outline_minimum`) and a tick only compares two uint8 images with the threshold. Zoomed out, both
styles work on every ``stride``-th pixel only (image pixels per screen pixel), which is all that Qt's
nearest-neighbour scaling shows.

A hand-corrected mask (:meth:`ImageViewer.set_manual_mask`) replaces the thresholded score while it is shown;
the mask editor changes it in place and reports the changed box (:meth:`ImageViewer.manual_mask_changed`), so
a brush stroke re-renders the overlay without recomputing anything else.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pyqtgraph as pg
from lrpseg.core.segment import score_to_uint8
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QGraphicsItem

HEATMAP_POSITIVE = (255, 40, 40)  # evidence for "damaged"
HEATMAP_NEGATIVE = (40, 130, 255)  # evidence against
HEATMAP_GAMMA = 0.5
HEATMAP_OPACITY = 0.75
MASK_COLOUR = (255, 214, 0)
MASK_OPACITY = 0.45
ZERO_INDEX = 128


def heatmap_lut(
    positive: tuple[int, int, int] = HEATMAP_POSITIVE,
    negative: tuple[int, int, int] = HEATMAP_NEGATIVE,
    gamma: float = HEATMAP_GAMMA,
) -> np.ndarray:
    """256 RGBA entries for signed relevance: index 128 is zero and fully transparent; above it ``positive``,
    below it ``negative``, with opacity ``(|relevance| / scale) ** gamma``.

    One saturated colour per sign, so the magnitude is carried by opacity alone: a diverging colour map that
    fades to white (or darkens) towards zero left LRP's maps, whose relevance is concentrated on few pixels,
    hard to see on grey images. ``gamma < 1`` lifts the many moderately relevant pixels into view.
    """
    index = np.arange(256)
    distance = np.clip(np.abs(index - ZERO_INDEX) / (255 - ZERO_INDEX), 0, 1)
    colours = np.where((index >= ZERO_INDEX)[:, None], np.array(positive), np.array(negative))
    return np.column_stack([colours, distance**gamma * 255]).round().astype(np.uint8)


def relevance_to_uint8(relevance: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Map signed relevance to uint8 with zero at 128, symmetric about zero; return it and the scale used.

    The scale is the 99.9th percentile of ``|relevance|`` over the explained pixels, so one hot pixel does not
    wash the rest of the map out.
    """
    values = np.abs(relevance[valid] if valid is not None and valid.any() else relevance)
    scale = float(np.percentile(values, 99.9)) if values.size else 0.0
    if not math.isfinite(scale) or scale <= 0:
        scale = float(values.max()) if values.size and float(values.max()) > 0 else 1.0
    scaled = np.clip(np.nan_to_num(relevance / scale), -1.0, 1.0)
    out = np.rint(ZERO_INDEX + scaled * 127).astype(np.uint8)
    return out, scale


def threshold_index(threshold: float) -> int:
    """The first uint8 score index counted as mask at ``threshold`` (index i shows score i/255)."""
    return int(np.clip(math.ceil(threshold * 255.0 - 1e-6), 0, 256))


def outline_width(shape: tuple[int, ...]) -> int:
    """Half-width in pixels of the mask outline for an image of ``shape`` (about 1/400 of its long side)."""
    return max(1, round(max(shape[:2]) / 400))


def outline_minimum(index: np.ndarray) -> np.ndarray:
    """The lowest uint8 value in each pixel's :func:`outline_width` neighbourhood (outside counts as high)."""
    width = outline_width(index.shape)
    return cv2.erode(index, np.ones((2 * width + 1, 2 * width + 1), np.uint8))


class OutlineRenderer:
    """The outline of ``index >= first`` for one uint8 score map, per threshold tick.

    A pixel is on the outline when it is in the mask and the lowest score in its neighbourhood is not; the
    neighbourhood minimum is computed once (:func:`outline_minimum`), so a tick is two uint8 comparisons (as
    OpenCV thresholds) and an AND, into buffers allocated once: fresh 4 MiB arrays per tick at 2048² cost
    more in page faults than the arithmetic.

    ``stride`` renders every ``stride``-th pixel of each row and column only: the outline (of the full-resolution
    score and minimum) at the pixels a nearest-neighbour zoom-out by that factor shows.
    """

    def __init__(self, index: np.ndarray) -> None:
        self.index = index
        self.minimum = outline_minimum(index)
        self._stride = 0
        self._use_stride(1)

    def _use_stride(self, stride: int) -> None:
        if stride != self._stride:
            self._stride = stride
            self._index = np.ascontiguousarray(self.index[::stride, ::stride])
            self._minimum = np.ascontiguousarray(self.minimum[::stride, ::stride])
            self._inside = np.empty_like(self._index)
            self._border = np.empty_like(self._index)

    def render(self, first: int, stride: int = 1) -> np.ndarray:
        """0/1 outline for :func:`threshold_index` ``first`` (0..256) at every ``stride``-th pixel; the returned
        buffer is reused."""
        self._use_stride(stride)
        cv2.threshold(self._index, first - 1, 1, cv2.THRESH_BINARY, dst=self._inside)
        cv2.threshold(self._minimum, first - 1, 1, cv2.THRESH_BINARY_INV, dst=self._border)
        return cv2.bitwise_and(self._inside, self._border, dst=self._inside)


def mask_lut(
    threshold: float, colour: tuple[int, int, int] = MASK_COLOUR, enabled: bool = True
) -> np.ndarray:
    """256 RGBA entries: opaque ``colour`` from :func:`threshold_index` upwards, transparent below."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    if enabled:
        lut[threshold_index(threshold) :] = (*colour, 255)
    return lut


class ImageViewer(pg.GraphicsView):
    """Zoomable, pannable view of one image with heatmap and mask overlays.

    Signals
    -------
    hovered(x, y)
        Image pixel under the mouse (``-1, -1`` when outside).
    image_changed()
        :meth:`set_image` showed another image (or none); a hand-corrected mask goes with the old one.
    """

    hovered = Signal(int, int)
    image_changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent, background=QColor("#0d1117"))
        self.view = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.view.setDefaultPadding(0.01)
        self.setCentralItem(self.view)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.heatmap_item = pg.ImageItem(axisOrder="row-major")
        self.mask_item = pg.ImageItem(axisOrder="row-major")
        for z, item in enumerate((self.image_item, self.heatmap_item, self.mask_item)):
            item.setZValue(z)
            self.view.addItem(item)
        self.heatmap_item.setLookupTable(heatmap_lut())
        # The image and the heatmap do not change while the slider moves: cache them at screen resolution so
        # a tick repaints one full-size indexed image (the mask) instead of three.
        for item in (self.image_item, self.heatmap_item):
            item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self.message = pg.TextItem("", color="#c9d1d9", anchor=(0.5, 0.5))
        self.message.setZValue(10)
        self.view.addItem(self.message, ignoreBounds=True)
        self.heatmap_visible = True
        self.mask_visible = True
        self.mask_style = "fill"
        self.mask_enabled = True
        self.threshold = 0.5
        self._score_index: np.ndarray | None = None
        self._outline_renderer: OutlineRenderer | None = None
        self._mask_stride = 1
        self._manual: np.ndarray | None = None
        self._manual_outline: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None
        self.heatmap_scale = 1.0
        self.set_heatmap_opacity(HEATMAP_OPACITY)
        self.set_mask_opacity(MASK_OPACITY)
        self.scene().sigMouseMoved.connect(self._mouse_moved)
        self.view.sigTransformChanged.connect(self._view_transform_changed)

    # ----------------------------------------------------------------- image
    def set_image(self, rgb: np.ndarray | None, message: str = "") -> None:
        """Show an (H, W, 3) uint8 image (or nothing) and clear the overlays; fit it into the view."""
        self._manual = self._manual_outline = None
        self.clear_overlays()
        if rgb is None:
            self.image_item.clear()
            self._shape = None
            self.show_message(message or "No image")
            self.fit()  # centres the message; the last image's range would put it in a corner
            self.image_changed.emit()
            return
        self.image_item.setImage(rgb, autoLevels=False, levels=None)
        new_shape = rgb.shape[:2]
        refit = new_shape != self._shape
        self._shape = new_shape
        self.show_message(message)
        if refit:
            self.fit()
        self.image_changed.emit()

    def image_shape(self) -> tuple[int, int] | None:
        """``(height, width)`` of the image on screen, or None."""
        return self._shape

    def show_message(self, text: str) -> None:
        """Centre a short text over the view (empty hides it)."""
        self.message.setText(text)
        self.message.setVisible(bool(text))
        if self._shape is not None:
            height, width = self._shape
            self.message.setPos(QPointF(width / 2, height / 2))
        else:
            self.message.setPos(QPointF(0, 0))

    def fit(self) -> None:
        """Zoom so the whole image is visible."""
        if self._shape is not None:
            height, width = self._shape
            self.view.setRange(xRange=(0, width), yRange=(0, height), padding=0.01)
        else:
            self.view.setRange(xRange=(-1, 1), yRange=(-1, 1))

    def clear_overlays(self) -> None:
        """Remove heatmap and mask (e.g. while the next image's analysis runs)."""
        self.heatmap_item.clear()
        self.mask_item.clear()
        self._score_index = self._outline_renderer = None
        if self._manual is not None:
            self._render_mask(new_image=True)

    # ----------------------------------------------------------------- overlays
    def set_relevance(self, relevance: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Show signed relevance as a diverging heatmap: a float map is converted with
        :func:`relevance_to_uint8`; a uint8 map is taken as already converted (e.g. on a worker thread)."""
        if relevance.dtype == np.uint8:
            index = relevance
        else:
            index, self.heatmap_scale = relevance_to_uint8(relevance, valid)
        self.heatmap_item.setImage(index, autoLevels=False, levels=None)
        self.heatmap_item.setVisible(self.heatmap_visible)

    def set_score(self, score: np.ndarray, threshold: float, enabled: bool = True) -> None:
        """Show the mask of ``score >= threshold``; ``enabled=False`` keeps it empty (e.g. undamaged).

        A float score in [0, 1] is converted with :func:`lrpseg.core.segment.score_to_uint8`; a uint8 map is
        taken as converted.
        """
        self._score_index = score if score.dtype == np.uint8 else score_to_uint8(score)
        self._outline_renderer = None
        self.mask_enabled = enabled
        self.threshold = float(threshold)
        self._render_mask(new_image=True)

    def set_threshold(self, threshold: float) -> None:
        """Move the mask threshold: a new lookup table in fill style, a new edge image in outline style."""
        self.threshold = float(threshold)
        if self._score_index is not None and self._manual is None:
            self._render_mask(new_image=False)

    def _render_mask(self, new_image: bool) -> None:
        if self._manual is not None:
            self._render_manual()
            return
        if self._score_index is None:
            return
        if self.mask_style == "outline":
            if self._outline_renderer is None:
                self._outline_renderer = OutlineRenderer(self._score_index)
            self._mask_stride = self._screen_stride()
            self._show_mask(self._outline_renderer.render(threshold_index(self.threshold), self._mask_stride))
            self.mask_item.setLookupTable(self._outline_lut())
        else:
            stride = self._screen_stride()
            if new_image or stride != self._mask_stride:
                self._mask_stride = stride
                self._show_mask(np.ascontiguousarray(self._score_index[::stride, ::stride]))
            self.mask_item.setLookupTable(mask_lut(self.threshold, enabled=self.mask_enabled))
        self.mask_item.setVisible(self.mask_visible)

    def _show_mask(self, image: np.ndarray) -> None:
        """Set the mask item's image, stretched over the whole image (it may be a strided copy)."""
        self.mask_item.setImage(image, autoLevels=False, levels=None)
        height, width = self._shape or image.shape[:2]
        self.mask_item.setRect(QRectF(0, 0, width, height))

    def _screen_stride(self) -> int:
        """Image pixels per screen pixel, rounded down (at least 1): the mask overlay needs no finer raster.

        Zoomed out to fit the viewer, Qt's nearest-neighbour scaling shows only one pixel in ``stride²`` of
        the overlay, but a tick at 2048² thresholded (outline) and converted all 4 M of them.
        """
        try:
            pixel = min(self.view.viewPixelSize())
        except (ArithmeticError, TypeError, AttributeError):  # a view not laid out yet has no pixel size
            return 1
        return max(1, int(pixel)) if math.isfinite(pixel) else 1

    def _view_transform_changed(self, *_args) -> None:
        if self._manual is None and self._score_index is not None and self._screen_stride() != self._mask_stride:
            self._render_mask(new_image=False)

    def _outline_lut(self, enabled: bool | None = None) -> np.ndarray:
        lut = np.zeros((256, 4), dtype=np.uint8)
        if self.mask_enabled if enabled is None else enabled:
            lut[1] = (*MASK_COLOUR, 255)
        return lut

    # ----------------------------------------------------------------- hand-corrected mask
    def set_manual_mask(self, mask: np.ndarray | None) -> None:
        """Show ``mask`` (bool, the image's size) instead of the thresholded score, or go back with None.

        The array is kept by reference: edit it in place and call :meth:`manual_mask_changed`.
        """
        if mask is not None and (mask.dtype != np.bool_ or mask.shape != self._shape):
            raise ValueError(f"a manual mask must be a boolean array of the image's shape {self._shape}")
        self._manual = None if mask is None else mask.view(np.uint8)
        self._manual_outline = None
        self._render_mask(new_image=True)

    def manual_mask(self) -> np.ndarray | None:
        """The hand-corrected mask on screen (bool), or None."""
        return None if self._manual is None else self._manual.view(np.bool_)

    def manual_mask_changed(self, box: tuple[int, int, int, int] | None = None) -> None:
        """Repaint after the manual mask changed in place; ``box`` = ``(y0, y1, x0, x1)`` (None: anywhere)."""
        if self._manual is None:
            return
        if self.mask_style == "outline" and self._manual_outline is not None and box is not None:
            # The outline of a pixel depends on the mask within ``width`` of it: recompute the box grown by
            # ``width`` from the mask grown by twice that (cv2.erode treats the image's outside as mask, like
            # the full computation, but a cut inside the image would not be: keep away from those edges).
            width = outline_width(self._manual.shape)
            height, full_width = self._manual.shape
            ry0, ry1 = max(0, box[0] - 2 * width), min(height, box[1] + 2 * width)
            rx0, rx1 = max(0, box[2] - 2 * width), min(full_width, box[3] + 2 * width)
            uy0, uy1 = max(0, box[0] - width), min(height, box[1] + width)
            ux0, ux1 = max(0, box[2] - width), min(full_width, box[3] + width)
            outline = self._outline_of_manual(self._manual[ry0:ry1, rx0:rx1])
            self._manual_outline[uy0:uy1, ux0:ux1] = outline[uy0 - ry0 : uy1 - ry0, ux0 - rx0 : ux1 - rx0]
            self._show_mask(self._manual_outline)
        else:
            self._render_manual()

    def _render_manual(self) -> None:
        if self.mask_style == "outline":
            self._manual_outline = self._outline_of_manual(self._manual)
            self._show_mask(self._manual_outline)
        else:
            self._show_mask(self._manual)
        self.mask_item.setLookupTable(self._outline_lut(enabled=True))
        self.mask_item.setVisible(self.mask_visible)

    def _outline_of_manual(self, mask: np.ndarray) -> np.ndarray:
        width = outline_width(self._manual.shape)
        return cv2.bitwise_and(mask, 1 - cv2.erode(mask, np.ones((2 * width + 1, 2 * width + 1), np.uint8)))

    def displayed_mask(self) -> np.ndarray | None:
        """The boolean mask the overlay currently shows (fill style), for tests and checks."""
        if self._manual is not None:
            return self._manual.view(np.bool_).copy()
        if self._score_index is None or not self.mask_enabled:
            return None
        return self._score_index >= threshold_index(self.threshold)

    def automatic_mask_shown(self) -> bool:
        """Whether the overlay shows a thresholded score (not a hand-corrected mask, not nothing)."""
        return self._manual is None and self._score_index is not None and self.mask_enabled

    def set_heatmap_visible(self, visible: bool) -> None:
        """Toggle the relevance heatmap."""
        self.heatmap_visible = bool(visible)
        self.heatmap_item.setVisible(self.heatmap_visible)

    def set_heatmap_opacity(self, opacity: float) -> None:
        """Heatmap opacity in [0, 1]."""
        self.heatmap_item.setOpacity(float(opacity))

    def set_mask_visible(self, visible: bool) -> None:
        """Toggle the mask overlay."""
        self.mask_visible = bool(visible)
        self.mask_item.setVisible(self.mask_visible)

    def set_mask_opacity(self, opacity: float) -> None:
        """Mask opacity in [0, 1]."""
        self.mask_item.setOpacity(float(opacity))

    def set_mask_style(self, style: str) -> None:
        """``"fill"`` or ``"outline"``."""
        if style not in ("fill", "outline"):
            raise ValueError(f"unknown mask style {style!r}")
        if style != self.mask_style:
            self.mask_style = style
            self._render_mask(new_image=True)

    # ----------------------------------------------------------------- mouse
    def _mouse_moved(self, position) -> None:
        if self._shape is None:
            return
        point = self.view.mapSceneToView(position)
        x, y = int(math.floor(point.x())), int(math.floor(point.y()))
        height, width = self._shape
        if 0 <= x < width and 0 <= y < height:
            self.hovered.emit(x, y)
        else:
            self.hovered.emit(-1, -1)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.key() == Qt.Key.Key_F and not event.modifiers():
            self.fit()
            return
        super().keyPressEvent(event)
