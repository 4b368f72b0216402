"""Label changes written behind the caller's back: one background thread commits them in order.

Every label change is an fsync'ed SQLite transaction (see :mod:`lrpseg.core.project_store`). On a local disk
that takes well under a millisecond; on a network share or a slow USB stick a fsync takes tens to hundreds of
milliseconds (``benchmarks/label_commit.py`` measures it), which froze the window on every D/U key press. A
:class:`LabelQueue` lets the caller return at once and keeps the project's promises:

* order: changes and undo/redo steps are committed one at a time in the order they were asked for (D then U on
  one image ends as U);
* reads see the new value at once: :meth:`LabelQueue.label` and :meth:`LabelQueue.labels` put the changes not
  yet committed in front of the stored ones;
* nothing is lost on a clean close: :meth:`LabelQueue.close` (and :meth:`LabelQueue.wait`) return once every
  change is on disk. Only a killed process can lose the changes still queued (at most the few clicks of one
  slow fsync);
* errors are not swallowed: every finished write, failed or not, is reported to ``on_done`` as a
  :class:`LabelWrite`, whose ``error`` says what went wrong; the failed change is dropped from the view, so
  reads fall back to the stored label.

Undo and redo need the stored history, so their result (the image they touched) is known only once they ran:
it arrives through ``on_done`` too. Label changes that queued up while a write was running are written together
in one transaction (one fsync), each still its own undo step, so a backlog drains in one disk round trip.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import NamedTuple

from lrpseg.core.labels import normalise_label
from lrpseg.core.project import Project
from lrpseg.core.project_store import ProjectError, to_db_path

__all__ = ["LABEL_WRITER_THREAD", "LabelQueue", "LabelWrite"]

log = logging.getLogger(__name__)

#: The writer thread's name (the GUI tests check that none is left running).
LABEL_WRITER_THREAD = "lrpseg-label-writer"


class LabelWrite(NamedTuple):
    """One finished write: ``kind`` is ``"set"``, ``"undo"`` or ``"redo"``.

    ``rel`` is the image set, or the first image the undo/redo step touched (None when there was nothing to
    undo or redo); ``label`` the label asked for (``"set"`` only); ``error`` the exception if it failed.
    """

    kind: str
    rel: str | None
    label: str | None
    error: Exception | None


class _Task(NamedTuple):
    seq: int
    kind: str
    rel: str | None
    label: str | None


_NOTHING = object()  # no task carried over to the next turn of the writer loop


class LabelQueue:
    """Set labels and undo/redo on ``project`` from a background thread, in order.

    Parameters
    ----------
    project : Project
        The open project; the queue writes through its own connection (one per thread).
    on_done : callable, optional
        Called in the writer thread with a :class:`LabelWrite` after each write (a GUI forwards it to its own
        thread with a signal).
    """

    def __init__(self, project: Project, on_done: Callable[[LabelWrite], None] | None = None) -> None:
        self._project = project
        self._on_done = on_done
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._unfinished = 0
        self._seq = 0
        self._pending: dict[str, tuple[int, str | None]] = {}  # rel -> (seq, label) not yet committed
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=LABEL_WRITER_THREAD, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------- asking
    def set_label(self, rel: str, label: str | None) -> None:
        """Queue ``label`` (None clears it; synonyms allowed) for ``rel``; reads see it at once.

        Raises
        ------
        ValueError
            ``label`` is not a label or ``rel`` not an image path (checked here, before queueing).
        ProjectError
            The queue is closed.
        """
        clean = None if label is None else normalise_label(label)
        to_db_path(rel)
        self._put("set", rel, clean)

    def undo(self) -> None:
        """Queue an undo of the latest label step; the image it touched arrives through ``on_done``."""
        self._put("undo", None, None)

    def redo(self) -> None:
        """Queue a redo of the latest undone label step; the image it touched arrives through ``on_done``."""
        self._put("redo", None, None)

    def _put(self, kind: str, rel: str | None, label: str | None) -> None:
        with self._lock:
            if self._closed:
                raise ProjectError(f"project {self._project.folder} is closed; the label change was not queued")
            self._seq += 1
            if rel is not None:
                self._pending[rel] = (self._seq, label)
            self._unfinished += 1
            self._tasks.put(_Task(self._seq, kind, rel, label))

    # ------------------------------------------------------------------------------------------- reading
    def label(self, rel: str) -> str | None:
        """The label of ``rel`` including changes still queued."""
        with self._lock:  # held while reading the store: the writer drops a change only after its commit
            if rel in self._pending:
                return self._pending[rel][1]
            return self._project.label(rel)

    def labels(self, include_missing: bool = False) -> dict[str, str]:
        """All labels including changes still queued (as :meth:`Project.labels`), sorted by image."""
        with self._lock:
            stored = self._project.labels(include_missing)
            pending = dict(self._pending)
        present = None if include_missing else set(self._project.images())
        for rel, (_, label) in pending.items():
            if label is None:
                stored.pop(rel, None)
            elif present is None or rel in present:
                stored[rel] = label
        return dict(sorted(stored.items()))

    def pending(self) -> int:
        """How many writes are queued or running."""
        with self._lock:
            return self._unfinished

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (new changes are refused; queued ones are still written)."""
        with self._lock:
            return self._closed

    # ------------------------------------------------------------------------------------------- waiting
    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until every queued write finished (or ``timeout_s`` passed); whether all did."""
        with self._idle:
            return self._idle.wait_for(lambda: self._unfinished == 0, timeout_s)

    def close(self) -> None:
        """Write everything queued, then stop the writer thread (safe to call twice). Blocks until done."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._tasks.put(None)
        self._thread.join()

    # ------------------------------------------------------------------------------------------- writer
    def _run(self) -> None:
        carried: _Task | None | object = _NOTHING
        while True:
            task = self._tasks.get() if carried is _NOTHING else carried
            if task is None:
                return
            batch, carried = [task], _NOTHING
            while task.kind == "set":  # the clicks queued meanwhile go into the same transaction
                try:
                    following = self._tasks.get_nowait()
                except queue.Empty:
                    break
                if following is None or following.kind != "set":
                    carried = following
                    break
                batch.append(following)
            for done in self._write(batch):
                self._finish(done)

    def _write(self, batch: list[_Task]) -> list[tuple[_Task, str | None, Exception | None]]:
        """Write ``batch`` (one undo/redo, or label sets: one transaction, one undo step each); per task the
        image it touched and its error."""
        task = batch[0]
        try:
            if task.kind != "set":
                return [(task, getattr(self._project, task.kind)(), None)]
            self._project.set_label_steps([{t.rel: t.label} for t in batch])
            return [(t, t.rel, None) for t in batch]
        except Exception as error:  # reported to on_done: the caller shows it
            if len(batch) == 1:
                return [(task, task.rel, error)]
        results = []  # the shared transaction failed: write one by one, so only the failing change is reported
        for t in batch:
            try:
                self._project.set_label(t.rel, t.label)
                results.append((t, t.rel, None))
            except Exception as error:
                results.append((t, t.rel, error))
        return results

    def _finish(self, done: tuple[_Task, str | None, Exception | None]) -> None:
        task, rel, error = done
        with self._lock:
            if task.kind == "set" and self._pending.get(task.rel, (None,))[0] == task.seq:
                del self._pending[task.rel]  # committed (or failed): the store has the truth now
        if self._on_done is not None:
            try:
                self._on_done(LabelWrite(task.kind, rel, task.label, error))
            except Exception:  # a broken listener must not stop the writer; the write itself is done
                log.exception("label write listener failed")
        with self._idle:
            self._unfinished -= 1
            self._idle.notify_all()
