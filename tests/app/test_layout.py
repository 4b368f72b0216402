"""The window's layout at 1280×800 (the default), 1920×1080 and on a 2× HiDPI screen: nothing a user needs is
clipped, elided or drawn over (checks on the real widgets, see layout_check.py; screenshots kept for the eye)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from layout_check import layout_problems, settle

HERE = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def app_style(qapp):
    """The app's own style sheet and fonts, as lrpseg-gui starts with; reset for the other tests."""
    from lrpseg.app.main import apply_style

    apply_style(qapp)
    yield
    qapp.setStyleSheet("")


def _shown_with_model(make_window, folder, qtbot, size):
    window = make_window()
    window.resize(*size)
    assert window.open_folder(folder)
    qtbot.waitUntil(lambda: window.handle is not None, timeout=10000)
    qtbot.waitUntil(lambda: window.current_analysis() is not None, timeout=30000)
    settle()
    return window


def test_empty_window_and_no_model_layout(make_window, demo_folder, qtbot, tmp_path):
    window = make_window()
    assert layout_problems(window) == []
    window.open_folder(demo_folder)
    settle()
    window.grab().save(str(tmp_path / "no-model.png"))
    assert layout_problems(window) == []


def test_layout_with_an_analysis_at_1280x800_and_1920x1080(make_window, demo_folder, slim_checkpoint,
                                                          use_checkpoint, qtbot, tmp_path):
    use_checkpoint(demo_folder, slim_checkpoint)
    window = _shown_with_model(make_window, demo_folder, qtbot, (1280, 800))
    for size in ((1280, 800), (1920, 1080)):
        window.resize(*size)
        settle()
        window.grab().save(str(tmp_path / f"window-{size[0]}x{size[1]}.png"))
        assert layout_problems(window) == [], size
    window.resize(1280, 800)
    window.viewer.set_image(None, "Unreadable image")  # placeholder after an image was shown
    settle()
    assert layout_problems(window) == []


def test_layout_while_retraining(make_window, demo_folder, slim_checkpoint, use_checkpoint, slim_settings, qtbot):
    from lrpseg.core.labels import labels_from_folders

    use_checkpoint(demo_folder, slim_checkpoint)
    window = make_window(demo_folder)
    qtbot.waitUntil(lambda: window.handle is not None, timeout=10000)
    window.project.set_labels(labels_from_folders(demo_folder))
    window.project.set_setting("train_config", {**slim_settings, "epochs": 3})
    messages = []
    window.statusBar().messageChanged.connect(messages.append)
    assert window.job_controller.start_training()
    qtbot.waitUntil(lambda: any(m.startswith("Training") and "epoch" in m for m in messages), timeout=60000)
    assert window.progress.isVisible()
    longest = "Training: epoch 40/40, step 30/30, loss 0.693, validation balanced accuracy 0.75"
    # progress lines only: the start line's few-labels warning is longer than any status bar (left to issue 12)
    for message in [m for m in messages if m.startswith("Training:")] + [longest]:
        assert layout_problems(window, status_message=message) == []
    window.job_controller.cancel()
    qtbot.waitUntil(lambda: not window.job_controller.busy(), timeout=60000)


def test_layout_on_a_2x_hidpi_screen(demo_folder, slim_checkpoint, use_checkpoint, tmp_path):
    use_checkpoint(demo_folder, slim_checkpoint)
    shot = tmp_path / "window-1280x800@2x.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QT_SCALE_FACTOR": "2"}
    done = subprocess.run([sys.executable, str(HERE / "layout_check.py"), str(demo_folder), "1280", "800",
                           str(shot)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ratio"] == 2.0 and result["pixels"] == [2560, 1600]
    assert result["problems"] == []
    assert shot.exists()
