"""The batched engine: many files per LRP batch, with decoding and segmentation overlapped with LRP.

Per image, :func:`core.pipeline.analyse` runs LRP on a batch of one and leaves the CPU idle while it decodes,
segments and writes. Here a folder flows through three stages that run at once:

1. decode + prepare (a thread pool): read the file, cut it into network inputs (:func:`prepare_image`);
2. LRP: the inputs of consecutive files are packed into full batches of ``batch_size`` windows (a tiled
   image may span batches; the last batch is padded), so every map comes from a full batch and is the same
   whichever files share it. On the CPU, batches run in parallel streams, one per usable CPU, each on its
   own copy of the model with one torch thread: on the 2-core development box two such streams explain more
   images per second than one stream with two threads, and leave the segmenter room between them
   (``benchmarks/scaleout.py``);
3. segment (a thread pool): fit the segmenter and map scores back to each file's pixel grid.

Outcomes come back in input order, while the caller writes the previous ones. Every stage holds a bounded
number of files, so memory stays flat however long the folder is. The Ray engine's workers run the same
stages on their share of the files.
"""

from __future__ import annotations

import contextlib
import copy
import os
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lrpseg.core.cancel import CancelToken, check
from lrpseg.core.images import ImageReadError, read_image
from lrpseg.core.lrp import DEFAULT_RULE_SET, DEFAULT_VIEWS
from lrpseg.core.models import VGGA
from lrpseg.core.pipeline import LRP_BATCH, Outcome, PreparedImage, explain_windows, prepare_image, segment_explained
from lrpseg.core.segment import DEFAULT_SEGMENTER

__all__ = ["EngineError", "SegmentOptions", "in_background", "ordered_map", "segment_files", "segment_folder"]

#: Errors that concern one file (or one LRP batch) and must not stop the run.
FILE_ERRORS = (ImageReadError, ValueError, RuntimeError, MemoryError)


class EngineError(RuntimeError):
    """An engine cannot run as asked (e.g. a cluster without the GPUs requested); the run stops."""


@dataclass(frozen=True)
class SegmentOptions:
    """What to compute for every file: the same for each engine."""

    rule_set: str = DEFAULT_RULE_SET
    segmenter: str = DEFAULT_SEGMENTER
    maxpool: str = "wta"
    mode: str = "auto"
    batch_size: int = LRP_BATCH
    seed: int = 0
    start: str = "logodds"
    views: int = DEFAULT_VIEWS

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch size must be at least 1, not {self.batch_size}")


def default_threads() -> int:
    """Threads for decoding and for segmenting: as many as the CPUs this process may use, at most 4."""
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def ordered_map(fn: Callable, items: Iterable, executor: Executor, lookahead: int) -> Iterator:
    """``fn(item)`` for each item, computed on ``executor``, yielded in input order.

    At most ``lookahead`` calls are pending at once, so a long input never piles up results in memory.
    """
    pending: deque = deque()
    for item in items:
        pending.append(executor.submit(fn, item))
        if len(pending) >= lookahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


_DONE = object()


def in_background(make_iterator: Callable[[], Iterator], maxsize: int) -> Iterator:
    """Run ``make_iterator()`` in a thread and yield its items here, at most ``maxsize`` ahead.

    An exception in the thread is raised here; closing this generator (or an exception in the caller) stops
    the thread at its next item.
    """
    items: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in make_iterator():
                if not put((item, None)):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put((_DONE, error))
            return
        put((_DONE, None))

    thread = threading.Thread(target=produce, name="lrpseg-batched", daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


@dataclass
class _File:
    """A file on its way through the stages."""

    path: Path
    prepared: PreparedImage | None = None
    error: str | None = None
    windows: int = 0
    relevance: list | None = None
    probability: list | None = None


def _error_text(path: Path, error: Exception) -> str:
    if isinstance(error, ImageReadError):
        return str(error)
    return f"{path}: {type(error).__name__}: {error}"


def _decode(model: VGGA, mode: str, path: Path) -> _File:
    path = Path(path)
    try:
        return _File(path, prepared=prepare_image(model, read_image(path), mode))
    except FILE_ERRORS as error:
        return _File(path, error=_error_text(path, error))


def _explain_batch(
    models: queue.Queue, batch: list[tuple[_File, torch.Tensor]], options: SegmentOptions, device: torch.device
) -> tuple[np.ndarray, np.ndarray] | Exception:
    """Relevance and probabilities of one batch on a model no other stream holds (LRP hooks into the model)."""
    tensor = torch.stack([window for _, window in batch]).to(device)
    model = models.get()
    try:
        return explain_windows(
            model, tensor, options.rule_set, options.maxpool, options.start, options.batch_size, pad=True,
            views=options.views,
        )
    except FILE_ERRORS as error:
        return error
    finally:
        models.put(model)


def _explain_files(
    models: queue.Queue, files: Iterable[_File], options: SegmentOptions, device: torch.device, pool: Executor
) -> Iterator[_File]:
    """Pack the windows of consecutive files into full LRP batches, explained on ``pool``; yield each file once
    all its windows are explained (in input order)."""
    waiting: deque[_File] = deque()

    def batches() -> Iterator[list[tuple[_File, torch.Tensor]]]:
        windows: list[tuple[_File, torch.Tensor]] = []
        for file in files:
            if file.prepared is not None:
                file.relevance, file.probability, file.windows = [], [], len(file.prepared.windows)
                windows.extend((file, window) for window in file.prepared.windows)
                file.prepared.windows = None  # the batches hold them now; free memory as batches run
            waiting.append(file)
            while len(windows) >= options.batch_size:
                yield windows[: options.batch_size]
                del windows[: options.batch_size]
        if windows:
            yield windows

    def finished() -> Iterator[_File]:
        while waiting and (waiting[0].error or len(waiting[0].relevance) == waiting[0].windows):
            yield waiting.popleft()

    def explained(batch):
        return batch, _explain_batch(models, batch, options, device)

    for batch, result in ordered_map(explained, batches(), pool, lookahead=models.maxsize):
        if isinstance(result, Exception):
            for file, _ in batch:
                file.error = file.error or _error_text(file.path, result)
        else:
            for (file, _), map_, p in zip(batch, *result, strict=True):
                file.relevance.append(map_)
                file.probability.append(p)
        yield from finished()
    yield from finished()


def lrp_streams(device: torch.device, threads: int) -> int:
    """How many LRP batches run at once: ``threads`` on the CPU (at most torch's thread count), one on a GPU."""
    return 1 if device.type != "cpu" else max(1, min(threads, torch.get_num_threads()))


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Torch's intra-op thread count (process-wide) set to ``count`` for the block."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _segment(options: SegmentOptions, file: _File) -> Outcome:
    if file.error is not None:
        return Outcome(file.path, error=file.error)
    try:
        explained = file.prepared.finish(
            np.stack(file.relevance), np.asarray(file.probability), options.rule_set, options.maxpool, options.start,
            options.views,
        )
        return Outcome(file.path, analysis=segment_explained(explained, options.segmenter, options.seed))
    except FILE_ERRORS as error:
        return Outcome(file.path, error=_error_text(file.path, error))


def segment_files(
    paths: Iterable[Path],
    model: VGGA,
    options: SegmentOptions,
    device: torch.device | None = None,
    threads: int | None = None,
    cancel: CancelToken | None = None,
) -> Iterator[Outcome]:
    """Analyse files through the three overlapped stages; yield one :class:`Outcome` per file, in order.

    Runs in the calling thread (the Ray workers use it directly); :func:`segment_folder` moves it to a
    background thread so the caller can write meanwhile.
    """
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    model.eval()
    threads = threads or default_threads()
    lookahead = 2 * options.batch_size + threads

    def checked(items: Iterable[Path]) -> Iterator[Path]:
        for path in items:
            check(cancel)
            yield path

    streams = lrp_streams(device, threads)
    models: queue.Queue = queue.Queue(maxsize=streams)
    models.put(model)
    for _ in range(streams - 1):
        models.put(copy.deepcopy(model))
    with (
        _torch_threads(max(1, torch.get_num_threads() // streams)),
        ThreadPoolExecutor(threads, "lrpseg-decode") as decoders,
        ThreadPoolExecutor(streams, "lrpseg-lrp") as explainers,
        ThreadPoolExecutor(threads, "lrpseg-seg") as segs,
    ):
        decoded = ordered_map(lambda path: _decode(model, options.mode, path), checked(paths), decoders, lookahead)
        explained = _explain_files(models, decoded, options, device, explainers)
        yield from ordered_map(lambda file: _segment(options, file), explained, segs, lookahead)


def segment_folder(
    paths: Sequence[Path],
    model: VGGA,
    options: SegmentOptions = SegmentOptions(),
    *,
    device: torch.device | None = None,
    progress: Callable[[int, int, Path], None] | None = None,
    cancel: CancelToken | None = None,
) -> Iterator[Outcome]:
    """Analyse many files with the batched engine (``options``: what to compute, as every engine takes it); a
    file that cannot be read or processed yields an :class:`Outcome` with an error, and the run goes on.

    The work runs in a background thread, a bounded number of files ahead of the caller, so writing the
    outcomes overlaps with LRP. ``progress(done, total, path)`` is called after each file.
    """
    outcomes = in_background(
        lambda: segment_files(paths, model, options, device, cancel=cancel), maxsize=options.batch_size
    )
    for done, outcome in enumerate(outcomes, start=1):
        if progress:
            progress(done, len(paths), outcome.path)
        yield outcome
