"""Brush strokes on the real window, for :mod:`gui_latency`: mouse move -> repainted mask overlay.

The window has a project open with one square image of each benchmarked size; the brush is in hand and the
image fits the viewer. Each measured move is a real ``QMouseEvent`` sent to the viewer's viewport with the left
button held, taking the same path as a user's drag (pyqtgraph's scene, :class:`app.brush_layer.BrushLayer`,
:class:`app.mask_editor.MaskEditor`, the viewer's overlay); the clock stops when the viewport has painted.
Moves are 12 ms apart because pyqtgraph drops moves closer than 10 ms; every ``STROKE_MOVES`` moves the button
is released, which stores the corrected mask (on the saver thread) and starts the next stroke.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

STROKE_MOVES = 40
MOVE_GAP_S = 0.012
BRUSH_SIZE = 15


def make_stroke_folder(folder: Path, sizes: tuple[int, ...]) -> dict[int, str]:
    """One gradient-and-noise PNG per size in ``folder``; returns size -> relative path."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    names = {}
    for size in sizes:
        yy, xx = np.mgrid[0:size, 0:size] / size
        grey = (np.dstack([yy, xx, 0.5 * (xx + yy)]) * 200 + rng.integers(0, 40, (size, size, 3))).astype(np.uint8)
        name = f"stroke_{size}.png"
        assert cv2.imwrite(str(folder / name), grey)
        names[size] = name
    return names


def send_mouse(viewer, kind, x: float, y: float, button, buttons) -> None:
    """Send a mouse event at image position ``(x, y)`` to the viewer's viewport."""
    from PySide6.QtCore import QPointF, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    viewport = viewer.viewport()
    point = viewer.mapFromScene(viewer.view.mapViewToScene(QPointF(x, y)))
    event = QMouseEvent(kind, QPointF(point), QPointF(viewport.mapToGlobal(point)), button, buttons,
                        Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(viewport, event)


class StrokeDriver:
    """Paints a looping stroke over the image on screen, one move per :meth:`move`; releases and presses
    again every ``STROKE_MOVES`` moves (a stroke ends, its mask is stored, the next begins)."""

    def __init__(self, viewer, size: int) -> None:
        self.viewer = viewer
        self.size = size
        self.moves = 0
        self.pressed = False

    def point(self, i: int) -> tuple[float, float]:
        """A Lissajous path over the middle of the image, about 1 % of its side per move."""
        t = i * 0.02 * math.pi
        return self.size * (0.5 + 0.3 * math.sin(t)), self.size * (0.5 + 0.3 * math.sin(1.7 * t + 0.4))

    def move(self) -> str:
        """One step: press, move (with the button held) or release; returns which it sent."""
        from PySide6.QtCore import QEvent, Qt

        left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
        x, y = self.point(self.moves)
        if not self.pressed:
            send_mouse(self.viewer, QEvent.Type.MouseButtonPress, x, y, left, left)
            self.pressed, kind = True, "press"
        elif self.moves % STROKE_MOVES == 0:
            send_mouse(self.viewer, QEvent.Type.MouseButtonRelease, x, y, left, none)
            self.pressed, kind = False, "release"
        else:
            send_mouse(self.viewer, QEvent.Type.MouseMove, x, y, none, left)
            kind = "move"
        self.moves += 1
        return kind

    def release(self) -> None:
        """End the stroke under way."""
        from PySide6.QtCore import QEvent, Qt

        if self.pressed:
            x, y = self.point(self.moves)
            send_mouse(self.viewer, QEvent.Type.MouseButtonRelease, x, y, Qt.MouseButton.LeftButton,
                       Qt.MouseButton.NoButton)
            self.pressed = False


def prepare(app, window, rel: str, size: int, style: str, pump, wait_until) -> StrokeDriver:
    """Show ``rel`` with a heatmap and a score overlay, take the brush, fit the image; return a driver."""
    window.select(rel)
    wait_until(app, lambda: window.viewer.image_shape() == (size, size), 60, f"image {rel}")
    yy, xx = np.mgrid[0:size, 0:size] / size
    relevance = (np.sin(12 * xx) * np.cos(9 * yy)).astype(np.float32)
    window.viewer.set_relevance(relevance)
    window.viewer.set_score(np.clip(0.5 + 0.5 * np.sin(7 * xx + 3 * yy), 0, 1).astype(np.float32), 0.5)
    window.viewer.set_mask_style(style)
    window.viewer.fit()
    window.mask_editor.set_tool("brush")
    window.mask_editor.set_size(BRUSH_SIZE)
    pump(app, 0.3)
    return StrokeDriver(window.viewer, size)


def bench_strokes(app, window, rel: str, size: int, moves: int, style: str, counter_cls, pump, wait_until):
    """Milliseconds from a mouse move to the repainted viewport (wall clock and GUI-thread CPU), per move
    that painted; the presses and releases that start and end strokes are not counted."""
    driver = prepare(app, window, rel, size, style, pump, wait_until)
    counter = counter_cls(window.viewer.viewport())
    times, cpu = [], []
    while len(times) < moves:
        time.sleep(MOVE_GAP_S)
        app.processEvents()
        before = counter.count
        start, start_cpu = time.perf_counter(), time.thread_time()
        kind = driver.move()
        while counter.count == before and time.perf_counter() - start < 0.25:
            app.processEvents()
        elapsed = (time.perf_counter() - start) * 1000
        if kind == "move" and counter.count > before:
            times.append(elapsed)
            cpu.append((time.thread_time() - start_cpu) * 1000)
    driver.release()
    assert window.mask_editor.flush(), "corrected masks not stored"
    painted = window.viewer.displayed_mask()
    window.mask_editor.set_tool(None)
    window.viewer.set_mask_style("fill")
    return times, cpu, int(painted.sum())
