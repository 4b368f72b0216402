"""The brush's input layer in the viewer: left-button drags become strokes, a circle shows the brush size.

:class:`BrushLayer` lies over the image in the viewer's ViewBox, so pointer positions arrive in image coordinates
(pixel ``(i, j)`` spans ``[i, i + 1)``) at any zoom. While a tool is chosen it takes left-button presses and drags;
other buttons and the wheel reach the ViewBox (the middle button pans, the right button and the wheel zoom).
pyqtgraph delivers at most one move per 10 ms (its ``mouseRateLimit``); a stroke joins the moves it gets with
straight segments.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem

DEFAULT_SIZE = 9
CURSOR_COLOUR = "#f0f6fc"


class BrushLayer(pg.GraphicsObject):
    """An invisible item over the image that turns left-button drags into strokes while ``active``.

    ``editor`` (an :class:`app.mask_editor.MaskEditor`) receives ``stroke_begin(x, y)``, ``stroke_to(x, y)``
    and ``stroke_end()`` in image coordinates.
    """

    def __init__(self, editor) -> None:
        super().__init__()
        self.editor = editor
        self.active = False
        self._rect = QRectF()
        self.setZValue(5)
        self.setAcceptHoverEvents(True)
        self.cursor = QGraphicsEllipseItem(self)
        pen = QPen(QColor(CURSOR_COLOUR))
        pen.setCosmetic(True)
        pen.setWidthF(1.5)
        self.cursor.setPen(pen)
        self.cursor.setVisible(False)
        self.size = DEFAULT_SIZE

    def set_shape(self, shape: tuple[int, int] | None) -> None:
        """Cover an image of ``shape`` (None: no image, nothing to paint on)."""
        self.prepareGeometryChange()
        self._rect = QRectF() if shape is None else QRectF(0, 0, shape[1], shape[0])
        if shape is None:
            self.cursor.setVisible(False)

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt override
        return self._rect

    def paint(self, painter, *args) -> None:
        return  # the mask overlay shows the result; only the cursor (a child item) is drawn

    def set_size(self, size: int) -> None:
        """Diameter of the brush circle in image pixels."""
        self.size = size
        self._place_cursor(self.cursor.rect().center() if self.cursor.isVisible() else None)

    def _place_cursor(self, centre) -> None:
        if centre is None or not self.active:
            self.cursor.setVisible(False)
            return
        radius = self.size / 2.0
        self.cursor.setRect(QRectF(centre.x() - radius, centre.y() - radius, 2 * radius, 2 * radius))
        self.cursor.setVisible(True)

    def _pixel_centre(self, pos):
        return pg.Point(np.floor(pos.x()) + 0.5, np.floor(pos.y()) + 0.5)

    def hoverEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph hook
        if ev.isExit() or not self.active:
            self.cursor.setVisible(False)
        else:
            self._place_cursor(self._pixel_centre(ev.pos()))

    def mouseClickEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph hook
        if not self.active or ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        ev.accept()
        pos = ev.pos()
        if self.editor.stroke_begin(pos.x(), pos.y()):
            self.editor.stroke_end()

    def mouseDragEvent(self, ev) -> None:  # noqa: N802 - pyqtgraph hook
        if not self.active or ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        ev.accept()
        if ev.isStart():
            down = ev.buttonDownPos()
            if not self.editor.stroke_begin(down.x(), down.y()):
                return
        pos = ev.pos()
        self._place_cursor(self._pixel_centre(pos))
        self.editor.stroke_to(pos.x(), pos.y())
        if ev.isFinish():
            self.editor.stroke_end()
