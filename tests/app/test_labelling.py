"""The window without a model: open a folder, list, thumbnails, labelling keys, undo/redo, sort and filter."""

from __future__ import annotations

from lrpseg.core.labels import DAMAGED, UNDAMAGED
from lrpseg.core.project import Project
from PySide6.QtCore import Qt


def test_opens_demo_folder_without_model(make_window, demo_folder, qtbot):
    window = make_window(demo_folder)
    model = window.list_model
    assert model.rowCount() == 12
    assert window.current == model.rel_at(0)
    assert window.handle is None
    assert window.commands["train"].isEnabled() and window.commands["train"].iconText() == "Train"
    assert window.model_label.text() == "no model yet" and "Train" in window.model_label.toolTip()
    assert not window.commands["export"].isEnabled()
    qtbot.waitUntil(lambda: window.images.get(window.current) is not None, timeout=10000)
    assert window.viewer.image_item.image.shape == (64, 64, 3)
    qtbot.waitUntil(lambda: model.data(model.index(0, 0), Qt.ItemDataRole.DecorationRole) is not None,
                    timeout=10000)  # thumbnails of the rows on screen load lazily
    qtbot.waitUntil(lambda: model.thumbnails.cached_count() >= 5, timeout=10000)
    assert model.data(model.index(0, 1)) == "—"


def test_label_keys_auto_advance_undo_redo(make_window, demo_folder, qtbot):
    window = make_window(demo_folder)
    view = window.list_view
    view.setFocus()
    first, second, third = (window.list_model.rel_at(i) for i in range(3))
    qtbot.keyClick(view, Qt.Key.Key_D)
    assert window.current == second
    qtbot.keyClick(view, Qt.Key.Key_U)
    assert window.current == third
    assert window.label_saver.flush() == 0  # written off the GUI thread; flush waits until they are on disk
    with Project.open(demo_folder) as other:  # saved, visible to another reader
        assert other.label(first) == DAMAGED and other.label(second) == UNDAMAGED
    assert window.list_model.data(window.list_model.index(0, 1)) == DAMAGED

    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    window.label_saver.flush()  # undo runs behind the queued writes; its result arrives when written
    assert window.project.label(second) is None
    assert window.current == second  # undo shows the image it touched
    ctrl_shift = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    qtbot.keyClick(view, Qt.Key.Key_Z, ctrl_shift)
    window.label_saver.flush()
    assert window.project.label(second) == UNDAMAGED

    window.select(first)
    qtbot.keyClick(view, Qt.Key.Key_Backspace)
    window.label_saver.flush()
    assert window.project.label(first) is None
    assert "1 undamaged" in window.count_label.text()

    window.commands["advance"].setChecked(False)
    window.select(third)
    qtbot.keyClick(view, Qt.Key.Key_D)
    window.label_saver.flush()
    assert window.current == third and window.project.label(third) == DAMAGED


def test_sort_and_filter(make_window, demo_folder):
    window = make_window(demo_folder)
    model = window.list_model
    rels = list(model.paths)
    window.project.set_label(rels[0], DAMAGED)
    window.project.set_label(rels[1], UNDAMAGED)
    window.project.set_label(rels[2], DAMAGED)
    model.labels = window.project.labels()
    model.set_probabilities({rels[0]: 0.9, rels[1]: 0.8, rels[2]: 0.52, rels[3]: 0.1})

    window.sort_combo.setCurrentIndex(window.sort_combo.findData("unlabelled"))
    assert model.visible_paths()[-3:] == rels[:3]
    window.sort_combo.setCurrentIndex(window.sort_combo.findData("uncertain"))
    assert model.visible_paths()[:4] == [rels[2], rels[1], rels[0], rels[3]]
    window.sort_combo.setCurrentIndex(window.sort_combo.findData("disagree"))
    assert model.visible_paths()[0] == rels[1]
    assert model.data(model.index(0, 2)) == "≠ damaged 80%"

    window.filter_combo.setCurrentIndex(window.filter_combo.findData("unlabelled"))
    assert model.rowCount() == 9
    window.filter_combo.setCurrentIndex(window.filter_combo.findData("disagree"))
    assert model.visible_paths() == [rels[1]]
    assert window.current == rels[1]
    window.filter_combo.setCurrentIndex(window.filter_combo.findData("all"))
    window.search.setText("undamaged_00")
    window.search.returnPressed.emit()
    assert all("undamaged_00" in rel for rel in model.visible_paths()) and model.rowCount() > 0


def test_unreadable_image_is_listed_not_fatal(make_window, demo_folder, qtbot, monkeypatch):
    from lrpseg.app import thumbnails

    decoded = []
    read_image = thumbnails.read_image
    monkeypatch.setattr(thumbnails, "read_image", lambda path: decoded.append(path.name) or read_image(path))
    broken = demo_folder / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    window = make_window(demo_folder)
    assert window.select("broken.png")
    qtbot.waitUntil(lambda: "broken.png" in window.list_model.errors, timeout=10000)
    qtbot.waitUntil(lambda: window.viewer.message.isVisible(), timeout=5000)
    row = window.list_model.row_of("broken.png")
    assert window.list_model.data(window.list_model.index(row, 2)) == "unreadable"
    window.step(1)  # the window keeps working
    assert window.current != "broken.png"
    window.list_view.scrollTo(window.list_model.index(row, 0))
    thumbnails = window.list_model.thumbnails
    for step in (-1, 1) * 10:  # repaints of the broken row (selection moving over it) decode it no more
        window.step(step)
        window.list_view.viewport().repaint()
        qtbot.waitUntil(thumbnails.is_idle, timeout=10000)
    assert decoded.count("broken.png") == 1


def test_training_needs_both_classes(make_window, demo_folder):
    window = make_window(demo_folder)
    window.label_current(DAMAGED)
    assert window.job_controller.start_training() is False
    assert window.last_error is not None and "at least" in window.last_error[1]
    assert not window.jobs.running_names()


def test_entry_point_arguments():
    from lrpseg.app.main import parse_args

    args = parse_args(["/some/folder", "--device", "cpu"])
    assert args.folder == "/some/folder" and args.device == "cpu"
    assert parse_args([]).folder is None and parse_args([]).smoke_test is None
    assert parse_args(["--smoke-test", "2.5"]).smoke_test == 2.5 and parse_args(["--version"]).version


def test_training_settings_dialog_round_trip(qtbot, slim_settings):
    from lrpseg.app.train_dialog import FIELDS, TrainSettingsDialog

    dialog = TrainSettingsDialog(slim_settings)
    qtbot.addWidget(dialog)
    values = dialog.values()
    assert set(values) == set(FIELDS) and {k: values[k] for k in FIELDS} == {k: slim_settings[k] for k in FIELDS}
    dialog.restore_defaults()
    assert dialog.values()["width"] == 1.0 and dialog.values()["input_size"] == 224


def test_the_epochs_hint_names_the_extension_threshold_training_uses(qtbot):
    from lrpseg.app.train_dialog import TrainSettingsDialog
    from lrpseg.core.train import TrainConfig

    dialog = TrainSettingsDialog(None)
    qtbot.addWidget(dialog)
    assert f"balanced accuracy {TrainConfig().good_enough:g} at the last epoch trains on" in dialog.epochs.toolTip()
