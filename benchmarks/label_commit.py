"""How long one label click takes: the fsync'ed commit itself, and the stall the user feels in the window.

``lrpseg`` commits every label with ``synchronous=FULL`` (:mod:`lrpseg.core.project_store`), so a commit costs
the disk's fsync latency. Two measurements, on the disk in question (``--folder``, a network share or a USB
stick) or on a slow disk simulated with :mod:`slow_disk` (``--slow-fsync-ms``: a FUSE passthrough mount that
adds that delay to every fsync):

* ``commit``: ``Project.set_label`` called directly, one label after another (the time of one commit);
* ``gui``: the real :class:`~lrpseg.app.main_window.MainWindow` (offscreen Qt), the D and U keys pressed
  alternately on a project of small images; per press, the time from the key press until the event loop runs
  its next turn, i.e. how long the window is frozen by one label click.

Projects are created in fresh temporary folders inside the disk and removed afterwards. Prints the median, 95th
percentile and maximum in ms, and one ``RESULT`` line.

    .venv/bin/python benchmarks/label_commit.py [--folder DISK] [--slow-fsync-ms 200] [--parts commit,gui]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from lrpseg.core.project import Project


def measure(folder: Path, clicks: int) -> list[float]:
    """Commit ``clicks`` label changes one by one in a project under ``folder``; ms per commit."""
    work = Path(tempfile.mkdtemp(prefix="lrpseg-label-commit-", dir=folder))
    try:
        for i in range(8):
            cv2.imwrite(str(work / f"{i}.png"), np.zeros((8, 8), np.uint8))
        times = []
        with Project.open(work) as project:
            for i in range(clicks):
                start = time.perf_counter()
                # every click changes a label (each image flips on each visit), so every one commits
                project.set_label(f"{i % 8}.png", "damaged" if (i // 8) % 2 else "undamaged")
                times.append(1000 * (time.perf_counter() - start))
        return times
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure_gui(folder: Path, clicks: int) -> list[float]:
    """Press D and U alternately ``clicks`` times in the real window; ms from each press to the next loop turn."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from lrpseg.app.main_window import MainWindow
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    work = Path(tempfile.mkdtemp(prefix="lrpseg-label-gui-", dir=folder))
    try:
        for i in range(clicks):
            cv2.imwrite(str(work / f"{i:04d}.png"), np.full((32, 32), i % 256, np.uint8))
        window = MainWindow(work, device="cpu")
        window.show()
        window.activateWindow()
        deadline = time.monotonic() + 60
        while window.current is None and time.monotonic() < deadline:
            app.processEvents()
        if window.current is None:
            raise RuntimeError(f"the window did not open {work}")
        times = []
        for i in range(clicks):
            rel, key = window.current, Qt.Key.Key_U if i % 2 else Qt.Key.Key_D
            turned = []
            start = time.perf_counter()
            QTest.keyClick(window, key)
            QTimer.singleShot(0, lambda turned=turned: turned.append(time.perf_counter()))
            while not turned:
                app.processEvents()
            times.append(1000 * (turned[0] - start))
            expected = "undamaged" if key == Qt.Key.Key_U else "damaged"
            if window.list_model.labels.get(rel) != expected:
                raise RuntimeError(f"pressing {key.name} did not label {rel}")
        start = time.perf_counter()
        window.close()  # waits for the labels still being written
        print(f"closing the window waited {time.perf_counter() - start:.2f} s for the labels still queued")
        app.processEvents()
        return times
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summary(name: str, times: list[float]) -> str:
    """One line with median, p95 and max; prints it with ``name`` too."""
    times = sorted(times)
    median, p95 = statistics.median(times), times[int(0.95 * (len(times) - 1))]
    print(f"{name}: {len(times)} clicks, median {median:.2f} ms, p95 {p95:.2f} ms, max {times[-1]:.2f} ms")
    return f"{name}_median_ms={median:.2f} {name}_p95_ms={p95:.2f} {name}_max_ms={times[-1]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()), help="disk to measure")
    parser.add_argument("--slow-fsync-ms", type=float, default=None,
                        help="measure on a slow_disk FUSE mount inside --folder with this fsync delay")
    parser.add_argument("--clicks", type=int, default=200)
    parser.add_argument("--parts", default="commit,gui")
    args = parser.parse_args()
    parts = args.parts.split(",")
    with contextlib.ExitStack() as stack:
        folder = args.folder
        if args.slow_fsync_ms is not None:
            import slow_disk
            mountpoint = Path(tempfile.mkdtemp(prefix="slow-disk-", dir=args.folder))
            stack.callback(shutil.rmtree, mountpoint, ignore_errors=True)
            folder = stack.enter_context(slow_disk.mounted(mountpoint, fsync_ms=args.slow_fsync_ms))
            print(f"slow disk: {folder}, {args.slow_fsync_ms:g} ms per fsync")
        results = []
        if "commit" in parts:
            results.append(summary("commit", measure(folder, args.clicks)))
        if "gui" in parts:
            results.append(summary("gui", measure_gui(folder, args.clicks)))
    print("RESULT " + " ".join(results))


if __name__ == "__main__":
    main()
