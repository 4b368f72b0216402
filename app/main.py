"""Entry point ``lrpseg-gui [FOLDER]``: start the desktop app, optionally opening an image folder.

``--version`` prints the version line of ``lrpseg --version``; ``--smoke-test SECONDS`` opens the window, says
when it is shown (with FOLDER listed), and quits by itself: packaging/smoke.sh runs it on a frozen bundle.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from pathlib import Path

STYLE_SHEET = Path(__file__).with_name("style.qss")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the GUI."""
    parser = argparse.ArgumentParser(prog="lrpseg-gui", description="Label images, train, explain, segment.")
    parser.add_argument(
        "folder", nargs="?", help="image folder to open (its project lives in FOLDER/.lrpseg)"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N]")
    parser.add_argument("--style", choices=("dark", "native"), default="dark", help="look of the window")
    parser.add_argument("--version", action="store_true", help="print version, torch, CUDA and device, then exit")
    parser.add_argument(
        "--smoke-test", type=float, metavar="SECONDS",
        help="check the installation: open the window (and FOLDER), print 'lrpseg-gui: window shown (N images)' "
        "once it is shown and listed, quit SECONDS later; exit code 0 only if all worked and every worker "
        "thread stopped",
    )
    args = parser.parse_args(argv)
    if args.smoke_test is not None and not args.smoke_test >= 0:
        parser.error("--smoke-test needs a number of seconds >= 0")
    return args


def version_line() -> str:
    """``lrpseg --version``'s text prefixed with the GUI's name."""
    from lrpseg.core.cli import version_text

    return f"lrpseg-gui: {version_text()}"


SMOKE_SHOW_TIMEOUT_S = 120.0


class SmokeTest:
    """Drives ``--smoke-test``: waits for the window (and its folder), then closes it after ``seconds``.

    ``result`` is the exit code: 0 when the window showed, listed the folder and its worker threads stopped.
    """

    def __init__(self, app, window, seconds: float, folder: str | None) -> None:
        from PySide6.QtCore import QTimer

        self.app, self.window, self.seconds, self.folder = app, window, seconds, folder
        self.result = 1
        self.finished = False
        self.started = time.monotonic()
        self._poll = QTimer()
        self._poll.setInterval(50)
        self._poll.timeout.connect(self._check_shown)
        self._poll.start()

    def _listed(self) -> bool:
        return self.folder is None or self.window.project is not None

    def _check_shown(self) -> None:
        from PySide6.QtCore import QTimer

        if self.window.isVisible() and self._listed():
            self._poll.stop()
            print(f"lrpseg-gui: window shown ({len(self.window.list_model.paths)} images)", flush=True)
            QTimer.singleShot(round(1000 * self.seconds), lambda: self._finish(shown=True))
        elif self.window.last_error is not None or time.monotonic() - self.started > SMOKE_SHOW_TIMEOUT_S:
            self._poll.stop()
            self._finish(shown=False)

    def _finish(self, shown: bool) -> None:
        from lrpseg.app.workers import running_threads

        if not shown:
            title, message = self.window.last_error or ("window not shown in time", "")
            reason = " ".join([f"{title}:", *message.split()])
            print(f"lrpseg-gui: smoke test failed: {reason}", file=sys.stderr, flush=True)
        self.window.close()  # stops jobs, the analysis service and the thumbnail threads
        left = running_threads()
        if left:
            print(f"lrpseg-gui: smoke test failed: threads still running: {left}", file=sys.stderr, flush=True)
        self.result = 0 if shown and not left else 1
        self.finished = True
        if self.result == 0:
            print("lrpseg-gui: quit cleanly (worker threads stopped)", flush=True)
        self.app.exit(self.result)


def limit_cpu_threads() -> None:
    """Leave one core to the GUI thread: torch on the workers uses the others (only on the CPU)."""
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))


def freeze_startup_objects() -> None:
    """Exclude everything imported and built so far from Python's cyclic garbage collector.

    torch, scipy, scikit-learn, Qt and pyqtgraph leave ~450,000 tracked objects; a full collection walks them all
    and held the GIL, so every thread and the event loop, for 0.3-0.7 s on our 2-core machine. Frozen, the same
    collection takes under a millisecond; objects made later are collected as usual.
    """
    gc.collect()
    gc.freeze()


def apply_style(app, style: str = "dark") -> None:
    """Fusion + the app's dark style sheet, and pyqtgraph colours to match."""
    import pyqtgraph as pg

    if style == "dark":
        app.setStyle("Fusion")
        app.setStyleSheet(STYLE_SHEET.read_text(encoding="utf-8"))
        pg.setConfigOptions(foreground="#c9d1d9", background="#0d1117", antialias=False)


def main(argv: list[str] | None = None) -> int:
    """Run the app; return its exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.version:
        print(version_line())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from lrpseg.app.platform_check import xcb_problem

    problem = xcb_problem()
    if problem:  # Qt itself would abort and name the wrong library
        print(problem, file=sys.stderr)
        return 3
    from lrpseg.app.main_window import MainWindow
    from lrpseg.core.device import resolve_device
    from PySide6.QtWidgets import QApplication

    try:
        resolve_device(args.device)
    except ValueError as error:
        print(f"lrpseg-gui: {error}", file=sys.stderr)
        return 2
    limit_cpu_threads()
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName("lrpseg")
    app.setOrganizationName("lrpseg")
    apply_style(app, args.style)
    window = MainWindow(args.folder, device=args.device)
    smoke = SmokeTest(app, window, args.smoke_test, args.folder) if args.smoke_test is not None else None
    window.show()
    freeze_startup_objects()
    code = app.exec()
    return smoke.result if smoke is not None else code


if __name__ == "__main__":
    sys.exit(main())
