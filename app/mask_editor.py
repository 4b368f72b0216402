"""Correcting the mask of the image on screen by hand: brush, eraser, fill-holes, start from the automatic
mask, clear, undo and redo per stroke; every change stored in the project at once.

The edits themselves are :class:`core.mask_edit.MaskEdit` (Qt-free, at the image's resolution); storage is
:class:`core.corrected_masks.CorrectedMasks`, written by :class:`app.mask_saver.MaskSaver` on its own thread;
strokes come from :class:`app.brush_layer.BrushLayer` over the image. :class:`MaskEditor` keeps one edit
history per recently edited image, shows the edited mask in the viewer and routes the window's commands.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from lrpseg.app.brush_layer import DEFAULT_SIZE, BrushLayer
from lrpseg.app.mask_saver import MaskSaver
from lrpseg.app.workers import describe_error, display_text
from lrpseg.core.corrected_masks import CorrectedMaskError, CorrectedMasks
from lrpseg.core.mask_edit import MaskEdit, clamp_size
from lrpseg.core.pipeline import mask_from_score
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QMessageBox

SIZE_STEP = 1.25
KEPT_HISTORIES = 8


@dataclass
class _Session:
    """One image's edit history and the automatic mask it started from."""

    edit: MaskEdit
    origin: dict = field(default_factory=dict)
    base_stored: bool = False  # a stored correction existed before this history's first step


class MaskEditor(QObject):
    """The window's mask-correction tools (see the module docstring).

    Signals
    -------
    changed()
        Tool, size, history or the current image's correction changed (actions refresh their state).
    """

    changed = Signal()

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.viewer = window.viewer
        self.layer = BrushLayer(self)
        self.viewer.view.addItem(self.layer, ignoreBounds=True)
        self.viewer.image_changed.connect(self._image_changed)
        self.tool: str | None = None
        self.size = DEFAULT_SIZE
        self.store: CorrectedMasks | None = None
        self.saver: MaskSaver | None = None
        self.corrected: set[str] = set()
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._stroke_rel: str | None = None
        self.changed.connect(self._sync_actions)

    # ----------------------------------------------------------------- project
    def set_project(self, project) -> None:
        """Use ``project``'s corrected masks (None: the project closes; pending saves finish first)."""
        if self.saver is not None:
            self.saver.stop()
            self.saver.deleteLater()
            self.saver = None
        self._sessions.clear()
        self.store = CorrectedMasks(project) if project is not None else None
        self.corrected = set()
        if self.store is not None:
            try:
                self.store.remove_orphans()
                self.corrected = self.store.rels()
            except Exception as error:  # the project opens anyway; corrections show as absent
                self.window.error("Corrected masks unreadable", describe_error(error))
            self.saver = MaskSaver(self.store)
            self.saver.saved.connect(self._saved)
            self.saver.failed.connect(self._save_failed)
        self.changed.emit()

    def flush(self) -> bool:
        """Wait until every change is stored (before an export or closing)."""
        return self.saver.flush() if self.saver is not None else True

    # ----------------------------------------------------------------- tools
    def set_tool(self, tool: str | None) -> None:
        """``"brush"``, ``"eraser"`` or None (the mouse pans again)."""
        if tool not in ("brush", "eraser", None):
            raise ValueError(f"unknown tool {tool!r}")
        self.tool = tool
        self.layer.active = tool is not None
        self.layer.cursor.setVisible(False)
        self.viewer.viewport().setCursor(Qt.CursorShape.CrossCursor if tool else Qt.CursorShape.ArrowCursor)
        if tool:
            self.window.show_status(f"{tool.capitalize()} {self.size} px: drag on the image (middle button pans, right "
                                    f"zooms; - and = change the size; Ctrl+Z undoes a stroke)", 8000)
        self.changed.emit()

    def tool_toggled(self, tool: str, on: bool) -> None:
        """A checkable tool action changed: choose ``tool``, or put it down if it is the one chosen."""
        if on:
            self.set_tool(tool)
        elif self.tool == tool:
            self.set_tool(None)

    def _sync_actions(self) -> None:
        w = self.window
        commands = getattr(w, "commands", None)
        if commands is None:
            return  # the window is still building its actions
        for name in ("brush", "eraser"):
            commands[name].setChecked(self.tool == name)
        has_image = self.store is not None and w.current is not None
        for name in ("smaller", "larger", "fill_holes", "start_automatic", "clear_mask", "brush", "eraser"):
            commands[name].setEnabled(has_image)
        commands["remove_correction"].setEnabled(has_image and w.current in self.corrected)
        for name, verb in (("undo", "Undo"), ("redo", "Redo")):
            commands[name].setText(f"&{verb} stroke" if self.tool else f"&{verb} label")

    def set_size(self, size: float) -> None:
        """Brush diameter in image pixels."""
        self.size = clamp_size(size)
        self.layer.set_size(self.size)
        self.window.show_status(f"Brush size {self.size} px", 3000)
        self.changed.emit()

    def enlarge(self) -> None:
        """A larger brush (key =)."""
        self.grow(SIZE_STEP)

    def shrink(self) -> None:
        """A smaller brush (key -)."""
        self.grow(1 / SIZE_STEP)

    def grow(self, factor: float) -> None:
        """Multiply the size by ``factor`` (at least one pixel of change)."""
        target = self.size * factor
        step = 1 if factor > 1 else -1
        self.set_size(target if abs(round(target) - self.size) >= 1 else self.size + step)

    # ----------------------------------------------------------------- the image on screen
    def _image_changed(self) -> None:
        self._stroke_rel = None
        shape = self.viewer.image_shape()
        self.layer.set_shape(shape)
        rel = self.window.current
        if shape is not None and rel is not None:
            session = self._session(rel, create=False)
            if session is not None and session.edit.shape == shape and (
                    session.edit.steps() or session.base_stored):
                self.viewer.set_manual_mask(session.edit.mask)
        self.changed.emit()

    def _session(self, rel: str, create: bool) -> _Session | None:
        session = self._sessions.get(rel)
        if session is not None:
            self._sessions.move_to_end(rel)
            return session
        shape = self.viewer.image_shape()
        if rel in self.corrected and self.store is not None and shape is not None:
            try:
                stored = self.store.load(rel, shape)
            except CorrectedMaskError as error:
                self.window.error("Corrected mask unreadable", f"{error}\n\nIt is left as it is on disk.")
                self.corrected.discard(rel)
                return None
            if stored is not None:
                session = _Session(MaskEdit(stored), base_stored=True)
        if session is None and create and shape is not None:
            session = _Session(MaskEdit(self._automatic_mask(shape)), origin=self._origin())
        if session is not None:
            self._sessions[rel] = session
            while len(self._sessions) > KEPT_HISTORIES:
                self._sessions.popitem(last=False)
        return session

    def _automatic_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The automatic mask on screen at its current threshold (exact scores), or an empty mask."""
        analysis = self.window.current_analysis()
        if analysis is None or not self.viewer.mask_enabled or analysis.segmentation.score.shape != shape:
            return np.zeros(shape, dtype=bool)
        threshold, _ = self.window.thresholds.threshold_for(self.window.current, analysis)
        return mask_from_score(analysis.segmentation.score, threshold)

    def _origin(self) -> dict:
        analysis = self.window.current_analysis()
        if analysis is None or self.window.handle is None:
            return {}
        threshold, _ = self.window.thresholds.threshold_for(self.window.current, analysis)
        return {"model_id": self.window.handle.model_id, "rule_set": analysis.rule_set,
                "segmenter": analysis.segmenter, "threshold": float(threshold)}

    def has_correction(self, rel: str | None = None) -> bool:
        """Whether ``rel`` (default: the current image) has a stored correction."""
        rel = self.window.current if rel is None else rel
        return rel in self.corrected

    # ----------------------------------------------------------------- strokes (from BrushLayer)
    def stroke_begin(self, x: float, y: float) -> bool:
        """Start a stroke at image position ``(x, y)``; return whether one started."""
        rel = self.window.current
        if self.tool is None or rel is None or self.store is None:
            return False
        session = self._session(rel, create=True)
        if session is None:
            return False
        if self.viewer.manual_mask() is None:
            self.viewer.set_manual_mask(session.edit.mask)
        self._stroke_rel = rel
        session.edit.begin_stroke(self.tool == "brush", self.size)
        self.stroke_to(x, y)
        return True

    def stroke_to(self, x: float, y: float) -> None:
        """Extend the stroke to ``(x, y)`` and repaint what changed."""
        session = self._sessions.get(self._stroke_rel) if self._stroke_rel else None
        if session is None or not session.edit.in_stroke:
            return
        box = session.edit.add_point(x, y)
        if box is not None:
            self.viewer.manual_mask_changed(box)

    def stroke_end(self) -> None:
        """Finish the stroke: one undo step, stored at once."""
        rel, self._stroke_rel = self._stroke_rel, None
        session = self._sessions.get(rel) if rel else None
        if session is not None and session.edit.end_stroke():
            self._store(rel, session)

    # ----------------------------------------------------------------- whole-mask commands
    def _apply(self, name: str) -> None:
        rel = self.window.current
        if rel is None or self.store is None or self.viewer.image_shape() is None:
            return
        session = self._session(rel, create=True)
        if session is None:
            return
        if name == "automatic":
            if self.window.current_analysis() is None:
                self.window.show_status("No automatic mask yet: wait for the analysis (or train a model)", 5000)
                return
            box = session.edit.replace(self._automatic_mask(session.edit.shape))
            session.origin = self._origin()
        elif name == "clear":
            box = session.edit.clear()
        else:
            box = session.edit.fill_holes()
        self.viewer.set_manual_mask(session.edit.mask)
        if box is not None:
            self._store(rel, session)
        self.changed.emit()

    def start_from_automatic(self) -> None:
        """Replace the correction with the automatic mask at the current threshold (one undo step)."""
        self._apply("automatic")

    def clear(self) -> None:
        """Empty the corrected mask (one undo step)."""
        self._apply("clear")

    def fill_holes(self) -> None:
        """Fill the holes of the corrected mask (one undo step)."""
        self._apply("fill")

    def can_undo(self) -> bool:
        """Whether the current image has a stroke to undo."""
        session = self._sessions.get(self.window.current)
        return session is not None and session.edit.can_undo()

    def can_redo(self) -> bool:
        """Whether the current image has an undone stroke to redo."""
        session = self._sessions.get(self.window.current)
        return session is not None and session.edit.can_redo()

    def undo(self) -> bool:
        """Undo the current image's latest step; return whether there was one."""
        return self._history("undo")

    def redo(self) -> bool:
        """Redo the current image's latest undone step; return whether there was one."""
        return self._history("redo")

    def _history(self, name: str) -> bool:
        rel = self.window.current
        session = self._sessions.get(rel)
        if session is None or getattr(session.edit, name)() is None:
            self.window.show_status(f"No stroke to {name} on this image", 3000)
            return False
        self._store(rel, session)
        self.changed.emit()
        return True

    def remove_correction(self) -> None:
        """Forget the current image's correction (asks first): the automatic mask applies again."""
        rel = self.window.current
        if rel is None or self.saver is None or (rel not in self.corrected and rel not in self._sessions):
            return
        answer = QMessageBox.question(
            self.window, "Remove corrected mask",
            f"Remove the corrected mask of {display_text(rel)}? The automatic mask applies again. This "
            "cannot be undone.")
        if answer == QMessageBox.StandardButton.Yes:
            self._sessions.pop(rel, None)
            self._remove(rel)

    # ----------------------------------------------------------------- storing
    def _store(self, rel: str, session: _Session) -> None:
        if session.edit.steps() == 0 and not session.base_stored:
            self._remove(rel)  # undone back to before the first correction: the automatic mask again
            return
        if rel == self.window.current:
            self.viewer.set_manual_mask(session.edit.mask)
        self.corrected.add(rel)
        self.saver.save(rel, session.edit.mask, session.origin)
        self._mark(rel, True)

    def _remove(self, rel: str) -> None:
        self.corrected.discard(rel)
        self.saver.remove(rel)
        if rel == self.window.current:
            self.viewer.set_manual_mask(None)
        self._mark(rel, False)

    def _mark(self, rel: str, corrected: bool) -> None:
        self.window.list_model.set_corrected(rel, corrected)
        self.changed.emit()

    def _saved(self, rel: str, info) -> None:
        if info is not None:
            self.window.show_status(f"Corrected mask of {rel} saved ({info.pixels} px)", 3000)

    def _save_failed(self, rel: str, message: str) -> None:
        self.window.error("Corrected mask not saved",
                          f"{rel}: {message}\n\nThe mask stays on screen; the next stroke tries again.")

    def shutdown(self) -> None:
        """Store what is pending and stop the saver thread."""
        self.set_project(None)
