"""Make the README screenshots from the real window (offscreen): the main window with both overlays, and the
window while a retraining runs.

    .venv/bin/python resources/make_screenshots.py [--out resources/screenshots] [--epochs 12]

It builds the synthetic demo (``core.demo``), labels it from the folder names, trains a slim model through the
window's own training job, shows a damaged image with its heatmap and mask, then starts a retraining and grabs
the window while the progress bar runs, and cancels it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

HERE = Path(__file__).resolve().parent


def wait_until(app, condition, timeout_s: float, what: str) -> None:
    """Run the event loop until ``condition()`` holds."""
    end = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    """Write ``main-window.png`` and ``retraining.png``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "screenshots")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--width", type=float, default=0.25)
    args = parser.parse_args(argv)

    from lrpseg.app.main import apply_style, limit_cpu_threads
    from lrpseg.app.main_window import MainWindow
    from lrpseg.core.demo import make_demo
    from lrpseg.core.labels import labels_from_folders
    from PySide6.QtWidgets import QApplication

    limit_cpu_threads()
    app = QApplication.instance() or QApplication([])
    apply_style(app)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_demo(Path(tmp) / "demo", n_damaged=24, n_undamaged=24, size=128, seed=0) / "images"
        window = MainWindow(device="cpu")
        window.resize(1280, 800)
        window.show()
        assert window.open_folder(folder)
        labels = labels_from_folders(folder)
        unlabelled = sorted(labels)[::6]  # leave every sixth image unlabelled, as mid-way through a folder
        window.project.set_labels({rel: lab for rel, lab in labels.items() if rel not in unlabelled})
        window.list_model.labels = window.project.labels()
        # A small network that learns the demo from scratch in under a minute on a CPU (no ImageNet weights
        # here): the one-FC head and a conv learning rate of 1e-3 instead of the paper's 1e-4.
        config = {"head": "onefc", "width": args.width, "input_size": 128, "epochs": args.epochs,
                  "batch_size": 8, "patience": args.epochs, "lr_conv": 1e-3}
        window.project.set_setting("train_config", config)
        started = time.perf_counter()
        assert window.job_controller.start_training()
        wait_until(app, lambda: window.handle is not None, 1200, "training")
        print(f"trained in {time.perf_counter() - started:.1f} s: {window.handle.describe()}")
        wait_until(app, lambda: len(window.list_model.probabilities) == len(window.list_model.paths), 300,
                   "predictions")
        probabilities = window.list_model.probabilities
        damaged = [r for r in window.list_model.paths if r.startswith("damaged/")]
        best = max(damaged, key=lambda r: probabilities[r])
        window.sort_combo.setCurrentIndex(window.sort_combo.findData("uncertain"))
        window.select(best)
        wait_until(app, lambda: window.current_analysis() is not None
                   and window.viewer.displayed_mask() is not None, 120, "analysis")
        window.list_view.setFocus()
        for _ in range(20):
            app.processEvents()
        window.grab().save(str(args.out / "main-window.png"))

        window.project.set_setting("train_config", {**config, "epochs": 40})
        assert window.job_controller.start_training()
        job = window.jobs.job("train")
        wait_until(app, lambda: window.progress.value() >= 60, 600, "training progress")
        for _ in range(20):
            app.processEvents()
        window.grab().save(str(args.out / "retraining.png"))
        window.job_controller.cancel()
        wait_until(app, lambda: job.isFinished(), 120, "cancel")
        window.shutdown()
        window.close()
    print(f"wrote {args.out / 'main-window.png'} and {args.out / 'retraining.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
