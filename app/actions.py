"""Menus, toolbar and keyboard shortcuts of the main window, declared as one table.

Every command is a :class:`QAction` with a window-wide shortcut, so the key works wherever the focus is (text
fields keep their own keys: Backspace in the search box edits the text). Tooltips and menus show the keys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lrpseg.core.labels import DAMAGED, UNDAMAGED
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMessageBox, QToolBar


@dataclass(frozen=True)
class ActionSpec:
    """One command: name (its key in the window's ``commands``), text, key, slot factory, tip."""

    name: str
    text: str
    key: str | QKeySequence.StandardKey | None
    slot: Callable[[Any], Callable]
    tip: str = ""
    checkable: bool = False
    checked: bool = False
    toolbar_text: str = ""


SPECS = (
    ActionSpec("open", "&Open folder…", QKeySequence.StandardKey.Open, lambda w: w.choose_folder,
               "Open a folder of images (its project lives in <folder>/.lrpseg)", toolbar_text="Open…"),
    ActionSpec("export", "&Export masks (all)…", "Ctrl+E",
               lambda w: lambda: w.job_controller.choose_export(False),
               "Write one mask per image, each with its own threshold", toolbar_text="Export…"),
    ActionSpec("export_selection", "Export masks (&selection)…", "Ctrl+Shift+E",
               lambda w: lambda: w.job_controller.choose_export(True), "Export the selected images only"),
    ActionSpec("quit", "&Quit", QKeySequence.StandardKey.Quit, lambda w: w.close),
    ActionSpec("undo", "&Undo label", "Ctrl+Z", lambda w: w.undo, toolbar_text="Undo"),
    ActionSpec("redo", "&Redo label", "Ctrl+Shift+Z", lambda w: w.redo, toolbar_text="Redo"),
    ActionSpec("damaged", "Label &damaged", "D", lambda w: lambda: w.label_current(DAMAGED),
               toolbar_text="Damaged  D"),
    ActionSpec("undamaged", "Label &undamaged", "U", lambda w: lambda: w.label_current(UNDAMAGED),
               toolbar_text="Undamaged  U"),
    ActionSpec("clear", "&Clear label", "Backspace", lambda w: lambda: w.label_current(None),
               toolbar_text="Clear  ⌫"),
    ActionSpec("advance", "&Auto-advance after labelling", None, lambda w: w.set_auto_advance,
               "Move to the next image after D / U / Backspace", checkable=True, checked=True),
    ActionSpec("next", "&Next image", "J", lambda w: lambda: w.step(1), "Next image (also ↓ in the list)"),
    ActionSpec("previous", "&Previous image", "K", lambda w: lambda: w.step(-1),
               "Previous image (also ↑ in the list)"),
    ActionSpec("train", "&Train model", "Ctrl+T", lambda w: w.job_controller.start_training,
               "Train the classifier from the current labels in the background", toolbar_text="Train"),
    ActionSpec("train_settings", "Training &settings…", None, lambda w: w.edit_train_settings,
               "Network width, input size, epochs of the next training"),
    ActionSpec("cancel", "&Cancel job", "Esc", lambda w: w.job_controller.cancel,
               "Stop training or export; the previous model stays"),
    ActionSpec("load_model", "&Load model…", None, lambda w: w.models.choose,
               "Use a saved .safetensors model"),
    ActionSpec("heatmap", "Relevance &heatmap", "H", lambda w: w.panel.heatmap_check.setChecked,
               "Show the signed relevance (red: evidence for damage, blue: against)", True, True),
    ActionSpec("mask", "&Mask overlay", "M", lambda w: w.panel.mask_check.setChecked, "", True, True),
    ActionSpec("outline", "Mask as &outline", "O",
               lambda w: lambda on: w.panel.mask_style.setCurrentText("outline" if on else "fill"), "", True),
    ActionSpec("undamaged_masks", "Show masks of images classified &undamaged", None,
               lambda w: w.set_show_undamaged_masks, "Export still writes empty masks for them", True),
    ActionSpec("reset", "&Reset threshold", "R", lambda w: w.thresholds.reset,
               "Back to the segmenter's default threshold"),
    ActionSpec("lower", "Threshold −0.01", "[", lambda w: lambda: w.thresholds.nudge(-0.01)),
    ActionSpec("raise", "Threshold +0.01", "]", lambda w: lambda: w.thresholds.nudge(0.01)),
    ActionSpec("fit", "&Fit image", "F", lambda w: w.viewer.fit, "Zoom so the whole image shows"),
    ActionSpec("brush", "&Brush", "B", lambda w: lambda on: w.mask_editor.tool_toggled("brush", on),
               "Paint the mask by hand (left drag; middle drag pans)", True, toolbar_text="Brush  B"),
    ActionSpec("eraser", "&Eraser", "E", lambda w: lambda on: w.mask_editor.tool_toggled("eraser", on),
               "Erase mask pixels by hand (left drag; middle drag pans)", True, toolbar_text="Eraser  E"),
    ActionSpec("smaller", "Brush &smaller", "-", lambda w: w.mask_editor.shrink),
    ActionSpec("larger", "Brush &larger", "=", lambda w: w.mask_editor.enlarge),
    ActionSpec("fill_holes", "&Fill holes", "G", lambda w: w.mask_editor.fill_holes,
               "Fill every region the corrected mask encloses"),
    ActionSpec("start_automatic", "Start from the &automatic mask", "A",
               lambda w: w.mask_editor.start_from_automatic,
               "Replace the corrected mask with the automatic one at the current threshold"),
    ActionSpec("clear_mask", "&Clear mask", "Shift+Backspace", lambda w: w.mask_editor.clear,
               "Empty the corrected mask"),
    ActionSpec("remove_correction", "&Remove correction…", None, lambda w: w.mask_editor.remove_correction,
               "Forget the hand-corrected mask of this image: the automatic mask applies again"),
    ActionSpec("shortcuts", "&Keyboard shortcuts", "F1", lambda w: lambda: show_shortcuts(w)),
)

MENUS = (
    ("&File", ("open", None, "export", "export_selection", None, "quit")),
    ("&Edit", ("undo", "redo")),
    ("&Label", ("damaged", "undamaged", "clear", None, "advance", None, "next", "previous")),
    ("&Model", ("train", "train_settings", "cancel", None, "load_model")),
    ("&View", ("heatmap", "mask", "outline", "undamaged_masks", None, "reset", "lower", "raise", None,
               "fit")),
    ("M&ask", ("brush", "eraser", "smaller", "larger", None, "fill_holes", "start_automatic", "clear_mask",
               None, "remove_correction")),
    ("&Help", ("shortcuts",)),
)

TOOLBAR = ("open", None, "damaged", "undamaged", "clear", None, "undo", "redo", None, "brush", "eraser", None,
           "train", "export")
TOOLBAR_STYLES = {"train": "PrimaryButton", "damaged": "DamagedButton", "undamaged": "UndamagedButton"}


def key_text(action: QAction) -> str:
    """The action's shortcut as the platform writes it (empty when none)."""
    return action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)


def build_actions(window: QMainWindow) -> dict[str, QAction]:
    """Create every action with its menu entry and toolbar button; return them by name (``SPECS``)."""
    actions: dict[str, QAction] = {}
    for spec in SPECS:
        action = QAction(spec.text, window)
        if spec.key:
            action.setShortcut(QKeySequence(spec.key))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        keys = key_text(action)
        plain = spec.text.replace("&", "").replace("…", "")
        action.setToolTip(f"{spec.tip or plain}" + (f"  ({keys})" if keys else ""))
        action.setStatusTip(spec.tip)
        if spec.toolbar_text:
            action.setIconText(spec.toolbar_text)
        if spec.checkable:
            action.setCheckable(True)
            action.setChecked(spec.checked)
            action.toggled.connect(spec.slot(window))
        else:
            action.triggered.connect(spec.slot(window))
        window.addAction(action)
        actions[spec.name] = action

    for title, names in MENUS:
        menu = window.menuBar().addMenu(title)
        for name in names:
            menu.addSeparator() if name is None else menu.addAction(actions[name])

    toolbar = QToolBar("Main")
    toolbar.setObjectName("MainToolBar")
    toolbar.setMovable(False)
    toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    for name in TOOLBAR:
        toolbar.addSeparator() if name is None else toolbar.addAction(actions[name])
    for name, style in TOOLBAR_STYLES.items():
        toolbar.widgetForAction(actions[name]).setObjectName(style)
    window.addToolBar(toolbar)
    return actions


def show_shortcuts(window: QMainWindow) -> None:
    """A dialog listing every keyboard shortcut."""
    rows = [(a.text().replace("&", ""), key_text(a)) for a in window.actions() if key_text(a)]
    body = "".join(f"<tr><td><b>{keys}</b>&nbsp;&nbsp;</td><td>{text}</td></tr>" for text, keys in rows)
    QMessageBox.information(window, "Keyboard shortcuts", f"<table>{body}</table>")
