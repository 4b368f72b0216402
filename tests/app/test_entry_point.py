"""``lrpseg-gui --version`` and ``--smoke-test`` (what packaging/smoke.sh runs on a bundle)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.Popen([sys.executable, "-m", "lrpseg.app.main", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_version_and_smoke_test_subprocesses(demo_folder):
    from lrpseg.core.cli import version_text

    # both at once: each spends most of its time importing torch (and Qt)
    version = _start("--version")
    smoke = _start(str(demo_folder), "--smoke-test", "0.5", "--device", "cpu")
    out, err = version.communicate(timeout=120)
    assert version.returncode == 0, err
    assert out.strip() == f"lrpseg-gui: {version_text()}"  # lrpseg --version's text

    out, err = smoke.communicate(timeout=120)
    assert smoke.returncode == 0, err
    lines = out.splitlines()
    assert lines.count("lrpseg-gui: window shown (12 images)") == 1
    assert lines[-1] == "lrpseg-gui: quit cleanly (worker threads stopped)"
    assert (demo_folder / ".lrpseg" / "project.sqlite").exists()


def test_smoke_test_fails_when_the_folder_does_not_open(qtbot, tmp_path, capsys):
    from lrpseg.app.main import SmokeTest
    from lrpseg.app.main_window import MainWindow
    from lrpseg.app.workers import running_threads
    from PySide6.QtWidgets import QMessageBox

    window = MainWindow(tmp_path / "missing", device="cpu")
    qtbot.addWidget(window)
    exits = []

    class App:  # QApplication.exit() outside app.exec() would upset the other tests' event loops
        exit = exits.append

    smoke = SmokeTest(App, window, 0.1, str(tmp_path / "missing"))
    window.show()
    qtbot.waitUntil(lambda: smoke.finished, timeout=10000)
    assert smoke.result == 1 and exits == [1] and not window.isVisible() and not running_threads()
    out, err = capsys.readouterr()
    assert "window shown" not in out
    assert "smoke test failed: Cannot open folder:" in err and "is not a folder" in err
    for box in window.findChildren(QMessageBox):  # the error box would stay the active window
        box.close()
