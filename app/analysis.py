"""The analysis service: one worker thread that decodes, predicts and explains images for the viewer.

Requests carry a priority: the image on screen first (decode, then analyse), then look-ahead (the next images
in the list, so stepping through a folder is instant once warm), then background predictions for the list. The
GUI keeps the results in byte-bounded LRU caches (:class:`ByteLRU`); the service never touches Qt widgets.

LRP runs once per image, model and rule set. An analysis keeps its explanation
(:class:`lrpseg.core.pipeline.ExplainedImage`), so another segmenter only re-segments it
(:func:`lrpseg.core.pipeline.segment_explained`); and explanations go through the project's relevance cache
(:func:`lrpseg.core.relevance_cache.explain_cached`), so an image shown again after a restart, or exported, is
segmented from the stored map without LRP.

Two threads may use one model (this service and an export job): LRP registers hooks on the model's modules, so
every use holds the model's lock (:class:`lrpseg.core.model_registry.LoadedModel`).
"""

from __future__ import annotations

import itertools
import logging
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from lrpseg.app.thumbnails import display_rgb8
from lrpseg.app.workers import lower_thread_priority, track
from lrpseg.core.images import ImageReadError, read_image
from lrpseg.core.model_registry import LoadedModel
from lrpseg.core.pipeline import Analysis, ExplainedImage, predict, segment_explained
from lrpseg.core.relevance_cache import RelevanceCache, explain_cached
from PySide6.QtCore import QObject, QThread, Signal

log = logging.getLogger(__name__)

PRIORITY_CURRENT = 0
PRIORITY_LOOKAHEAD = 1
PRIORITY_PREDICT = 2
PREDICT_BATCH = 8


@dataclass(frozen=True)
class AnalysisKey:
    """What an analysis depends on: the image, the model and the explanation choices."""

    rel: str
    model_id: str
    rule_set: str
    segmenter: str
    maxpool: str = "wta"
    source: str = "explanation"  # or "student:<id>": the mask refined by a student (app.refine_ui)


ModelHandle = LoadedModel
"""The GUI's name for a loaded model (:class:`lrpseg.core.model_registry.LoadedModel`)."""


def nbytes(value: Any) -> int:
    """Approximate memory of a cached value (arrays, analyses, tuples of them, objects with ``nbytes``)."""
    if isinstance(value, tuple):
        return sum(nbytes(v) for v in value)
    if isinstance(value, np.ndarray) or isinstance(getattr(value, "nbytes", None), int):
        return value.nbytes
    if isinstance(value, Analysis):
        seg = value.segmentation
        arrays = [value.relevance, value.valid, seg.score, seg.mask]
        if value.explained is not None:
            arrays.append(value.explained.relevance)
        return sum(a.nbytes for a in arrays)
    return 1024


class ByteLRU:
    """An LRU mapping bounded by the summed size of its values (used from the GUI thread only)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()

    def get(self, key: Any) -> Any:
        """The value for ``key`` (marked recently used) or ``None``."""
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        return item[0]

    def peek(self, key: Any) -> Any:
        """The value for ``key`` or ``None``, without marking it used."""
        item = self._items.get(key)
        return None if item is None else item[0]

    def put(self, key: Any, value: Any) -> None:
        """Store ``value``; evict the least recently used entries beyond the byte budget."""
        if key in self._items:
            self.bytes -= self._items.pop(key)[1]
        size = nbytes(value)
        self._items[key] = (value, size)
        self.bytes += size
        while self.bytes > self.max_bytes and len(self._items) > 1:
            _, (_, old) = self._items.popitem(last=False)
            self.bytes -= old

    def __contains__(self, key: Any) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Drop everything."""
        self._items.clear()
        self.bytes = 0

    def items(self) -> list[tuple[Any, Any]]:
        """A snapshot of (key, value) pairs, oldest first."""
        return [(k, v) for k, (v, _) in self._items.items()]


@dataclass(order=True)
class _Task:
    priority: int
    seq: int
    kind: str = field(compare=False)
    rel: str = field(compare=False, default="")
    key: AnalysisKey | None = field(compare=False, default=None)
    handle: ModelHandle | None = field(compare=False, default=None)
    rels: tuple[str, ...] = field(compare=False, default=())
    explained: ExplainedImage | None = field(compare=False, default=None)


class AnalysisService(QObject):
    """Serves decoded images, analyses and predictions from one background thread.

    Signals (delivered on the GUI thread)
    -------------------------------------
    image_loaded(rel, rgb)
        (H, W, 3) uint8 display image.
    analysed(key, analysis, extra)
        A :class:`core.pipeline.Analysis` for ``key`` and ``postprocess(analysis)`` (computed on the worker).

    Parameters
    ----------
    root
        The image folder.
    postprocess
        Run on each analysis on the worker (e.g. preparing what the viewer draws).
    cache
        A :class:`core.project.Project` (or ``None``): explanations are looked up there before LRP runs and
        stored there after.
    failed(rel, message)
        Analysis of ``rel`` failed (unreadable file, model error, ...).
    unreadable(rel, message)
        ``rel`` cannot be decoded (:class:`core.images.ImageReadError`).
    predicted(model_id, probabilities)
        ``{rel: P(damaged)}`` for one batch.
    """

    # Relative paths travel as ``object``: ``Signal(str)`` would drop the surrogate escapes with which Python
    # represents file names that are not valid UTF-8.
    image_loaded = Signal(object, object)
    analysed = Signal(object, object, object)
    failed = Signal(object, object)
    unreadable = Signal(object, object)
    predicted = Signal(str, object)

    def __init__(
        self,
        root: Path,
        postprocess: Callable[[Analysis], Any] | None = None,
        parent: QObject | None = None,
        cache: Any = None,
    ) -> None:
        super().__init__(parent)
        self.root = Path(root)
        self._postprocess = postprocess
        # (analysis, image) -> refined analysis, for keys whose source is not the explanation (app.refine_ui)
        self.refiner: Callable[[Analysis, Any], Analysis] | None = None
        self._cache = RelevanceCache(cache) if cache is not None else None
        self._tasks: list[_Task] = []
        self._condition = threading.Condition()
        self._seq = itertools.count()
        self._stopping = False
        self._busy = False
        self._thread = _ServiceThread(self)
        self._thread.setObjectName("analysis-service")
        track(self._thread)
        self._thread.start(QThread.Priority.LowPriority)

    # ----------------------------------------------------------------- requests (GUI thread)
    def _push(self, tasks: Iterable[_Task], drop: Callable[[_Task], bool] | None = None) -> None:
        with self._condition:
            if drop is not None:
                self._tasks = [t for t in self._tasks if not drop(t)]
            self._tasks.extend(tasks)
            self._tasks.sort()
            self._condition.notify()

    def load_image(self, rel: str) -> None:
        """Decode ``rel`` for display, before anything else."""
        self._push(
            [_Task(PRIORITY_CURRENT, next(self._seq), "load", rel=rel)],
            drop=lambda t: t.kind == "load" and t.priority == PRIORITY_CURRENT,
        )

    def analyse(self, key: AnalysisKey, handle: ModelHandle, explained: ExplainedImage | None = None) -> None:
        """Analyse the image on screen (replaces an earlier request for the current image).

        With ``explained`` (the image's explanation under the same model, rule set and max-pool mode, e.g. from
        an analysis with another segmenter) only the segmenter runs.
        """
        task = _Task(PRIORITY_CURRENT, next(self._seq), "analyse", rel=key.rel, key=key, handle=handle,
                     explained=explained)
        self._push([task], drop=lambda t: t.kind == "analyse" and t.priority == PRIORITY_CURRENT)

    def look_ahead(
        self,
        loads: Iterable[str],
        keys: Iterable[AnalysisKey],
        handle: ModelHandle | None,
        explained: dict[AnalysisKey, ExplainedImage | None] | None = None,
    ) -> None:
        """Replace the look-ahead queue: decode ``loads`` and analyse ``keys`` when nothing else waits
        (``explained`` as for :meth:`analyse`, per key)."""
        explained = explained or {}
        tasks = [_Task(PRIORITY_LOOKAHEAD, next(self._seq), "load", rel=rel) for rel in loads]
        if handle is not None:
            tasks += [
                _Task(PRIORITY_LOOKAHEAD, next(self._seq), "analyse", rel=k.rel, key=k, handle=handle,
                      explained=explained.get(k))
                for k in keys
            ]
        self._push(tasks, drop=lambda t: t.priority == PRIORITY_LOOKAHEAD)

    def predict(self, rels: Iterable[str], handle: ModelHandle) -> None:
        """Replace the background prediction queue with ``rels`` (in that order, batched)."""
        rels = list(rels)
        tasks = [
            _Task(
                PRIORITY_PREDICT,
                next(self._seq),
                "predict",
                handle=handle,
                rels=tuple(rels[i : i + PREDICT_BATCH]),
            )
            for i in range(0, len(rels), PREDICT_BATCH)
        ]
        self._push(tasks, drop=lambda t: t.kind == "predict")

    def cancel_model(self, model_id: str | None = None) -> None:
        """Drop queued work for ``model_id`` (all model work when ``None``)."""
        self._push(
            [], drop=lambda t: t.handle is not None and (model_id is None or t.handle.model_id == model_id)
        )

    def pending(self) -> int:
        """Queued tasks (not counting the one running)."""
        with self._condition:
            return len(self._tasks)

    def is_idle(self) -> bool:
        """Nothing queued and nothing running."""
        with self._condition:
            return not self._tasks and not self._busy

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Stop after the running task; return whether the thread ended in time."""
        with self._condition:
            self._stopping = True
            self._tasks.clear()
            self._condition.notify_all()
        return self._thread.wait(timeout_ms)

    # ----------------------------------------------------------------- worker side
    def _next_task(self) -> _Task | None:
        with self._condition:
            self._busy = False
            while not self._tasks and not self._stopping:
                self._condition.wait()
            if self._stopping:
                return None
            self._busy = True
            return self._tasks.pop(0)

    def _run_task(self, task: _Task) -> None:
        try:
            if task.kind == "load":
                self.image_loaded.emit(task.rel, display_rgb8(read_image(self.root / task.rel)))
            elif task.kind == "analyse":
                explained = task.explained or self._explain(task.key, task.handle)
                result = segment_explained(explained, task.key.segmenter)
                if task.key.source != "explanation" and self.refiner is not None:
                    result = self.refiner(result, read_image(self.root / task.key.rel))
                extra = self._postprocess(result) if self._postprocess else None
                self.analysed.emit(task.key, result, extra)
            elif task.kind == "predict":
                self._predict(task)
        except ImageReadError as error:
            self.unreadable.emit(task.rel, str(error))
            self.failed.emit(task.rel, str(error))
        except Exception as error:  # a failing image must not stop the service
            log.error("analysis of %s failed:\n%s", task.rel, traceback.format_exc())
            self.failed.emit(task.rel, f"{task.rel}: {type(error).__name__}: {error}")

    def _explain(self, key: AnalysisKey, handle: ModelHandle) -> ExplainedImage:
        """The image's explanation: from the project's cache when stored there, else by LRP (then stored)."""
        image = read_image(self.root / key.rel)
        return explain_cached(handle, image, key.rel, key.rule_set, key.maxpool, self._cache)

    def _predict(self, task: _Task) -> None:
        images, rels = [], []
        for rel in task.rels:
            try:
                images.append(read_image(self.root / rel))
                rels.append(rel)
            except ImageReadError as error:
                self.unreadable.emit(rel, str(error))
        if not images:
            return
        with task.handle.lock:
            probabilities = predict(task.handle.model, images)
        self.predicted.emit(task.handle.model_id, dict(zip(rels, map(float, probabilities), strict=True)))


class _ServiceThread(QThread):
    def __init__(self, service: AnalysisService) -> None:
        super().__init__()
        self._service = service

    def run(self) -> None:
        lower_thread_priority()
        while (task := self._service._next_task()) is not None:
            self._service._run_task(task)
