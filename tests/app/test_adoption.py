"""Retrain in the app: a new model is adopted only when it is better; the history switches back in one click."""

from __future__ import annotations

from lrpseg.core.adoption import Verdict, model_history
from lrpseg.core.labels import labels_from_folders
from PySide6.QtWidgets import QMessageBox


def _retrain(window, qtbot):
    assert window.job_controller.start_training()
    with qtbot.waitSignal(window.jobs.job("train").succeeded, timeout=60000):
        pass


def test_a_worse_model_is_kept_out_until_used_anyway_and_history_switches_back(
    make_window, demo_folder, slim_checkpoint, qtbot, slim_settings, use_checkpoint, monkeypatch
):
    old = use_checkpoint(demo_folder, slim_checkpoint)
    window = make_window(demo_folder)
    qtbot.waitUntil(lambda: window.handle is not None, timeout=10000)
    window.project.set_labels(labels_from_folders(demo_folder))
    window.project.set_setting("train_config", slim_settings)
    judged = []

    def worse(new_score, current_score):
        judged.append((new_score, current_score))
        return Verdict(False, "the new model is worse (balanced accuracy 0.50 against 0.86)", 0.5, 0.86)

    monkeypatch.setattr("lrpseg.core.adoption.judge", worse)
    _retrain(window, qtbot)
    qtbot.waitUntil(lambda: window.findChild(QMessageBox, "NotAdoptedBox") is not None, timeout=5000)
    box = window.findChild(QMessageBox, "NotAdoptedBox")
    assert "0.50 against 0.86" in box.text() and "current model stays in use" in box.text()
    # the current model was scored on the same validation images as the new one
    assert judged and judged[0][1] is not None
    assert window.handle.path == old and window.project.model_path == old
    (record,) = model_history(window.project)
    assert not record.adopted and record.path.startswith(".lrpseg/models/model-")
    new = demo_folder / record.path

    use = next(b for b in box.buttons() if b.text() == "Use anyway")
    use.click()
    qtbot.waitUntil(lambda: window.handle.path == new, timeout=5000)
    assert window.project.model_path == new

    history = window.models.attach_history_menu(window.menuBar().addMenu("test"))
    history.aboutToShow.emit()
    entries = [a for a in history.actions() if a.isEnabled()]
    assert len(entries) == 1 and entries[0].isChecked() and "not adopted" in entries[0].text()


def test_history_menu_loads_an_earlier_model_in_one_click(
    make_window, demo_folder, slim_checkpoint, qtbot, slim_settings, use_checkpoint, monkeypatch
):
    monkeypatch.setattr("lrpseg.core.adoption.judge", lambda new, current: Verdict(True, "adopted", new, current))
    window = make_window(demo_folder)
    window.project.set_labels(labels_from_folders(demo_folder))
    window.project.set_setting("train_config", slim_settings)
    _retrain(window, qtbot)
    qtbot.waitUntil(lambda: window.handle is not None, timeout=10000)
    first = window.handle.path
    window.project.set_setting("train_config", {**slim_settings, "seed": 1})
    _retrain(window, qtbot)
    qtbot.waitUntil(lambda: window.handle.path != first, timeout=10000)
    history = window.models.attach_history_menu(window.menuBar().addMenu("test"))
    history.aboutToShow.emit()
    entries = history.actions()
    assert len(entries) == 2 and entries[0].isChecked() and not entries[1].isChecked()  # newest first
    entries[1].trigger()
    qtbot.waitUntil(lambda: window.handle.path == first, timeout=10000)
    assert window.project.model_path == first
    # predictions on the images the model was trained on are marked in-sample
    assert window.list_model.in_sample == set(window.project.labels())
