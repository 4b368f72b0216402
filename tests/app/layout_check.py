"""Layout checks on the real window, for any window size and screen scale, plus a screenshot for the eye.

``layout_problems(window)`` lists what a user would see clipped, elided or overlapping (empty when the layout
is right). Run as a script it opens FOLDER with a model in a window of the given size, shows an analysis and
prints the problems as JSON; the tests run it with ``QT_SCALE_FACTOR=2`` for a HiDPI screen, which has to be set
before Qt starts.

    python tests/app/layout_check.py FOLDER WIDTH HEIGHT SCREENSHOT.png
"""

from __future__ import annotations

import json
import os
import sys
import time

PREDICTION_TEXTS = ("≠ undamaged 100%", "≠ damaged 100%", "undamaged 100%", "unreadable")
CELL_PADDING = 12  # the style's margins on both sides of a table cell


def _text_width(widget, text: str) -> int:
    return widget.fontMetrics().horizontalAdvance(text)


def _tick_texts_and_label_overlap(axis) -> tuple[list[str], bool]:
    """The tick labels an axis draws at its present size, and whether one of them overlaps its title."""
    from PySide6.QtGui import QPainter, QPixmap

    pixmap = QPixmap(8, 8)
    painter = QPainter(pixmap)
    try:
        specs = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    if specs is None:
        return [], False
    texts = specs[2]
    title = axis.label.mapRectToParent(axis.label.boundingRect()) if axis.label.isVisible() else None
    overlap = title is not None and any(rect.intersects(title) for rect, _flags, _text in texts)
    return [text for _rect, _flags, text in texts], overlap


def _title_clipped(axis) -> bool:
    """Whether an axis title is longer than its axis (pyqtgraph then cuts it off)."""
    if not axis.label.isVisible():
        return False
    title = axis.label.mapRectToParent(axis.label.boundingRect())
    along = title.height() if axis.orientation in ("left", "right") else title.width()
    size = axis.geometry().height() if axis.orientation in ("left", "right") else axis.geometry().width()
    return along > size


def layout_problems(window, status_message: str | None = None) -> list[str]:
    """What is clipped, elided or overlapping in ``window`` as it is now shown.

    Parameters
    ----------
    window
        A shown :class:`lrpseg.app.main_window.MainWindow`.
    status_message
        When given, also check that this status-bar message fits beside the permanent status fields.
    """
    from PySide6.QtWidgets import QScrollArea

    problems = []
    scroll = window.panel.parentWidget().parentWidget()
    assert isinstance(scroll, QScrollArea)
    if scroll.verticalScrollBar().maximum() > 0:
        hidden = [w.objectName() or type(w).__name__ for w in (window.panel.mask_style, window.panel.mask_check)
                  if not w.visibleRegion().boundingRect().height() >= w.height()]
        problems.append(f"side panel needs scrolling ({scroll.verticalScrollBar().maximum()} px); "
                        f"clipped: {hidden or 'lower part'}")
    view = window.list_view
    width = view.columnWidth(2)
    for text in PREDICTION_TEXTS:
        if _text_width(view, text) + CELL_PADDING > width:
            problems.append(f"prediction column ({width} px) elides {text!r}")
    texts, _ = _tick_texts_and_label_overlap(window.panel.histogram.getAxis("bottom"))
    if texts and "1.0" not in texts:
        problems.append(f"histogram x axis drops its last label: draws {texts}")
    for name, plot in (("histogram", window.panel.histogram), ("mixture plot", window.panel.fit_plot)):
        if plot.isVisible():
            _, overlap = _tick_texts_and_label_overlap(plot.getAxis("left"))
            if overlap:
                problems.append(f"{name}: the y axis title overlaps a tick label")
            if _title_clipped(plot.getAxis("left")):
                problems.append(f"{name}: the y axis title is longer than the axis")
    if window.panel.fit_plot.plotItem.legend is not None:
        problems.append("mixture plot draws a legend over its curves")
    message = window.viewer.message
    if message.isVisible():
        shown = window.viewer.mapFromScene(message.sceneBoundingRect()).boundingRect()
        if not window.viewer.rect().contains(shown):
            problems.append(f"viewer message {message.textItem.toPlainText()!r} is clipped: {shown} outside "
                            f"{window.viewer.rect()}")
    if status_message is not None:
        bar = window.statusBar()
        used = sum(w.width() + 6 for w in bar.findChildren(type(window.device_label)) + [
            window.progress, window.cancel_button] if w.isVisible() and w.parentWidget() is bar)
        free = bar.width() - used - 12
        if _text_width(bar, status_message) > free:
            problems.append(f"status message needs {_text_width(bar, status_message)} px, {free} px free: "
                            f"{status_message!r}")
    return problems


def settle() -> None:
    """Apply every pending resize, layout and paint request: deliver posted events until none is left."""
    from PySide6.QtCore import QCoreApplication

    app = QCoreApplication.instance()
    for _ in range(10):
        QCoreApplication.sendPostedEvents()
        app.processEvents()


def _wait(app, condition, timeout_s: float = 120) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("layout check: the window did not get there in time")
        app.processEvents()
        time.sleep(0.01)


def main(argv: list[str]) -> int:
    """Open ``argv[0]`` (with a model) at ``argv[1]`` x ``argv[2]``, print the problems, save ``argv[3]``."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from lrpseg.app.main import apply_style
    from lrpseg.app.main_window import MainWindow
    from PySide6.QtWidgets import QApplication

    folder, width, height, shot = argv[0], int(argv[1]), int(argv[2]), argv[3]
    app = QApplication.instance() or QApplication([])
    apply_style(app)
    window = MainWindow(device="cpu")
    window.resize(width, height)
    window.show()
    assert window.open_folder(folder)
    _wait(app, lambda: window.handle is not None and window.current_analysis() is not None)
    for _ in range(20):
        app.processEvents()
    pixmap = window.grab()
    pixmap.save(shot)
    print(json.dumps({"problems": layout_problems(window), "pixels": [pixmap.width(), pixmap.height()],
                      "ratio": pixmap.devicePixelRatio()}))
    window.shutdown()
    window.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
