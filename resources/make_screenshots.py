"""Make the README screenshots from the real window (offscreen), as a newcomer's first run goes: README's run
command (``lrpseg demo DIR``: the demo folder, three quarters of it labelled), then one Retrain with the demo
project's stored settings; the main window shows a held-out damaged image with its heatmap and mask, then a
second retraining is grabbed while its progress bar runs, and cancelled.

    .venv/bin/python resources/make_screenshots.py [--out resources/screenshots] [--scale 2] [--demo-seed 0]

It prints the trained model's summary, the balanced accuracy and median confidence on the images left
unlabelled (held out), and the app's export of that model (``lrpseg segment --project``) scored against the
demo's true masks (``lrpseg evaluate``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

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


def settle_thumbnails(app, window) -> None:
    """Wait until every row the list shows has its thumbnail.

    An offscreen view asks for the thumbnails of rows scrolled into view only when it is painted, so paint
    (grab) until a paint asks for no new decode.
    """
    loader = window.list_model.thumbnails
    if loader is None:
        return
    for _ in range(10):
        decodes = loader.decodes
        window.grab()
        wait_until(app, loader.is_idle, 60, "thumbnails")
        for _ in range(20):
            app.processEvents()
        if loader.decodes == decodes:
            return


def main(argv: list[str] | None = None) -> int:
    """Write ``main-window.png`` and ``retraining.png``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "screenshots")
    parser.add_argument("--keep", type=Path, help="keep the demo project here (default: temporary)")
    parser.add_argument("--scale", type=float, default=1.0, help="device pixel ratio (QT_SCALE_FACTOR)")
    parser.add_argument("--demo-seed", type=int, default=0,
                        help="seed of the demo folder (README's is 0; others measure the same path on other data)")
    args = parser.parse_args(argv)
    if args.scale != 1.0:
        os.environ["QT_SCALE_FACTOR"] = str(args.scale)

    from lrpseg.app.main import apply_style, limit_cpu_threads
    from lrpseg.app.main_window import MainWindow
    from lrpseg.core.cli import main as lrpseg_main
    from lrpseg.core.labels import labels_from_folders
    from PySide6.QtWidgets import QApplication

    limit_cpu_threads()
    app = QApplication.instance() or QApplication([])
    apply_style(app)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = args.keep or tmp
        folder = Path(tmp) / "demo" / "images"
        assert lrpseg_main(["demo", str(folder.parent), "--seed", str(args.demo_seed)]) == 0  # README's run command
        truth = labels_from_folders(folder)
        window = MainWindow(device="cpu")
        window.resize(1280, 800)
        window.show()
        assert window.open_folder(folder)
        held_out = sorted(set(truth) - set(window.project.labels()))
        config = window.project.get_setting("train_config")
        print(f"stored training settings: {config}")
        started = time.perf_counter()
        assert window.job_controller.start_training()
        wait_until(app, lambda: window.handle is not None, 3600, "training")
        print(f"trained in {time.perf_counter() - started:.1f} s: {window.handle.describe()}")
        wait_until(app, lambda: len(window.list_model.probabilities) == len(window.list_model.paths), 300,
                   "predictions")
        probabilities = window.list_model.probabilities
        called = {rel: probabilities[rel] >= 0.5 for rel in held_out}
        tpr = np.mean([called[r] for r in held_out if truth[r] == "damaged"])
        tnr = np.mean([not called[r] for r in held_out if truth[r] == "undamaged"])
        confidence = np.median([max(probabilities[r], 1 - probabilities[r]) for r in held_out])
        print(f"held out: {len(held_out)} images, balanced accuracy {(tpr + tnr) / 2:.3f}, "
              f"median max-probability {confidence:.3f}")
        damaged = [r for r in held_out if truth[r] == "damaged"]
        best = max(damaged, key=lambda r: probabilities[r])
        window.sort_combo.setCurrentIndex(window.sort_combo.findData("uncertain"))
        window.select(best)
        wait_until(app, lambda: window.current_analysis() is not None
                   and window.viewer.displayed_mask() is not None, 120, "analysis")
        window.list_view.setFocus()
        settle_thumbnails(app, window)
        window.grab().save(str(args.out / "main-window.png"))

        assert window.job_controller.start_training()
        job = window.jobs.job("train")
        wait_until(app, lambda: window.progress.value() >= 25, 900, "training progress")
        for _ in range(20):
            app.processEvents()
        window.grab().save(str(args.out / "retraining.png"))
        window.job_controller.cancel()
        wait_until(app, lambda: job.isFinished(), 120, "cancel")
        window.shutdown()
        window.close()
        export = Path(tmp) / "export"
        assert lrpseg_main(["segment", "--project", str(folder), "--out", str(export)]) == 0
        report = io.StringIO()
        with contextlib.redirect_stdout(report):
            lrpseg_main(["evaluate", str(export), "--truth", str(folder.parent / "masks"), "--json"])
        scores = json.loads(report.getvalue())
        print("the app's export against the demo's masks: "
              + ", ".join(f"{k} {scores[k]:.3f}" for k in ("iou", "precision", "recall", "ap", "balanced_accuracy")))
    print(f"wrote {args.out / 'main-window.png'} and {args.out / 'retraining.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
