"""Entry point ``lrpseg-gui [FOLDER]``: start the desktop app, optionally opening an image folder."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
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
    return parser.parse_args(argv)


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
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from PySide6.QtWidgets import QApplication

    from app.main_window import MainWindow
    from core.device import resolve_device

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
    window.show()
    freeze_startup_objects()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
