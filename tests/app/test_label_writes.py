"""Label writes off the GUI thread: the window answers at once, closes only with every label on disk (saying
"Saving labels…" while it waits), keeps undo/redo consistent and shows a failed write.

The project's label writes are held by a test double (a gate the test opens), standing in for a network share's
slow fsync; no test sleeps or measures time.
"""

from __future__ import annotations

import threading

from lrpseg.app.label_saver import SAVING_MESSAGE
from lrpseg.core.labels import DAMAGED, UNDAMAGED
from lrpseg.core.project import Project, ProjectLockedError
from PySide6.QtCore import Qt


def hold_label_writes(window, fail: str | None = None) -> threading.Event:
    """Make the window's project block each label write until the returned gate is set (``fail``: an image
    whose writes raise, as a locked database does)."""
    project = window.project
    gate = threading.Event()
    real_set, real_steps = project.set_label, project.set_label_steps
    real_undo, real_redo = project.undo, project.redo

    def held(real, rels):
        def write(*args):
            gate.wait()
            if fail in rels(*args):
                raise ProjectLockedError(f"project {project.folder} is locked by another program")
            return real(*args)
        return write

    project.set_label = held(real_set, lambda rel, label: {rel})
    project.set_label_steps = held(real_steps, lambda steps: {rel for step in steps for rel in step})
    project.undo = lambda: gate.wait() and real_undo()
    project.redo = lambda: gate.wait() and real_redo()
    return gate


def open_gate_when_saving(window, gate: threading.Event) -> list[str]:
    """Open ``gate`` once the status bar says the labels are being saved; returns the messages seen."""
    seen: list[str] = []

    def shown(message: str) -> None:
        seen.append(message)
        if message == SAVING_MESSAGE:
            gate.set()

    window.statusBar().messageChanged.connect(shown)
    return seen


def test_close_waits_for_slow_label_writes_in_order(make_window, demo_folder, qtbot):
    window = make_window(demo_folder)
    window.commands["advance"].setChecked(False)
    gate = hold_label_writes(window)
    view = window.list_view
    view.setFocus()
    rel = window.current
    qtbot.keyClick(view, Qt.Key.Key_D)
    qtbot.keyClick(view, Qt.Key.Key_U)  # D then U on one image, both still being written
    other = window.list_model.rel_at(1)
    window.select(other)
    qtbot.keyClick(view, Qt.Key.Key_D)
    assert window.list_model.labels == {rel: UNDAMAGED, other: DAMAGED}  # shown at once
    assert "1 damaged" in window.count_label.text()
    assert window.label_saver.queue.pending() == 3 and gate.is_set() is False

    seen = open_gate_when_saving(window, gate)
    window.close()  # blocks until the writes are done; the message opens the gate
    assert SAVING_MESSAGE in seen and not window.isVisible()
    assert window.label_saver is None  # the project was closed after its labels
    with Project.open(demo_folder) as project:
        assert project.labels() == {rel: UNDAMAGED, other: DAMAGED}
        assert [e.new_label for e in project.history() if e.rel == rel] == [UNDAMAGED, DAMAGED]


def test_switching_folders_writes_the_labels_of_the_old_one(make_window, demo_folder, tmp_path, qtbot):
    window = make_window(demo_folder)
    gate = hold_label_writes(window)
    rel = window.current
    window.label_current(DAMAGED)
    open_gate_when_saving(window, gate)
    second = tmp_path / "second"
    second.mkdir()
    (second / "x.png").write_bytes((demo_folder / rel).read_bytes())
    assert window.open_folder(second)
    with Project.open(demo_folder) as project:
        assert project.label(rel) == DAMAGED


def test_undo_redo_behind_queued_writes(make_window, demo_folder, qtbot):
    window = make_window(demo_folder)
    gate = hold_label_writes(window)
    first, second = window.list_model.rel_at(0), window.list_model.rel_at(1)
    view = window.list_view
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_D)  # labels first, moves to second
    qtbot.keyClick(view, Qt.Key.Key_U)  # labels second
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undoes second, once written
    assert window.list_model.labels == {first: DAMAGED, second: UNDAMAGED}  # the undo has not run yet
    window.select(first)
    gate.set()  # the results arrive through the event loop: the undo shows the image it touched
    qtbot.waitUntil(lambda: window.current == second and window.list_model.labels == {first: DAMAGED})
    assert window.label_saver.flush() == 0
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    window.label_saver.flush()
    assert window.current == first and window.list_model.labels == {first: DAMAGED}
    assert window.project.labels() == {first: DAMAGED}
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # nothing left to undo
    window.label_saver.flush()
    assert window.project.labels() == {} == window.list_model.labels
    assert window.statusBar().currentMessage() == "Nothing to undo"


def test_a_failed_write_is_shown_and_keeps_the_window_open(make_window, demo_folder, qtbot):
    window = make_window(demo_folder)
    rel = window.current
    gate = hold_label_writes(window, fail=rel)
    window.label_current(DAMAGED)
    assert window.list_model.labels == {rel: DAMAGED}
    open_gate_when_saving(window, gate)
    window.close()  # the write fails while closing: say so and stay open
    assert window.isVisible()
    assert window.last_error[0] == "Label not saved" and "locked" in window.last_error[1]
    assert rel in window.last_error[1]
    assert window.list_model.labels == {}  # the list shows what is stored, not the lost label
    window.close()  # nothing pending now: closes
    assert not window.isVisible()
