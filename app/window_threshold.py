"""The main window's explanation choices and per-image thresholds.

:class:`ThresholdController` is owned by :class:`app.main_window.MainWindow` (``window.thresholds``). The
slider moves the overlay at once; the per-image override is written to the project shortly after the slider
stops (one SQLite commit per drag, not per tick) and before anything else needs it (another image, another
choice, export, closing).
"""

from __future__ import annotations

from lrpseg.app import session
from PySide6.QtCore import QObject, QTimer

THRESHOLD_SAVE_DELAY_MS = 400


class ThresholdController(QObject):
    """Rule set, segmenter and threshold of the current image of one window.

    Parameters
    ----------
    window
        The :class:`~app.main_window.MainWindow` whose choices this controller changes.
    """

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self._pending: tuple[str, str, float] | None = None
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(THRESHOLD_SAVE_DELAY_MS)
        self._timer.timeout.connect(self.flush)

    def set_rule_set(self, name: str) -> None:
        """Explain with rule set ``name`` from now on."""
        self.window.rule_set = name
        self._choice_changed("rule_set", name)

    def set_segmenter(self, name: str) -> None:
        """Segment with ``name`` from now on."""
        self.window.segmenter = name
        self._choice_changed("segmenter", name)

    def _choice_changed(self, setting: str, value: str) -> None:
        w = self.window
        self.flush()
        if w.project is not None:
            w.project.set_setting(setting, value)
        w.update_status()
        w.refresh_current()

    def override_key(self) -> str | None:
        """Key of per-image thresholds: a threshold belongs to a model, a rule set and a segmenter, or to a model
        and a student (None without a model)."""
        w = self.window
        if w.handle is None:
            return None
        return session.threshold_key(w.handle.model_id, w.rule_set, w.segmenter, w.refined.source_key())

    def threshold_for(self, rel: str, analysis) -> tuple[float, bool]:
        """The threshold in use for ``rel`` and whether it is a per-image override."""
        if self._pending and self._pending[:2] == (rel, self.override_key()):
            return self._pending[2], True
        project = self.window.project
        key = self.override_key()
        value = project.threshold_override(rel, key) if project and key else None
        return (float(analysis.threshold), False) if value is None else (float(value), True)

    def set_threshold(self, value: float) -> None:
        """Move the current image's mask threshold: the overlay now, the project shortly after."""
        w = self.window
        w.viewer.set_threshold(value)
        if w.current is not None and self.override_key() is not None:
            self._pending = (w.current, self.override_key(), float(value))
            self._timer.start()

    def nudge(self, delta: float) -> None:
        """Move the threshold by ``delta`` (keys [ and ])."""
        panel = self.window.panel
        if panel.slider.isEnabled():
            panel.slider.set_threshold(panel.threshold() + delta)

    def flush(self) -> None:
        """Write a pending per-image threshold to the project now."""
        w = self.window
        self._timer.stop()
        pending, self._pending = self._pending, None
        if pending is None or w.project is None:
            return
        rel, key, value = pending
        try:
            w.project.set_threshold_override(rel, key, value)
        except Exception as error:
            w.show_status(f"Threshold for {rel} not saved: {error}", 8000)
            return
        analysis = w.current_analysis() if rel == w.current else None
        if analysis is not None:
            w.panel.show_threshold(value, analysis.threshold, True)

    def reset(self) -> None:
        """Forget the current image's threshold and use the segmenter's default (R)."""
        w = self.window
        if w.current is None or w.project is None or self.override_key() is None:
            return
        self._timer.stop()
        self._pending = None
        w.project.set_threshold_override(w.current, self.override_key(), None)
        analysis = w.current_analysis()
        if analysis is not None:
            w.viewer.set_threshold(analysis.threshold)
            w.panel.show_threshold(analysis.threshold, analysis.threshold, False)
