"""GUI latency of the desktop app, measured on the real window (offscreen Qt unless a display is set).

1. Threshold slider tick -> repainted frame, with a 224² and a 2048² image, score map and heatmap on screen:
   ``slider.setValue`` (the same path a drag takes from ``valueChanged`` on) then the event loop until the
   viewer has painted. Fill style changes only the mask's lookup table; outline style (compares the score
   and its precomputed neighbourhood minimum with the threshold, at screen resolution when zoomed out) is
   reported too, and beside it ``outline-full``: the same with the outline computed at full resolution, as
   before the viewer's stride, so the ratio is measured in one run.
2. Brush strokes (:mod:`gui_brush`) at 224² and 2048², fill and outline style: a mouse move with the left
   button held -> the corrected mask's overlay repainted (target: median 8 ms).
3. Longest event-loop stall while training and LRP run in the background: a 5 ms QTimer records the gaps
   between its ticks while a training job runs and the analysis service explains image after image. The
   reported stall (``max_stall_ms``) is the largest gap minus the 5 ms period. A second run also steps to the
   next image every 150 ms, as an inspector would, and a third paints brush strokes (a move every 16 ms, each
   40th move ends the stroke and stores the mask); their gaps include the window's own repaints and are
   printed, not part of the RESULT line (target for painting: no gap over 50 ms).
4. Switching the segmenter on the image on screen (re-segments the explanation held in memory, no LRP),
   against showing an image whose explanation must come from LRP (the project's relevance cache bypassed) or
   from that cache (as after a restart): request -> analysis in the window's cache, on the demo's 224² images.
5. Opening a folder of 10,000 small PNGs (copies of one tiny image): ``open_folder`` until the list has painted,
   then scrolling the whole list page by page (frame time per page; thumbnails load lazily), and the resident
   memory before and after.

    .venv/bin/python benchmarks/gui_latency.py [--quick] [--parts ticks,strokes,stall,switch,open]

The last line is ``RESULT tick_224_ms=<x> tick_2048_ms=<y> max_stall_ms=<z>`` (medians of the ticks).
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import gui_brush
import numpy as np

TICK_TARGET_MS = 5.0
STROKE_TARGET_MS = 8.0
STALL_TARGET_MS = 50.0
OPEN_TARGET_S = 2.0


def rss_mb() -> float:
    """Resident memory of this process in MiB (Linux; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def pump(app, seconds: float = 0.0) -> None:
    """Process events for ``seconds`` (at least once)."""
    end = time.perf_counter() + seconds
    app.processEvents()
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)


def wait_until(app, condition, timeout_s: float, what: str) -> None:
    """Process events until ``condition()``; raise TimeoutError after ``timeout_s``."""
    end = time.perf_counter() + timeout_s
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.002)


class PaintCounter:
    """Counts paint events of a widget (event filter)."""

    def __init__(self, widget) -> None:
        from PySide6.QtCore import QEvent, QObject

        class _Filter(QObject):
            def __init__(self, outer):
                super().__init__()
                self.outer = outer

            def eventFilter(self, obj, event):  # noqa: N802 - Qt override
                if event.type() == QEvent.Type.Paint:
                    self.outer.count += 1
                return False

        self.count = 0
        self._filter = _Filter(self)
        widget.installEventFilter(self._filter)


# ------------------------------------------------------------------------------------------------ ticks
def bench_ticks(app, window, size: int, ticks: int, style: str = "fill") -> tuple[list[float], list[float]]:
    """Milliseconds from ``slider.setValue`` to a finished repaint of the viewer, one value per tick: wall
    clock, and the GUI thread's CPU time (what the tick costs when the machine is not shared)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    rgb = (np.dstack([yy, xx, 0.5 * (xx + yy)]) * 200 + rng.integers(0, 40, (size, size, 3))).astype(np.uint8)
    relevance = (np.sin(12 * xx) * np.cos(9 * yy) + 0.1 * rng.standard_normal((size, size))).astype(np.float32)
    score = np.clip(0.5 + 0.5 * np.sin(7 * xx + 3 * yy), 0, 1).astype(np.float32)
    viewer, panel = window.viewer, window.panel
    window.current = None  # a synthetic image: nothing is stored in a project
    viewer.set_image(rgb)
    viewer.set_relevance(relevance)
    viewer.set_score(score, 0.5)
    full_resolution = style == "outline-full"
    if full_resolution:
        viewer._screen_stride = lambda: 1  # the outline at every image pixel, zoomed out or not
        style = "outline"
    viewer.set_mask_style(style)
    panel.set_threshold_enabled(True)
    panel.show_threshold(0.5, 0.5, False)
    pump(app, 0.3)
    counter = PaintCounter(viewer.viewport())
    times, cpu = [], []
    for i in range(ticks + 5):
        value = 300 + (i * 37) % 400  # thresholds 0.3 .. 0.7, never the same twice in a row
        before = counter.count
        start, start_cpu = time.perf_counter(), time.thread_time()
        panel.slider.setValue(value)
        while counter.count == before and time.perf_counter() - start < 10:
            app.processEvents()
        app.processEvents()
        elapsed, elapsed_cpu = (time.perf_counter() - start) * 1000, (time.thread_time() - start_cpu) * 1000
        if i >= 5:  # warm-up ticks
            times.append(elapsed)
            cpu.append(elapsed_cpu)
    viewer.set_mask_style("fill")
    if full_resolution:
        del viewer._screen_stride
    return times, cpu


# ------------------------------------------------------------------------------------------------ stall
def keep_lrp_busy(window) -> None:
    """Queue LRP for every image under every rule set (look-ahead priority) so the service never idles."""
    from lrpseg.app.analysis import AnalysisKey
    from lrpseg.app.session import rule_set_choices

    handle = window.handle
    keys = [AnalysisKey(rel, handle.model_id, rule_set, window.segmenter)
            for rule_set in rule_set_choices() for rel in window.list_model.paths]
    window.service.look_ahead([], [k for k in keys if k not in window.analyses], handle)


def measure_gaps(app, window, seconds: float, step_every_ms: int | None, action=None) -> dict:
    """Gaps of a 5 ms QTimer while training and LRP run; every ``step_every_ms`` (if given) step to the next
    image, or call ``action`` instead (e.g. one brush move)."""
    from PySide6.QtCore import QTimer

    gaps: list[float] = []
    last = [time.perf_counter()]
    collections: list[float] = []
    started = [0.0]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append((now - last[0]) * 1000)
        last[0] = now

    def on_gc(phase: str, info: dict) -> None:  # any thread; the collector holds the GIL meanwhile
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            collections.append((time.perf_counter() - started[0]) * 1000)

    def step() -> None:
        if window.list_view.currentIndex().row() + 1 < window.list_model.rowCount():
            window.step(1)
        else:
            window.select(window.list_model.rel_at(0))

    assert window.job_controller.start_training()
    wait_until(app, lambda: window.jobs.is_running("train"), 10, "training start")
    keep_lrp_busy(window)
    analysed_before = len(window.analyses)
    timer, stepper = QTimer(), QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    stepper.setInterval(step_every_ms or 1000)
    stepper.timeout.connect(action or step)
    pump(app, 1.0)  # training past its image loading, LRP running
    last[0] = time.perf_counter()
    gc.callbacks.append(on_gc)
    timer.start()
    if step_every_ms:
        stepper.start()
    pump(app, seconds)
    timer.stop()
    stepper.stop()
    gc.callbacks.remove(on_gc)
    # (no signal connect/disconnect here: disconnecting a slot while cross-thread emissions are queued
    # has crashed PySide6; the analysis cache counts what arrived)
    analysed = len(window.analyses) - analysed_before
    training_ran = window.jobs.is_running("train")
    window.job_controller.cancel()
    wait_until(app, lambda: not window.jobs.is_running("train"), 120, "training cancel")
    window.service.look_ahead([], [], None)
    wait_until(app, window.service.is_idle, 120, "service idle")
    gaps = np.array(gaps[1:])
    return {"max_gap_ms": float(gaps.max()), "p99_gap_ms": float(np.percentile(gaps, 99)), "ticks": len(gaps),
            "lrp_done": analysed, "training_ran_throughout": training_ran,
            "gc_max_ms": max(collections, default=0.0), "gc_runs": len(collections)}


def not_adopted(window):
    """The window's "New model not adopted" box, when it shows one."""
    from PySide6.QtWidgets import QMessageBox

    box = window.findChild(QMessageBox, "NotAdoptedBox")
    return box if box is not None and box.isVisible() else None


def bench_stall(app, window, folder: Path, seconds: float) -> tuple[dict, dict, dict]:
    """Event-loop gaps with training + LRP in the background: idle GUI, GUI stepping every 150 ms, and the
    user painting a brush stroke (one mouse move every 16 ms, a new stroke, so a save, every 40 moves)."""
    from lrpseg.core.labels import labels_from_folders

    assert window.open_folder(folder)
    window.project.set_labels(labels_from_folders(folder))
    window.list_model.labels = window.project.labels()
    window.project.set_setting("train_config", {"width": 0.25, "input_size": 128, "epochs": 1, "batch_size": 8})
    assert window.job_controller.start_training()
    wait_until(app, lambda: window.handle is not None or not_adopted(window), 600, "first model")
    if window.handle is None:  # one epoch is near chance, so the window offers "Use anyway": take it
        box = not_adopted(window)
        box.buttons()[[b.text() for b in box.buttons()].index("Use anyway")].click()
        wait_until(app, lambda: window.handle is not None, 60, "the model used anyway")
    wait_until(app, window.service.is_idle, 300, "predictions")
    window.project.set_setting("train_config", {"width": 0.5, "input_size": 224, "epochs": 200, "batch_size": 8,
                                                "patience": 1000})
    background = measure_gaps(app, window, seconds, None)
    stepping = measure_gaps(app, window, seconds, 150)
    size = window.viewer.image_shape()[0]
    driver = gui_brush.prepare(app, window, window.current, size, "fill", pump, wait_until)
    painting = measure_gaps(app, window, seconds, 16, action=driver.move)
    driver.release()
    assert window.mask_editor.flush()
    painting["strokes"] = driver.moves // gui_brush.STROKE_MOVES
    window.mask_editor.set_tool(None)
    return background, stepping, painting


# ------------------------------------------------------------------------------------------------ switch
def bench_switch(app, window, repeats: int) -> dict[str, list[float]]:
    """Milliseconds until the current image's analysis is in the window's cache: after a segmenter switch
    (explanation in memory), and after a request whose explanation comes from LRP or from the project cache."""
    from lrpseg.app import session

    def analysed(segmenter: str | None = None) -> bool:
        analysis = window.current_analysis()
        return analysis is not None and (segmenter is None or analysis.segmenter == segmenter)

    window.select(window.list_model.paths[0])
    wait_until(app, analysed, 120, "first analysis")
    segmenters = session.segmenter_choices()
    times: dict[str, list[float]] = {"switch": [], "lrp": [], "cache": []}
    for _ in range(repeats):
        target = segmenters[(segmenters.index(window.segmenter) + 1) % len(segmenters)]
        kept = window.analyses.peek(window.key(window.current))
        window.analyses.clear()  # only the explanation on screen stays in memory
        window.analyses.put(window.key(window.current), kept)
        wait_until(app, window.service.is_idle, 120, "service idle")  # look-ahead of the previous switch
        start = time.perf_counter()
        window.panel.segmenter.setCurrentText(target)
        wait_until(app, lambda target=target: analysed(target), 60, "re-segmentation")
        times["switch"].append((time.perf_counter() - start) * 1000)
        times.setdefault(f"switch to {target}", []).append(times["switch"][-1])
    store = window.service._store
    for name, cache in (("lrp", None), ("cache", store)):
        window.service._store = cache
        for _ in range(repeats):
            window.analyses.clear()
            wait_until(app, window.service.is_idle, 120, "service idle")
            start = time.perf_counter()
            window._show_analysis_or_request(window.current)
            wait_until(app, analysed, 120, name)
            times[name].append((time.perf_counter() - start) * 1000)
    window.service._store = store
    window.service.look_ahead([], [], None)
    wait_until(app, window.service.is_idle, 120, "service idle")
    return times


# ------------------------------------------------------------------------------------------------ open 10k
def make_folder(folder: Path, count: int) -> None:
    """``count`` copies of one 64x64 PNG (a few hundred bytes each), in 10 sub-folders."""
    import cv2

    rng = np.random.default_rng(0)
    ok, data = cv2.imencode(".png", rng.integers(90, 160, (64, 64), dtype=np.uint8))
    assert ok
    data = data.tobytes()
    for i in range(count):
        sub = folder / f"batch_{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"img_{i:05d}.png").write_bytes(data)


def bench_open(app, window, folder: Path, pages: int | None) -> dict:
    """Time to open and paint the list; frame time per page while scrolling; memory."""
    view = window.list_view
    counter = PaintCounter(view.viewport())
    memory_before = rss_mb()
    start = time.perf_counter()
    assert window.open_folder(folder)
    opened = time.perf_counter() - start
    wait_until(app, lambda: counter.count > 0, 10, "list paint")
    painted = time.perf_counter() - start
    memory_open = rss_mb()
    bar = view.verticalScrollBar()
    total_pages = max(1, bar.maximum() // max(1, bar.pageStep()))
    step = max(1, total_pages // pages) if pages else 1
    frames = []
    for value in range(bar.pageStep() * step, bar.maximum() + 1, bar.pageStep() * step):
        before = counter.count
        t0 = time.perf_counter()
        bar.setValue(value)
        wait_until(app, lambda before=before: counter.count > before, 10, "list repaint")
        frames.append((time.perf_counter() - t0) * 1000)
    pump(app, 1.0)  # let the thumbnail pool finish what is queued
    return {"images": window.list_model.rowCount(), "open_s": opened, "first_paint_s": painted,
            "scroll_pages": len(frames), "scroll_frame_median_ms": float(np.median(frames)),
            "scroll_frame_max_ms": float(np.max(frames)),
            "thumbnails_cached": window.list_model.thumbnails.cached_count(),
            "rss_before_mb": memory_before, "rss_open_mb": memory_open, "rss_after_scroll_mb": rss_mb()}


def main(argv: list[str] | None = None) -> int:
    """Run the measurements chosen with ``--parts`` and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer ticks, a shorter stall window")
    parser.add_argument("--images", type=int, default=10_000, help="size of the folder to open")
    parser.add_argument("--parts", default="ticks,strokes,stall,switch,open",
                        help="comma-separated subset of ticks,strokes,stall,switch,open (switch needs stall)")
    args = parser.parse_args(argv)

    from lrpseg.app.main import apply_style, freeze_startup_objects, limit_cpu_threads
    from lrpseg.app.main_window import MainWindow
    from lrpseg.core.demo import make_demo
    from PySide6.QtWidgets import QApplication

    limit_cpu_threads()
    app = QApplication.instance() or QApplication([])
    apply_style(app)
    window = MainWindow(device="auto")
    window.resize(1280, 800)
    window.show()
    freeze_startup_objects()  # as app.main.main does
    pump(app, 0.3)
    print(f"platform {app.platformName()}, device {window.device_label.text()}, window {window.width()}x"
          f"{window.height()}, viewer {window.viewer.width()}x{window.viewer.height()}")
    parts = set(args.parts.split(","))
    ticks = 60 if args.quick else 300
    results, strokes = {}, {}
    for size in (224, 2048) if "ticks" in parts else ():
        for style in ("fill", "outline", "outline-full"):
            times, cpu = bench_ticks(app, window, size, ticks if style == "fill" else ticks // 3, style)
            results[(size, style)] = times
            print(f"tick {size}² {style:12s}: median {np.median(times):.2f} ms, "
                  f"p95 {np.percentile(times, 95):.2f} ms, max {np.max(times):.2f} ms over {len(times)} ticks; "
                  f"GUI-thread CPU median {np.median(cpu):.2f} ms")

    tmp = Path(tempfile.mkdtemp(prefix="lrpseg-gui-bench-"))
    stall = opened = None
    try:
        if "strokes" in parts:
            names = gui_brush.make_stroke_folder(tmp / "strokes", (224, 2048))
            assert window.open_folder(tmp / "strokes")
            for size, rel in names.items():
                for style in ("fill", "outline"):
                    times, cpu, painted = gui_brush.bench_strokes(
                        app, window, rel, size, ticks // 2 if style == "fill" else ticks // 5, style,
                        PaintCounter, pump, wait_until)
                    strokes[(size, style)] = times
                    print(f"brush move {size}² {style:7s} (size {gui_brush.BRUSH_SIZE} px): median "
                          f"{np.median(times):.2f} ms, p95 {np.percentile(times, 95):.2f} ms, max "
                          f"{np.max(times):.2f} ms over {len(times)} moves; GUI-thread CPU median "
                          f"{np.median(cpu):.2f} ms; {painted} px painted (target median {STROKE_TARGET_MS} ms)")

        if "stall" in parts:
            demo = make_demo(tmp / "demo", n_damaged=24, n_undamaged=24, size=224, seed=0) / "images"
            stall, stepping, painting = bench_stall(app, window, demo, 6.0 if args.quick else 30.0)
            for name, gaps in (("background only", stall), ("user steps every 150 ms", stepping),
                               ("user paints (a move every 16 ms)", painting)):
                print(f"stall, {name}: max gap {gaps['max_gap_ms']:.1f} ms, p99 {gaps['p99_gap_ms']:.1f} ms "
                      f"over {gaps['ticks']} ticks of a 5 ms timer; {gaps['lrp_done']} LRP analyses done; "
                      f"training ran throughout: {gaps['training_ran_throughout']}; {gaps['gc_runs']} GC runs, "
                      f"longest {gaps['gc_max_ms']:.1f} ms" + (f"; {gaps['strokes']} strokes stored"
                                                                if "strokes" in gaps else ""))
        if "switch" in parts and stall is not None:
            report_switch(app, window, args.quick)
        if "open" in parts:
            opened = report_open(app, window, tmp, args.images, args.quick)
    finally:
        window.shutdown()
        window.close()
        shutil.rmtree(tmp, ignore_errors=True)

    summary = []
    if opened:
        summary.append(f"open_{args.images}_s={opened['first_paint_s']:.3f} "
                       f"scroll_frame_max_ms={opened['scroll_frame_max_ms']:.1f}")
    if results:
        summary.append(f"tick_2048_outline_ms={np.median(results[(2048, 'outline')]):.2f} "
                       f"tick_2048_outline_full_ms={np.median(results[(2048, 'outline-full')]):.2f}")
    if strokes:
        summary.append(" ".join(f"stroke_{size}_{style}_ms={np.median(times):.2f}"
                                for (size, style), times in strokes.items()))
    if stall is not None:
        summary.append(f"stall_stepping_ms={max(0.0, stepping['max_gap_ms'] - 5.0):.1f} "
                       f"stall_painting_ms={max(0.0, painting['max_gap_ms'] - 5.0):.1f}")
    print(" ".join(summary))
    if results and stall is not None:
        print(f"RESULT tick_224_ms={np.median(results[(224, 'fill')]):.2f} "
              f"tick_2048_ms={np.median(results[(2048, 'fill')]):.2f} "
              f"max_stall_ms={max(0.0, stall['max_gap_ms'] - 5.0):.1f}")
    return 0


def report_switch(app, window, quick: bool) -> None:
    """Run and print :func:`bench_switch` (after :func:`bench_stall`, which leaves a model and the demo)."""
    switch = bench_switch(app, window, 6 if quick else 21)
    shown = f"mode {window.current_analysis().mode}, segmenter {window.segmenter}"
    print(f"show the current image (224², model input 128, {shown}): " + ", ".join(
        f"{label} median {np.median(switch[key]):.0f} ms (max {np.max(switch[key]):.0f})"
        for key, label in (("switch", "segmenter switch, explanation in memory"),
                           ("lrp", "explained by LRP"), ("cache", "relevance from the project cache"))))
    print("segmenter switch by target: " + ", ".join(
        f"{key[10:]} {np.median(value):.0f} ms" for key, value in switch.items() if key.startswith("switch to")))


def report_open(app, window, tmp: Path, images: int, quick: bool) -> dict:
    """Make a folder of ``images`` PNGs, run and print :func:`bench_open`."""
    folder = tmp / "many"
    t0 = time.perf_counter()
    make_folder(folder, images)
    print(f"made {images} PNGs in {time.perf_counter() - t0:.1f} s")
    opened = bench_open(app, window, folder, pages=100 if quick else None)
    print(f"open {opened['images']} images: open_folder {opened['open_s']:.2f} s, list painted after "
          f"{opened['first_paint_s']:.2f} s (target < {OPEN_TARGET_S} s)")
    print(f"scroll {opened['scroll_pages']} pages: frame median {opened['scroll_frame_median_ms']:.1f} "
          f"ms, max {opened['scroll_frame_max_ms']:.1f} ms; thumbnails cached {opened['thumbnails_cached']}")
    print(f"memory: {opened['rss_before_mb']:.0f} MiB before, {opened['rss_open_mb']:.0f} MiB open, "
          f"{opened['rss_after_scroll_mb']:.0f} MiB after scrolling everything")
    return opened


if __name__ == "__main__":
    sys.exit(main())
