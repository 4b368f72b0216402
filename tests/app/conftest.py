"""Fixtures of the GUI tests: offscreen Qt, a small demo folder, a window, a slim trained model, and a check
that no test leaves one of the app's worker threads running."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before anything imports Qt

import shutil
from pathlib import Path

import pytest
from lrpseg.core.demo import make_demo

SLIM = {"head": "128n", "width": 0.125, "input_size": 64, "epochs": 1, "batch_size": 8, "seed": 0,
        "patience": 1, "extend_while_poor": False}  # these tiny models never reach 0.9: train exactly the epochs


@pytest.fixture
def slim_settings() -> dict:
    """The ``train_config`` project setting of a slim, fast model."""
    return dict(SLIM)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    """A demo data set (6 damaged + 6 undamaged 64 px images), made once; tests copy it."""
    return make_demo(tmp_path_factory.mktemp("demo"), n_damaged=6, n_undamaged=6, size=64, seed=0)


@pytest.fixture
def demo_folder(demo_template, tmp_path) -> Path:
    """A fresh copy of the demo's image folder (the project store is written inside it)."""
    folder = tmp_path / "images"
    shutil.copytree(demo_template / "images", folder)
    return folder


@pytest.fixture(scope="session")
def slim_checkpoint(demo_template, tmp_path_factory) -> Path:
    """A slim VGG-A (width 0.125, 64 px input) trained for one epoch on the demo, as a checkpoint file."""
    from lrpseg.core.labels import labels_from_folders
    from lrpseg.core.train import TrainConfig, train_to_checkpoint

    labels = labels_from_folders(demo_template / "images")
    rels = sorted(labels)
    out = tmp_path_factory.mktemp("model") / "model-slim.safetensors"
    train_to_checkpoint([demo_template / "images" / r for r in rels], [labels[r] for r in rels],
                        TrainConfig(device="cpu", **SLIM), out)
    return out


def install_checkpoint(folder: Path, checkpoint: Path) -> Path:
    """Put a trained checkpoint into the folder's project, as a finished training would; return its path."""
    from lrpseg.core.project import Project

    target = folder / ".lrpseg" / "models" / checkpoint.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(checkpoint, target)
    with Project.open(folder) as project:
        project.model_path = target
    return target


@pytest.fixture
def use_checkpoint():
    """``use_checkpoint(folder, checkpoint)``: :func:`install_checkpoint` as a fixture."""
    return install_checkpoint


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Fail a test that leaves a job, the analysis service or thumbnail threads running."""
    yield
    from lrpseg.app.workers import running_threads

    left = running_threads()
    assert not left, f"worker threads still running after the test: {left}"


@pytest.fixture
def make_window(qtbot):
    """Factory: ``make_window(folder=None)`` builds a shown MainWindow that is shut down after the test."""
    from lrpseg.app.main_window import MainWindow

    windows = []

    def make(folder: Path | None = None):
        window = MainWindow(device="cpu")
        qtbot.addWidget(window)
        window.show()
        window.activateWindow()  # window shortcuts (D, U, Ctrl+Z) need the active window
        qtbot.waitUntil(window.isActiveWindow, timeout=5000)
        windows.append(window)
        if folder is not None:
            assert window.open_folder(folder)
        return window

    yield make
    for window in windows:
        window.shutdown()


@pytest.fixture
def wait_idle(qtbot):
    """``wait_idle(window)``: wait until the analysis service is idle and its signals were delivered."""

    from PySide6.QtCore import QCoreApplication

    def wait(window, timeout: int = 30000) -> None:
        qtbot.waitUntil(lambda: window.service is None or window.service.is_idle(), timeout=timeout)
        # The worker emits before it goes idle, so its last signals are already posted: deliver them.
        QCoreApplication.processEvents()

    return wait


@pytest.fixture(scope="session")
def damaged_checkpoint(slim_checkpoint, tmp_path_factory) -> Path:
    """The slim model with its damaged logit raised by 20: it calls every image damaged, so every export has
    masks to compare (a one-epoch model may call every image undamaged, which would leave all masks empty)."""
    import torch
    from lrpseg.core.checkpoint import load_checkpoint, save_checkpoint

    model, metadata = load_checkpoint(slim_checkpoint)
    with torch.no_grad():
        model.classifier.fc3.bias[1] += 20.0
    out = tmp_path_factory.mktemp("damaged") / "model-damaged.safetensors"
    save_checkpoint(out, model, metadata.get("training"))
    return out
