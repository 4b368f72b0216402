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
    ActionSpec("quit", "&Quit", QKeySequence.StandardKey.Quit, lambda w: w.close,
               "Close lrpseg (labels and thresholds are already saved)"),
    ActionSpec("undo", "&Undo label", "Ctrl+Z", lambda w: w.undo, "Undo the last label change and show its image",
               toolbar_text="Undo"),
    ActionSpec("redo", "&Redo label", "Ctrl+Shift+Z", lambda w: w.redo, "Redo the label change just undone",
               toolbar_text="Redo"),
    ActionSpec("damaged", "Label &damaged", "D", lambda w: lambda: w.label_current(DAMAGED),
               "Label the current image damaged (it shows a defect), then move on", toolbar_text="Damaged  D"),
    ActionSpec("undamaged", "Label &undamaged", "U", lambda w: lambda: w.label_current(UNDAMAGED),
               "Label the current image undamaged (no defect), then move on", toolbar_text="Undamaged  U"),
    ActionSpec("clear", "&Clear label", "Backspace", lambda w: lambda: w.label_current(None),
               "Remove the current image's label", toolbar_text="Clear  ⌫"),
    ActionSpec("advance", "&Auto-advance after labelling", None, lambda w: w.set_auto_advance,
               "Move on after D / U / Backspace", checkable=True, checked=True),
    ActionSpec("advance_unlabelled", "Advance to the next &unlabelled image", None,
               lambda w: w.set_advance_to_unlabelled,
               "After labelling, skip images below that already have a label", checkable=True, checked=True),
    ActionSpec("next", "&Next image", "J", lambda w: lambda: w.step(1), "Next image (also ↓ in the list)"),
    ActionSpec("previous", "&Previous image", "K", lambda w: lambda: w.step(-1),
               "Previous image (also ↑ in the list)"),
    ActionSpec("train", "&Train model", "Ctrl+T", lambda w: w.job_controller.start_training,
               "Train the classifier from the current labels in the background", toolbar_text="Train"),
    ActionSpec("train_settings", "Training &settings…", None, lambda w: w.edit_train_settings,
               "Network width, input size, epochs of the next training"),
    ActionSpec("cancel", "&Cancel job", "Esc", lambda w: w.job_controller.cancel,
               "Stop training or export; the model in use stays"),
    ActionSpec("load_model", "&Load model…", None, lambda w: w.models.choose,
               "Use a saved .safetensors model"),
    ActionSpec("heatmap", "Relevance &heatmap", "H", lambda w: w.panel.heatmap_check.setChecked,
               "Show the signed relevance (red: evidence for damage, blue: against)", True, True),
    ActionSpec("mask", "&Mask overlay", "M", lambda w: w.panel.mask_check.setChecked,
               "Show the mask (yellow) at the current threshold", True, True),
    ActionSpec("outline", "Mask as &outline", "O",
               lambda w: lambda on: w.panel.mask_style.setCurrentText("outline" if on else "fill"),
               "Draw only the mask's border, so the damage under it stays visible", True),
    ActionSpec("undamaged_masks", "Show masks of images classified &undamaged", None,
               lambda w: w.set_show_undamaged_masks,
               "Export still writes empty masks for them (an image you labelled damaged always gets its mask)",
               True),
    ActionSpec("reset", "&Reset threshold", "R", lambda w: w.thresholds.reset,
               "Back to the segmenter's default threshold"),
    ActionSpec("lower", "Threshold −0.01", "[", lambda w: lambda: w.thresholds.nudge(-0.01),
               "Lower the threshold a little: a larger mask"),
    ActionSpec("raise", "Threshold +0.01", "]", lambda w: lambda: w.thresholds.nudge(0.01),
               "Raise the threshold a little: a smaller mask"),
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
    ActionSpec("shortcuts", "&Keyboard shortcuts", "F1", lambda w: lambda: show_shortcuts(w),
               "Every key, and what the technical terms mean"),
    ActionSpec("about", "&About lrpseg", None, lambda w: lambda: show_about(w),
               "Versions of lrpseg, PyTorch and Qt, and the device used"),
)

MENUS = (
    ("&File", ("open", None, "export", "export_selection", None, "quit")),
    ("&Edit", ("undo", "redo")),
    ("&Label", ("damaged", "undamaged", "clear", None, "advance", "advance_unlabelled", None, "next", "previous")),
    ("&Model", ("train", "train_settings", "cancel", None, "load_model")),
    ("&View", ("heatmap", "mask", "outline", "undamaged_masks", None, "reset", "lower", "raise", None,
               "fit")),
    ("M&ask", ("brush", "eraser", "smaller", "larger", None, "fill_holes", "start_automatic", "clear_mask",
               None, "remove_correction")),
    ("&Help", ("shortcuts", "about")),
)

TOOLBAR = ("open", None, "damaged", "undamaged", "clear", None, "undo", "redo", None, "brush", "eraser", None,
           "train", "export")
TOOLBAR_STYLES = {"train": "PrimaryButton", "damaged": "DamagedButton", "undamaged": "UndamagedButton"}


GLOSSARY = (
    ("Relevance", "how much each pixel pushed the classifier towards “damaged” (red) or against it (blue); "
                  "computed with Layer-wise Relevance Propagation (LRP)"),
    ("Rule set", "the LRP rules that turn the decision into relevance: ours (the paper's) or montavon"),
    ("Score", "per pixel, how damage-like the smoothed relevance is, from 0 to 1"),
    ("Threshold", "pixels with a score at or above it form the mask; remembered per image"),
    ("Segmenter", "how scores and the default threshold are found: simple (an iterative threshold), gmm "
                  "(Gaussian mixture) or bmm (Beta mixture) fitted to the relevance"),
    ("Mixture fit", "the two groups, background and damage, that gmm or bmm found in the relevance; for bmm "
                    "it is fitted to the upper half of the mean-filtered relevance, clamped and mapped to 0..1"),
)


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
    terms = "".join(f"<tr><td><b>{term}</b>&nbsp;&nbsp;</td><td>{meaning}</td></tr>" for term, meaning in GLOSSARY)
    QMessageBox.information(window, "Keyboard shortcuts and terms",
                            f"<table>{body}</table><p><b>Terms</b></p><table>{terms}</table>")


def about_text(device) -> str:
    """The About box's rich text: versions of lrpseg, PyTorch, CUDA, Qt and Python, and ``device``."""
    import platform

    import PySide6
    import torch
    from lrpseg.core.cli import version_text
    from lrpseg.core.device import describe_device
    from PySide6.QtCore import qVersion

    cuda = torch.version.cuda if torch.cuda.is_available() else "not available"
    rows = [("lrpseg", version_text().split(" ")[1]), ("PyTorch", torch.__version__), ("CUDA", cuda),
            ("Device in use", describe_device(device)), ("Qt / PySide6", f"{qVersion()} / {PySide6.__version__}"),
            ("Python", platform.python_version())]
    table = "".join(f"<tr><td>{name}&nbsp;&nbsp;</td><td><b>{value}</b></td></tr>" for name, value in rows)
    return ("<p><b>lrpseg</b>: pixel masks from image-level labels (LRP explanations of a VGG-11 classifier, "
            "after Seibold et al., VISAPP 2022).</p>"
            f"<table>{table}</table>")


def show_about(window: QMainWindow) -> QMessageBox:
    """Open the About box (window-modal, so the event loop and the workers keep running)."""
    box = QMessageBox(QMessageBox.Icon.Information, "About lrpseg", about_text(window.device),
                      QMessageBox.StandardButton.Ok, window)
    box.setObjectName("AboutBox")
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.open()
    return box
