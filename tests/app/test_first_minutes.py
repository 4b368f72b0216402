"""What a newcomer meets in the first minutes: next-unlabelled advance, one selected row after undo, no labels
on unreadable files, the last image and recent folders restored, the hint line, tooltips, About, export dialog."""

from __future__ import annotations

from pathlib import Path

from lrpseg.app.hints import ProjectState, next_step
from lrpseg.core.export_layout import export_masks
from lrpseg.core.labels import DAMAGED, UNDAMAGED
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QMessageBox,
)


def test_labelling_advances_to_the_next_unlabelled_image(make_window, demo_folder, qtbot):
    window = make_window(demo_folder)
    rels = [window.list_model.rel_at(i) for i in range(5)]
    for rel in rels[1:3]:
        window.project.set_label(rel, UNDAMAGED)
        window.list_model.set_label(rel, UNDAMAGED)
    window.list_view.setFocus()
    qtbot.keyClick(window.list_view, Qt.Key.Key_D)
    assert window.current == rels[3]  # rows 1 and 2 already had labels
    window.commands["advance_unlabelled"].setChecked(False)
    window.select(rels[0])
    qtbot.keyClick(window.list_view, Qt.Key.Key_U)
    assert window.current == rels[1]  # the plain next row


def test_undo_leaves_one_row_selected(make_window, demo_folder, qtbot):
    window = make_window(demo_folder)
    view = window.list_view
    view.setFocus()
    first = window.current
    qtbot.keyClick(view, Qt.Key.Key_D)
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    window.label_saver.flush()  # the undo's result arrives once it is written
    assert window.current == first and view.selected_paths() == [first]


def test_unreadable_files_cannot_be_labelled(make_window, demo_folder, qtbot):
    (demo_folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    window = make_window(demo_folder)
    assert window.select("broken.png")
    qtbot.waitUntil(lambda: "broken.png" in window.list_model.errors, timeout=10000)
    window.label_current(DAMAGED)
    assert window.project.label("broken.png") is None and "broken.png" not in window.list_model.labels
    assert "cannot be read" in window.statusBar().currentMessage()
    assert window.current == "broken.png"  # not moved on as if labelled


def test_reopening_restores_the_last_image_and_lists_recent_folders(make_window, demo_folder, tmp_path):
    from lrpseg.app.recent import recent_folders

    other = tmp_path / "other"
    other.mkdir()
    window = make_window(demo_folder)
    fifth = window.list_model.rel_at(4)
    window.select(fifth)
    assert window.open_folder(other)
    assert recent_folders()[:2] == [other.resolve(), demo_folder.resolve()]
    window._fill_recent_menu()
    entries = window.recent_menu.actions()
    assert [a.toolTip() for a in entries[:2]] == [str(other.resolve()), str(demo_folder.resolve())]
    entries[1].trigger()  # File ▸ Open recent ▸ the demo folder
    assert window.root == demo_folder.resolve() and window.current == fifth


def test_hint_line_follows_the_project():
    assert "open a folder" in next_step(ProjectState())
    first = next_step(ProjectState(has_folder=True, images=12, damaged=1))
    assert first.startswith("<b>1 Label") and "1 more damaged and 2 more undamaged" in first
    assert "<b>2 Train" in next_step(ProjectState(has_folder=True, images=12, damaged=2, undamaged=3))
    assert "Retrain" in next_step(ProjectState(has_folder=True, images=12, has_model=True))
    assert "/out" in next_step(ProjectState(has_folder=True, images=12, has_model=True, exported_to="/out"))


def test_hint_line_in_the_window(make_window, demo_folder, qtbot):
    window = make_window()
    assert "open a folder" in window.hint.text()
    window.open_folder(demo_folder)
    assert "1 Label" in window.hint.text()
    for rel, label in zip([window.list_model.rel_at(i) for i in range(4)], [DAMAGED, DAMAGED, UNDAMAGED,
                                                                             UNDAMAGED], strict=True):
        window.select(rel)
        window.label_current(label)
    assert "2 Train" in window.hint.text()


def test_every_control_has_a_tooltip(make_window, demo_folder):
    window = make_window(demo_folder)
    kinds = (QAbstractButton, QComboBox, QAbstractSlider, QAbstractSpinBox, QLineEdit)
    missing = [f"{type(w).__name__} {getattr(w, 'text', lambda: '')()!r}"
               for kind in kinds for w in window.findChildren(kind)
               if w.isVisibleTo(window) and not w.toolTip()
               and not isinstance(w.parentWidget(), (QComboBox, QAbstractSpinBox))  # parts of a control
               and w.objectName() not in ("qt_scrollarea_vcontainer", "qt_scrollarea_hcontainer")
               and type(w).__name__ != "QScrollBar"]
    assert missing == [], missing
    assert all(action.toolTip() for action in window.commands.values())


def test_about_box_names_versions_and_device(make_window):
    from lrpseg.app.actions import show_about

    window = make_window()
    box = show_about(window)
    text = box.text()
    assert "lrpseg" in text and "PyTorch" in text and "cpu" in text and "Qt / PySide6" in text
    box.close()
    assert "about" in [a.text().replace("&", "").lower().split()[0] for a in window.menuBar().actions()[-1]
                       .menu().actions()]


def test_export_dialog_creates_a_new_folder_in_one_step(make_window, demo_folder, slim_checkpoint,
                                                        use_checkpoint, qtbot, tmp_path):
    from lrpseg.app.export_dialog import ExportDialog, prepare_export_folder

    use_checkpoint(demo_folder, slim_checkpoint)
    window = make_window(demo_folder)
    qtbot.waitUntil(lambda: window.handle is not None, timeout=60000)
    window.commands["export"].trigger()
    dialog = window.findChild(ExportDialog)
    suggested = Path(dialog.path.text())
    assert suggested == demo_folder.parent / "images-masks"  # beside the images, never inside
    assert dialog.export_button.isEnabled() and not dialog.overwrite.isChecked()
    target = tmp_path / "new" / "masks"
    dialog.path.setText(str(target))
    dialog.accept()
    assert target.is_dir()
    qtbot.waitUntil(lambda: not window.job_controller.busy(), timeout=60000)
    # the thread finishes before its queued success signal reaches the GUI thread, which records the folder
    qtbot.waitUntil(lambda: window.project.get_setting("last_export_folder") is not None, timeout=10000)
    assert len(export_masks(target)) == 12
    assert window.project.get_setting("last_export_folder") == str(target)
    assert str(target) in window.hint.text()

    file = tmp_path / "a-file"
    file.write_text("x")
    assert prepare_export_folder(str(file), demo_folder) == (None, f"{file} is a file, not a folder.")
    assert prepare_export_folder("  ", demo_folder)[0] is None
    folder, reason = prepare_export_folder(str(demo_folder), demo_folder)  # masks would take the images' places
    assert folder is None and "is the image folder itself" in reason
    assert prepare_export_folder("rel/out", demo_folder) == (demo_folder.parent / "rel" / "out", "")
    # the commands come back when the job manager forgets the job, on the thread's finished signal: after the
    # success handler, so a trigger before then hits a disabled action
    qtbot.waitUntil(lambda: window.commands["export"].isEnabled(), timeout=10000)
    window.commands["export"].trigger()
    again = [d for d in window.findChildren(ExportDialog) if d.isVisible()][-1]
    assert Path(again.path.text()) == target  # the last export folder is suggested next time
    again.reject()
    for box in window.findChildren(QMessageBox):
        box.close()


def test_folder_picker_icons_are_drawn_with_the_app_style(qapp, qtbot):
    """The dark style's tool-button padding once left the picker's back/up/new-folder buttons blank."""
    import numpy as np
    from lrpseg.app.main import apply_style
    from PySide6.QtWidgets import QFileDialog, QToolButton

    apply_style(qapp)
    try:
        dialog = QFileDialog(None, "Export masks to", str(Path.home()))
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog)
        qtbot.addWidget(dialog)
        with qtbot.waitExposed(dialog):
            dialog.show()
        drawn = {}
        for button in dialog.findChildren(QToolButton):
            image = button.grab().toImage().convertToFormat(button.grab().toImage().Format.Format_RGB32)
            pixels = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
            inner = pixels[4:-4, 4:image.width() - 4, :3].reshape(-1, 3).astype(int)
            colours, counts = np.unique(inner, axis=0, return_counts=True)
            background = colours[counts.argmax()]
            drawn[button.objectName()] = int((np.abs(inner - background).sum(axis=1) > 40).sum())
        assert drawn and all(count > 30 for count in drawn.values()), drawn  # blank buttons drew under 10 pixels
    finally:
        qapp.setStyleSheet("")
