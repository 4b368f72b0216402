"""Background work for the GUI: one-off jobs on their own QThread and a registry that can stop them all.

The GUI thread never runs torch. A :class:`Job` wraps a plain function ``fn(progress, cancel) -> result`` from
``core`` (training, export, batch prediction) and runs it on a :class:`QThread`; its signals arrive on the GUI
thread through queued connections. Cancellation is cooperative: :meth:`Job.cancel` sets the job's
:class:`core.cancel.CancelToken`, which core code checks between steps.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import traceback
import weakref
from collections.abc import Callable
from typing import Any

import shiboken6
from lrpseg.core.cancel import Cancelled, CancelToken
from lrpseg.core.label_queue import LABEL_WRITER_THREAD
from PySide6.QtCore import QObject, QThread, QThreadPool, Signal

log = logging.getLogger(__name__)

JobFunction = Callable[[Callable[[Any], None], CancelToken], Any]

_THREADS: weakref.WeakSet[QThread] = weakref.WeakSet()
_POOLS: weakref.WeakSet[QThreadPool] = weakref.WeakSet()


def track(worker: QThread | QThreadPool) -> None:
    """Register a thread or pool of the app so :func:`running_threads` can find it (tests use this)."""
    (_POOLS if isinstance(worker, QThreadPool) else _THREADS).add(worker)


BACKGROUND_NICENESS = 10


def lower_thread_priority(niceness: int = BACKGROUND_NICENESS) -> None:
    """Make the calling worker thread yield the CPU to the GUI thread (idempotent).

    On Linux each thread has its own nice value and Qt ignores ``QThread`` priorities, so the thread sets its
    nice value to the process's (the main thread's) plus ``niceness``; elsewhere
    ``QThread.Priority.LowPriority`` (set at start) does the job. Raising one's own nice value needs no
    privileges; failures are ignored (the app still works, only less smoothly).
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + niceness)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), target)


def running_threads() -> list[str]:
    """Names of the app's threads still running and pools with active threads."""
    # A deleted pool or thread has finished: Qt's destructors wait for their threads.
    threads = [t for t in list(_THREADS) if shiboken6.isValid(t)]
    pools = [p for p in list(_POOLS) if shiboken6.isValid(p)]
    names = [t.objectName() or type(t).__name__ for t in threads if t.isRunning()]
    names += [f"pool:{p.objectName()}" for p in pools if p.activeThreadCount()]
    names += [t.name for t in threading.enumerate() if t.name == LABEL_WRITER_THREAD]
    return names


def display_text(text: str) -> str:
    """``text`` safe for Qt: file names that are not valid UTF-8 (surrogate escapes) shown with U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def describe_error(error: BaseException) -> str:
    """A one-paragraph message for a dialog: the exception's own text, prefixed by its type when unclear."""
    text = str(error).strip()
    name = type(error).__name__
    if not text:
        return name
    if isinstance(error, (OSError, ValueError, RuntimeError)) and name not in text:
        return f"{text} ({name})"
    return text


class Job(QThread):
    """Run ``fn(progress, cancel)`` on a worker thread.

    Exactly one of ``succeeded``, ``failed`` or ``cancelled`` is emitted, then ``QThread.finished``.

    Parameters
    ----------
    name
        Short identifier (``"train"``, ``"export"``); also shown in messages.
    fn
        The work. ``progress(obj)`` forwards ``obj`` to :attr:`progressed`; ``cancel`` is the job's token.
    """

    progressed = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, name: str, fn: JobFunction, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(f"job-{name}")
        self.name = name
        self.token = CancelToken()
        self._fn = fn
        self.outcome: str | None = None
        track(self)

    def cancel(self) -> None:
        """Ask the job to stop at its next check; the old state (e.g. the previous model) stays."""
        self.token.cancel()

    def run(self) -> None:  # noqa: D102 - Qt override, runs on the worker thread
        lower_thread_priority()
        try:
            result = self._fn(self.progressed.emit, self.token)
        except Cancelled:
            self.outcome = "cancelled"
            self.cancelled.emit()
            return
        except Exception as error:  # every failure becomes a message; nothing escapes the thread
            log.error("job %s failed:\n%s", self.name, traceback.format_exc())
            self.outcome = "failed"
            self.failed.emit(display_text(describe_error(error)))
            return
        if self.token.cancelled:
            self.outcome = "cancelled"
            self.cancelled.emit()
        else:
            self.outcome = "succeeded"
            self.succeeded.emit(result)


class JobManager(QObject):
    """Owns the running :class:`Job` objects: at most one per name, all stoppable at shutdown."""

    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: dict[str, Job] = {}

    def start(
        self,
        name: str,
        fn: JobFunction,
        *,
        on_progress: Callable[[Any], None] | None = None,
        on_success: Callable[[Any], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
        on_cancel: Callable[[], None] | None = None,
    ) -> Job:
        """Start a job; raise ``RuntimeError`` when one of the same name is still running.

        The callbacks run on the GUI thread.
        """
        if self.is_running(name):
            raise RuntimeError(f"a {name} job is already running")
        job = Job(name, fn, self)
        if on_progress:
            job.progressed.connect(on_progress)
        if on_success:
            job.succeeded.connect(on_success)
        if on_failure:
            job.failed.connect(on_failure)
        if on_cancel:
            job.cancelled.connect(on_cancel)
        job.finished.connect(lambda: self._forget(name, job))
        self._jobs[name] = job
        job.start(QThread.Priority.LowPriority)
        self.changed.emit()
        return job

    def _forget(self, name: str, job: Job) -> None:
        if self._jobs.get(name) is job:
            del self._jobs[name]
        job.deleteLater()
        self.changed.emit()

    def job(self, name: str) -> Job | None:
        """The running job called ``name``, if any."""
        return self._jobs.get(name)

    def is_running(self, name: str) -> bool:
        """Whether a job called ``name`` has been started and not yet finished."""
        job = self._jobs.get(name)
        return job is not None and not job.isFinished()

    def cancel(self, name: str) -> None:
        """Cancel the job called ``name`` if it runs."""
        job = self._jobs.get(name)
        if job is not None:
            job.cancel()

    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Cancel every job and wait for their threads; return whether all stopped in time."""
        jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel()
        return all(job.wait(timeout_ms) for job in jobs)

    def running_names(self) -> list[str]:
        """Names of the jobs still running."""
        return [name for name, job in self._jobs.items() if not job.isFinished()]
