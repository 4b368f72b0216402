"""The GUI opens the bad-file folder: bad files are listed as unreadable, the viewer says so instead of
crashing, and the odd but valid files are shown and explained.

Uses the window's public API (``MainWindow.open_folder``, ``select``, ``models.install``, ``list_model``,
``viewer``) from the app; the corpus is the one of test_bad_files.py.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

import pytest
from reliability_corpus import NON_UTF8_NAME, make_corpus
from reliability_helpers import permissions_enforced, save_slim_model, without_dac_override

pytest.importorskip("PySide6")
pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX corpus (FIFO, symlinks)")


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    return folder, make_corpus(folder, unreadable=permissions_enforced())


@pytest.fixture
def window(qtbot):
    from lrpseg.app.main_window import MainWindow
    from lrpseg.app.workers import running_threads

    win = MainWindow(device="cpu")
    qtbot.addWidget(win)
    win.show()
    yield win
    win.shutdown()
    assert not running_threads()


def _viewer_message(window) -> str:
    return window.viewer.message.textItem.toPlainText() if window.viewer.message.isVisible() else ""


def test_bad_file_folder_opens_and_lists_bad_files_as_unreadable(window, corpus, qtbot, tmp_path):
    from lrpseg.app import session

    folder, cases = corpus
    listed = [case for case in cases if case.listed]
    bad = [case for case in listed if case.expect == "error"]
    good = [case for case in listed if case.expect == "ok"]
    assert NON_UTF8_NAME in {case.name for case in good}
    model = window.list_model
    # Worker threads started from here on inherit the dropped capability: mode 000 means unreadable.
    with without_dac_override():
        assert window.open_folder(folder)
        assert sorted(model.paths) == sorted(case.name for case in listed)
        skipped = len(cases) - len(listed)
        assert f"{skipped} files skipped while scanning" in window.statusBar().currentMessage()

        for case in bad:
            assert window.select(case.name)
            qtbot.waitUntil(
                lambda name=case.name: name in model.errors and _viewer_message(window) == "Unreadable image",
                timeout=15000,
            )
            assert case.reason.lower() in model.errors[case.name].lower(), case.kind
            row = model.row_of(case.name)
            assert model.data(model.index(row, 2)) == "unreadable"
        for case in good:
            assert window.select(case.name)
            qtbot.waitUntil(lambda name=case.name: window.images.get(name) is not None, timeout=15000)
            assert window.viewer.image_item.image.shape[:2] == case.shape[:2], case.kind
            assert _viewer_message(window) == ""

        model_path = tmp_path / "slim.safetensors"
        save_slim_model(model_path, input_size=32)
        window.models.install(session.load_model(model_path, window.device))
        for case in good:  # each odd file is classified, explained and segmented in the viewer
            assert window.select(case.name)
            qtbot.waitUntil(lambda: window.current_analysis() is not None, timeout=30000)
            assert window.current_analysis().relevance.shape == case.shape[:2], case.kind
        for case in bad:  # and the bad ones still say why, with a model loaded
            assert window.select(case.name)
            assert _viewer_message(window) == "Unreadable image"
        qtbot.waitUntil(lambda: window.service.is_idle(), timeout=30000)
    assert set(model.errors) & set(model.paths) == {case.name for case in bad}
    assert window.last_error is None  # no error dialog popped up
    assert window.isVisible()
