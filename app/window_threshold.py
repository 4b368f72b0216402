"""The main window's explanation choices and per-image thresholds.

A mixin of :class:`app.main_window.MainWindow`. The slider moves the overlay at once; the per-image override is
written to the project shortly after the slider stops (one SQLite commit per drag, not per tick) and before
anything else needs it (another image, another choice, export, closing).
"""

from __future__ import annotations

import dataclasses

from lrpseg.app import session


class ThresholdMixin:
    """Rule set, segmenter and threshold of the current image."""

    def set_rule_set(self, name: str) -> None:
        """Explain with rule set ``name`` from now on."""
        self.rule_set = name
        self._choice_changed("rule_set", name)

    def set_segmenter(self, name: str) -> None:
        """Segment with ``name`` from now on."""
        self.segmenter = name
        self._choice_changed("segmenter", name)

    def _choice_changed(self, setting: str, value: str) -> None:
        self.flush_threshold()
        if self.project is not None:
            self.project.set_setting(setting, value)
        self._update_status()
        if self.current is not None and self.current not in self.list_model.errors:
            self._show_analysis_or_request(self.current)
            self._look_ahead()

    def explained_for(self, key):
        """The in-memory explanation of ``key``'s image under its model, rule set and max-pool mode (from an
        analysis with any segmenter), or ``None``: with it a segmenter switch skips LRP."""
        for segmenter in session.segmenter_choices():
            cached = self.analyses.peek(dataclasses.replace(key, segmenter=segmenter))
            if cached is not None and cached[0].explained is not None:
                return cached[0].explained
        return None

    def override_key(self) -> str:
        """Key of per-image thresholds: a threshold belongs to a rule set and a segmenter."""
        return session.override_key(self.rule_set, self.segmenter)

    def threshold_for(self, rel: str, analysis) -> tuple[float, bool]:
        """The threshold in use for ``rel`` and whether it is a per-image override."""
        if self._pending_threshold and self._pending_threshold[:2] == (rel, self.override_key()):
            return self._pending_threshold[2], True
        value = self.project.threshold_override(rel, self.override_key()) if self.project else None
        return (float(analysis.threshold), False) if value is None else (float(value), True)

    def set_threshold(self, value: float) -> None:
        """Move the current image's mask threshold: the overlay now, the project shortly after."""
        self.viewer.set_threshold(value)
        if self.current is not None:
            self._pending_threshold = (self.current, self.override_key(), float(value))
            self._threshold_timer.start()

    def nudge_threshold(self, delta: float) -> None:
        """Move the threshold by ``delta`` (keys [ and ])."""
        if self.panel.slider.isEnabled():
            self.panel.slider.set_threshold(self.panel.threshold() + delta)

    def flush_threshold(self) -> None:
        """Write a pending per-image threshold to the project now."""
        self._threshold_timer.stop()
        pending, self._pending_threshold = self._pending_threshold, None
        if pending is None or self.project is None:
            return
        rel, key, value = pending
        try:
            self.project.set_threshold_override(rel, key, value)
        except Exception as error:
            self.show_status(f"Threshold for {rel} not saved: {error}", 8000)
            return
        analysis = self.current_analysis() if rel == self.current else None
        if analysis is not None:
            self.panel.show_threshold(value, analysis.threshold, True)

    def reset_threshold(self) -> None:
        """Forget the current image's threshold and use the segmenter's default (R)."""
        if self.current is None or self.project is None:
            return
        self._threshold_timer.stop()
        self._pending_threshold = None
        self.project.set_threshold_override(self.current, self.override_key(), None)
        analysis = self.current_analysis()
        if analysis is not None:
            self.viewer.set_threshold(analysis.threshold)
            self.panel.show_threshold(analysis.threshold, analysis.threshold, False)

    def set_show_undamaged_masks(self, on: bool) -> None:
        """Also draw masks of images the classifier calls undamaged (export still leaves them empty)."""
        self.show_undamaged_masks = bool(on)
        if self.current is not None and self.current not in self.list_model.errors:
            self._show_analysis_or_request(self.current)
